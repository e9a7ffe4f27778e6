"""Locate-or-download: search the usual places, else fetch with a sha256 check, atomically."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..fileio import fsync_dir


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    urls: tuple[str, ...]
    sha256: str
    size: int | None = None


def data_roots() -> list[Path]:
    """Where datasets are looked for, in order: $VAELAB_DATA, the user cache, Debian's datasets."""
    roots = []
    if os.environ.get("VAELAB_DATA"):
        roots.append(Path(os.environ["VAELAB_DATA"]).expanduser())
    roots.append(cache_dir())
    roots.append(Path("/usr/share/datasets"))
    return roots


def cache_dir() -> Path:
    if os.environ.get("VAELAB_CACHE"):
        return Path(os.environ["VAELAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vaelab"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(remote: RemoteFile, dest_dir: Path, retries: int = 2, timeout: float = 60.0, backoff: float = 1.0) -> Path:
    """Fetch ``remote`` into ``dest_dir``. The file appears only complete and verified.

    Bytes stream into a temporary file in the same directory while being hashed; a failure, a
    size or a checksum mismatch discards it and tries the next mirror (``retries`` rounds over
    all URLs, waiting ``backoff`` * round seconds between rounds). Only a verified file is renamed
    into place, so a crash never leaves a partial file under the final name.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    errors: list[str] = []
    for attempt in range(max(1, retries)):
        if attempt and backoff > 0:
            time.sleep(backoff * attempt)
        for url in remote.urls:
            fd, tmp = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=dest_dir)
            h = hashlib.sha256()
            n = 0
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                    while True:
                        block = resp.read(1 << 20)
                        if not block:
                            break
                        h.update(block)
                        out.write(block)
                        n += len(block)
                    out.flush()
                    os.fsync(out.fileno())
                if remote.size is not None and n != remote.size:
                    errors.append(f"{url}: got {n} bytes, expected {remote.size} (partial download)")
                    continue
                if h.hexdigest() != remote.sha256:
                    errors.append(f"{url}: sha256 {h.hexdigest()} does not match the expected {remote.sha256}")
                    continue
                os.replace(tmp, final)
                fsync_dir(dest_dir)
                return final
            except (urllib.error.URLError, OSError, TimeoutError, ValueError, http.client.HTTPException) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    raise DataError(
        f"could not download {remote.filename} into {dest_dir}:\n  " + "\n  ".join(errors)
        + "\nIf you are offline, place the file there yourself (or under $VAELAB_DATA) and run again."
    )
