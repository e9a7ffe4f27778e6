"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Every file vaelab writes goes through ``atomic_path`` (or the helpers built on it): the bytes go
to a temporary file in the same directory, are fsync'ed, and ``os.replace`` renames it over the
final name; the directory is fsync'ed so the rename itself survives a power cut. An exception
on the way removes the temporary file and leaves the previous version untouched."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import VaelabError, WriteError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary file lives in the same directory so ``os.replace`` is a rename on one
    filesystem. On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    try:  # mkstemp makes the file private (0600); give it the mode a plain open() would have
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            # a writer may have replaced the temporary file with one of its own (safetensors writes a
            # private 0600 file and renames it): the final file gets the umask's mode all the same
            os.chmod(tmp_path, 0o666 & ~_umask())
            fsync_file(tmp_path)
            os.replace(tmp_path, path)
        except OSError as e:
            if isinstance(e, VaelabError):
                raise
            raise write_error(path, e, tmp_path) from None
        except RuntimeError as e:  # safetensors and torch report a failed write as a RuntimeError
            if not any(w in str(e).lower() for w in ("no space", "errno", "write", "file")):
                raise
            raise write_error(path, OSError(str(e).splitlines()[0][:200]), tmp_path) from None
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_error(path: Path, e: OSError, tmp: Path | None = None) -> WriteError:
    """A one-line WriteError for a failed write of ``path``: what happened, and the fix (for a full
    disk, the space free and how much the file needed so far)."""
    import errno as _errno
    import shutil

    reason = e.strerror or str(e) or type(e).__name__
    if e.errno == _errno.ENOSPC or "no space" in str(e).lower():
        try:
            free = shutil.disk_usage(next(p for p in [path.parent, *path.parents] if p.exists())).free
        except (OSError, StopIteration):
            free = None
        written = tmp.stat().st_size if tmp is not None and tmp.exists() else 0
        need = f"at least {written:,} bytes were being written" if written else "the file needs more"
        fix = (f"the disk is full ({reason}; {free:,} bytes free; {need}): free space on it, or write elsewhere"
               if free is not None else f"the disk is full ({reason}): free space on it, or write elsewhere")
        msg = f"cannot write {path}: {fix}. Nothing was replaced; a training run stays resumable"
    elif e.errno == _errno.ENAMETOOLONG:
        msg = f"cannot write {path}: a name in the path is too long ({reason}); choose a shorter name"
    elif e.errno in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
        msg = f"cannot write {path}: {reason} (the folder is read-only or not yours); choose another place"
    elif e.errno in (_errno.ENOTDIR, _errno.EEXIST):
        msg = f"cannot write {path}: a part of the path is a file, not a folder ({reason}); choose another path"
    else:
        msg = f"cannot write {path}: {reason}; check the path and the disk"
    err = WriteError(msg)
    err.errno, err.filename = e.errno, str(path)
    return err


def _umask() -> int:
    try:  # Linux: read it without changing it
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (``strict_json``): a strict parser reads every file vaelab writes."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


NULL_REASONS = "null_reasons"


def strict_json(obj: Any) -> Any:
    """``obj`` as plain JSON data without NaN or infinity, which strict parsers reject: each
    non-finite number becomes null, and a mapping at the top gets ``null_reasons`` naming each
    such key (a dotted path) and the value it had, e.g. an F1 that is undefined on one class."""
    import math

    plain = json.loads(json.dumps(obj, default=_json_default))  # tensors, arrays, paths -> lists, numbers, text
    reasons: dict[str, str] = {}

    def clean(v: Any, where: str) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            reasons[where] = f"{v} (not a finite number: undefined for this data)"
            return None
        if isinstance(v, dict):
            return {k: clean(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x, f"{where}[{i}]") for i, x in enumerate(v)]
        return v

    out = clean(plain, "")
    if reasons and isinstance(out, dict):
        out[NULL_REASONS] = {**(out.get(NULL_REASONS) or {}), **reasons}
    return out


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
        import torch

        if isinstance(o, torch.Tensor):
            return o.tolist()
        if isinstance(o, (np.generic,)):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# what a matplotlib figure is written as, by the file name's suffix
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".jpg": "jpeg", ".jpeg": "jpeg"}


def output_format(path: str | os.PathLike, formats: dict[str, str], what: str = "figure") -> str:
    """The format an output file's suffix names in ``formats`` (suffix -> format); an existing
    directory, no suffix or another suffix is refused, naming the suffixes that work."""
    from .errors import ConfigError

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"--out {p} is a directory; give a file name inside it, e.g. {p / (what + '.png')}")
    fmt = formats.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {p}: cannot tell the {what} format from {p.suffix or 'a name without a suffix'!r}; "
                          f"end the name with one of {', '.join(formats)}")
    return fmt


def figure_format(path: str | os.PathLike) -> str:
    """The format a matplotlib figure file's suffix names (png, pdf, svg, jpeg)."""
    return output_format(path, FIGURE_FORMATS)


def atomic_write_figure(fig: Any, path: str | os.PathLike, dpi: int = 90) -> Path:
    """Lay out a matplotlib figure, write it atomically in the format its suffix names (PNG, PDF,
    SVG, JPEG), and close it."""
    import io

    import matplotlib.pyplot as plt

    fmt = figure_format(path)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
