"""Validating readers for the on-disk formats: IDX (MNIST family), CIFAR-10 binary, npz, images."""
from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_BYTES = 4 << 30  # refuse to allocate more than 4 GiB for a single array


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(
                f"{path} is a corrupt or truncated gzip file ({e}); delete it and fetch it again"
            ) from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes. Declared dimensions are checked against the real size before any allocation."""
    if len(data) < 4:
        raise DataError(f"{source}: too short to be an IDX file ({len(data)} bytes); the file is truncated")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: bad IDX magic number {data[:4].hex()}; this is not an IDX file")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX element type 0x{code:02x}; the file is corrupt")
    if ndim == 0 or ndim > 8:
        raise DataError(f"{source}: implausible IDX rank {ndim}; the file is corrupt")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: IDX header is truncated ({len(data)} bytes < {header})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[code])
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    if expected > _MAX_BYTES:
        raise DataError(f"{source}: declares {dims} elements ({expected} bytes), which is implausibly large")
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header declares (corrupt)"
        raise DataError(
            f"{source}: IDX header declares shape {dims} ({expected} data bytes) but the file has {actual}; "
            f"it is {what}. Delete it and fetch it again."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(_read_maybe_gzip(path), str(path))


def read_cifar10_bin(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (CHW)."""
    rec = 1 + 3 * 32 * 32
    if len(data) == 0 or len(data) % rec:
        raise DataError(f"{source}: size {len(data)} is not a multiple of the CIFAR-10 record size {rec}; truncated or corrupt")
    arr = np.frombuffer(data, dtype=np.uint8).reshape(-1, rec)
    labels = arr[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{source}: label {labels.max()} outside 0..9; not a CIFAR-10 binary batch")
    return arr[:, 1:].reshape(-1, 3, 32, 32), labels


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load an .npz without pickle; checks the keys that are required."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; it has {sorted(z.files)}")
            return {k: z[k] for k in z.files}
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle: refused
        raise DataError(f"{path}: cannot load without pickle ({e}); save plain numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); it may be truncated") from None


def decode_image(data: bytes, source: str, mode: str | None = None) -> np.ndarray:
    """Decode one image file (PNG/JPEG/...) to H x W x C uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{source}: not a readable image ({e}); remove or replace the file") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def images_to_tensor(arr: np.ndarray, source: str) -> torch.Tensor:
    """N x H x W or N x H x W x C (or N x C x H x W) uint8 array -> N x C x H x W tensor."""
    if arr.dtype != np.uint8:
        raise DataError(f"{source}: images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    elif not (arr.ndim == 4 and arr.shape[1] in (1, 3)):
        raise DataError(f"{source}: cannot read image array of shape {arr.shape}; use N x H x W (x C) with C in 1, 3")
    return torch.from_numpy(np.ascontiguousarray(arr))
