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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary file lives in the same directory so ``os.replace`` is a rename on one
    filesystem. On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:  # mkstemp makes the file private (0600); give it the mode a plain open() would have
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # a writer may have replaced the temporary file with one of its own (safetensors writes a
        # private 0600 file and renames it): the final file gets the umask's mode all the same
        os.chmod(tmp_path, 0o666 & ~_umask())
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


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
