"""Files inside a run directory, which may come from someone else: nothing in it is followed
through a symlink, for reading or for writing, and what is read is bounded in size.

``inside(run_dir, *parts)`` is the path of a file or folder of the run after checking that no
part of it below the run directory is a symlink; ``read_bytes`` / ``read_text`` open the final
name with ``O_NOFOLLOW`` (a symlink swapped in after the check is refused by the kernel) and read a
regular file only; ``open_lock`` creates the lock file the same way, without truncating anything."""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import CheckpointError

# the largest text file of a run vaelab reads (command.txt, metrics.json...)
MAX_TEXT_BYTES = 16 << 20
# the largest weights file vaelab hashes (the key of what is kept beside a run's weights)
MAX_WEIGHTS_BYTES = 8 << 30

log = logging.getLogger("vaelab")


def _refuse_link(path: Path) -> CheckpointError:
    return CheckpointError(f"{path} is a symlink; vaelab neither reads nor writes a run's files through a symlink (it "
                           "could point at any file of yours). Replace it with the file or folder itself")


def inside(run_dir: str | os.PathLike, *parts: str) -> Path:
    """``run_dir / parts...``, refused if any existing part below ``run_dir`` is a symlink."""
    path = Path(run_dir)
    for part in parts:
        for piece in Path(part).parts:
            if piece in ("..", "/"):
                raise CheckpointError(f"{part!r} leaves the run directory {run_dir}")
            path = path / piece
            if path.is_symlink():
                raise _refuse_link(path)
    return path


def _open_regular(path: Path, limit: int) -> int:
    """A read-only descriptor of the regular file ``path`` of at most ``limit`` bytes, opened without
    following a symlink; a device, FIFO or larger file is refused."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise _refuse_link(path) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path} is not a regular file; a run directory holds plain files only")
    if st.st_size > limit:
        os.close(fd)
        raise CheckpointError(f"{path} is {st.st_size:,} bytes, more than the {limit:,} vaelab reads from this "
                              "file; it is not a file vaelab wrote, or it is damaged")
    return fd


def _chunks(fd: int, path: Path, limit: int) -> Iterator[bytes]:
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return
        left -= len(chunk)
        if left <= 0:
            raise CheckpointError(f"{path} grew past {limit:,} bytes while it was read; it is not a file vaelab wrote")
        yield chunk


def read_bytes(path: str | os.PathLike, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The bytes of the regular file ``path``, refusing a symlink, a device or FIFO, and a file
    larger than ``limit`` bytes. A missing file raises FileNotFoundError as open() does."""
    path = Path(path)
    fd = _open_regular(path, limit)
    try:
        return b"".join(_chunks(fd, path, limit))
    finally:
        os.close(fd)


def digest(path: str | os.PathLike, limit: int = MAX_WEIGHTS_BYTES) -> str:
    """The SHA-256 (hex) of the regular file ``path``, read as ``read_bytes`` reads, in chunks."""
    path = Path(path)
    h = hashlib.sha256()
    fd = _open_regular(path, limit)
    try:
        for chunk in _chunks(fd, path, limit):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


def read_text(path: str | os.PathLike, limit: int = MAX_TEXT_BYTES) -> str:
    """``read_bytes`` decoded as UTF-8 (an undecodable file is a CheckpointError)."""
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path} is not UTF-8 text ({e}); restore it or remove it") from None


def open_lock(path: str | os.PathLike) -> int:
    """A file descriptor of the lock file ``path``, created if needed, never truncated, and never
    opened through a symlink (O_NOFOLLOW: a symlink planted as the lock is refused)."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise _refuse_link(path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CheckpointError(f"{path} is not a regular file; remove it so that vaelab can lock the run")
    return fd


# what vaelab keeps in a run directory: none of these may be a symlink
RUN_ENTRIES = (".lock", "config.yaml", "model.safetensors", "metrics.json", "report.html", "command.txt", "figures",
               "logs", "logs/metrics.csv", "checkpoints", "checkpoints/last.ckpt", "cache", ".vaelab-run", "finished.json")


def check_links(run_dir: str | os.PathLike) -> None:
    """Refuse a run directory in which any of the files and folders vaelab reads or writes
    (``RUN_ENTRIES``) is a symlink, naming it."""
    for entry in RUN_ENTRIES:
        inside(run_dir, entry)


# -- what a run keeps so that the next call need not compute it again (fitted samplers, detectors) ----
def kept(run_dir: str | os.PathLike, area: str, key: str) -> Path | None:
    """The folder RUN/AREA/KEY that an earlier call kept, or None: none kept, or one reached through a
    symlink (a run from someone else could point it anywhere; it is then not used, and said so)."""
    try:
        path = inside(run_dir, area, key)
    except CheckpointError as e:
        log.info("not reusing %s/%s: %s", area, key, e)
        return None
    return path if path.is_dir() else None


def keep(run_dir: str | os.PathLike, area: str, key: str, write: Callable[[Path], None]) -> Path | None:
    """Keep what ``write(folder)`` writes as RUN/AREA/KEY: written whole in a temporary folder, then
    renamed, so that a reader sees all of it or nothing. A run directory that cannot take it
    (read-only, a symlinked AREA, a KEY another process kept first) only costs the reuse: None."""
    try:
        home = inside(run_dir, area)
        home.mkdir(exist_ok=True)
        home = inside(run_dir, area)  # made by someone else between the check and mkdir: checked again
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=home))
        try:
            write(tmp / "k")
            (tmp / "k").rename(home / key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, CheckpointError) as e:
        log.info("not kept in %s/%s (%s); the next call computes it again", area, key, e)
        return None
    return home / key
