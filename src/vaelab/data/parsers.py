"""Validating readers for the on-disk formats: IDX (MNIST family), CIFAR-10 binary, npz, images.

Every reader takes untrusted bytes: a failure is a DataError naming the file and the fix, never
another exception; sizes declared in a header are checked against the real size before anything
is allocated, so a corrupt or hostile file cannot ask for gigabytes. Nothing is unpickled."""
from __future__ import annotations

import io
import math
import os
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_BYTES = 4 << 30  # refuse to allocate more than 4 GiB for a single array
_MAX_PIXELS = 1 << 26  # refuse to decode an image of more than 67 M pixels (8192 x 8192)
_DEFLATE_MAX_RATIO = 1100  # deflate cannot expand data by more than ~1032x


def gunzip(raw: bytes, source: str, limit: int = _MAX_BYTES) -> bytes:
    """Decompress gzip data (one or more members) to at most ``limit`` bytes: a gzip bomb is refused."""
    out = bytearray()
    rest = raw
    try:
        while rest[:2] == b"\x1f\x8b":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(rest, limit + 1 - len(out))
            if len(out) > limit:
                raise DataError(f"{source}: decompresses to more than {limit} bytes; not a dataset file vaelab reads")
            if not d.eof:
                raise DataError(f"{source} is a truncated gzip file; delete it and fetch it again")
            rest = d.unused_data
    except zlib.error as e:
        raise DataError(f"{source} is a corrupt gzip file ({e}); delete it and fetch it again") from None
    if rest.strip(b"\0"):
        raise DataError(f"{source}: unexpected bytes after the gzip data; the file is corrupt. Delete it and fetch it again")
    return bytes(out)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        return gunzip(raw, str(path))
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
    expected = math.prod(dims) * dtype.itemsize
    if math.prod(d for d in dims if d) * dtype.itemsize > _MAX_BYTES:  # also for an empty array: numpy refuses such shapes
        raise DataError(f"{source}: declares shape {dims} ({expected} bytes), which is implausibly large; the file is corrupt")
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


_NPY_KINDS = set("biufcSU")  # plain numbers and text; no objects (pickle), no records


def _read_npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, disk_size: int) -> np.ndarray:
    """One array of an npz, with its declared size checked against the zip entry before allocating."""
    key = info.filename[:-4]
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.file_size <= max(info.compress_size, 1) * _DEFLATE_MAX_RATIO
    else:
        raise DataError(f"{source}: array {key!r} uses a compression numpy never writes; save it with numpy.savez")
    if not plausible or info.compress_size > disk_size or info.file_size > _MAX_BYTES:
        raise DataError(f"{source}: the zip entry of {key!r} declares {info.file_size} bytes, which its "
                        f"{info.compress_size} stored bytes cannot hold; the file is corrupt")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise DataError(f"{source}: array {key!r} has .npy format version {version}, which vaelab does not read")
        if dtype.hasobject:
            raise DataError(f"{source}: array {key!r} holds Python objects, which need pickle; refused. "
                            "Save plain numeric arrays")
        if dtype.kind not in _NPY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise DataError(f"{source}: array {key!r} has dtype {dtype}; save plain numeric arrays")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if math.prod(d for d in shape if d) * max(dtype.itemsize, 1) > _MAX_BYTES:
            raise DataError(f"{source}: array {key!r} declares shape {shape}, which is implausibly large; the file is corrupt")
        have = info.file_size - fh.tell()
        if nbytes != have:
            raise DataError(f"{source}: array {key!r} declares shape {shape} of {dtype} ({nbytes} bytes) but holds "
                            f"{have} bytes; the file is truncated or corrupt")
        arr = np.empty(count, dtype=dtype)
        if nbytes:
            view = memoryview(arr.view(np.uint8))
            got = 0
            while got < nbytes:
                n = fh.readinto(view[got:])
                if not n:
                    raise DataError(f"{source}: array {key!r} is truncated ({got} of {nbytes} bytes)")
                got += n
    return arr.reshape(shape, order="F" if fortran else "C")


def load_npz(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load an .npz without pickle; checks the keys that are required.

    The header of every array is checked against the size of its zip entry before anything is
    allocated; object arrays (which need pickle) and anything that is not an npz are refused."""
    path = Path(path)
    try:
        disk_size = os.path.getsize(path)
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            odd = [i.filename for i in infos if not i.filename.endswith(".npy")]
            if odd:
                raise DataError(f"{path}: entries {odd[:5]} are not .npy arrays; this is not a numpy .npz file. "
                                "Save the arrays with numpy.savez")
            keys = [i.filename[:-4] for i in infos]
            missing = [k for k in required if k not in keys]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; it has {sorted(keys)}")
            if sum(i.file_size for i in infos) > 4 * _MAX_BYTES:
                raise DataError(f"{path}: declares more than {4 * _MAX_BYTES} bytes of arrays; refused")
            return {k: _read_npy_member(zf, i, str(path), disk_size) for k, i in zip(keys, infos)}
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OverflowError, struct.error,
            NotImplementedError, RuntimeError, KeyError) as e:  # RuntimeError: an encrypted entry
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e}); it may be truncated "
                        "or corrupt. Save it again with numpy.savez") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); check the path and permissions") from None


_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, MemoryError, RuntimeError, AttributeError, zlib.error,
)


def _scale_to_8bit(im, source: str) -> np.ndarray:
    """A 16-bit or 32-bit integer / float single-channel image as uint8, scaled, not clipped:
    16-bit values 0..65535 map to 0..255 (divided by 257, rounded)."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    hi = float(a.max()) if a.size else 0.0
    lo = float(a.min()) if a.size else 0.0
    if im.mode == "F" and lo >= 0 and hi <= 1:
        return np.round(a.astype(np.float64) * 255).astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return np.round(a).astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    raise DataError(f"{source}: a {im.mode}-mode image with values {lo:g}..{hi:g}, outside 0..65535; "
                    "save it as an 8- or 16-bit image")


def decode_image(data: bytes, source: str, mode: str | None = None, return_mode: bool = False):
    """Decode one image file (PNG/JPEG/...) to H x W x C uint8 (and, with ``return_mode``, the
    file's own Pillow mode, e.g. 'RGBA', 'P', 'I;16').

    16-bit images are scaled to 8 bits, not clipped. The size in the header is checked before the
    pixels are decoded (at most 67 M pixels); Pillow raises many kinds of exceptions on damaged
    files, all of which become a DataError."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w <= 0 or h <= 0 or w * h > _MAX_PIXELS:
                    raise DataError(f"{source}: declares {w} x {h} pixels; not an image vaelab can use "
                                    f"(at most {_MAX_PIXELS} pixels). Remove or replace the file")
                im.load()
                own = im.mode
                if own.startswith("I") or own == "F":  # 16/32-bit gray: scale, do not clip
                    arr = _scale_to_8bit(im, source)
                    if mode == "RGB":
                        arr = np.repeat(arr[:, :, None], 3, axis=2)
                else:
                    if mode is None:
                        mode = "L" if own in ("1", "L", "LA") else "RGB"
                    arr = np.asarray(im.convert(mode))
    except DataError:
        raise
    except (*_PIL_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{source}: not a readable image ({type(e).__name__}: {e}); remove or replace the file") from None
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or arr.size == 0:
        raise DataError(f"{source}: decodes to an unusable array {arr.dtype} {arr.shape}; remove or replace the file")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return (arr, own) if return_mode else arr


def images_to_tensor(arr: np.ndarray, source: str) -> torch.Tensor:
    """N x H x W or N x H x W x C (or N x C x H x W) uint8 array -> N x C x H x W tensor."""
    if arr.dtype != np.uint8:
        raise DataError(f"{source}: images must be uint8 (0..255) or floats in [0, 1], got {arr.dtype}; "
                        "convert them, e.g. x.astype(np.uint8) for integers in 0..255")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    elif not (arr.ndim == 4 and arr.shape[1] in (1, 3)):
        raise DataError(f"{source}: cannot read image array of shape {arr.shape}; use N x H x W (x C) with C in 1, 3")
    if min(arr.shape[2:]) == 0:
        raise DataError(f"{source}: images of size {arr.shape[2]} x {arr.shape[3]} are empty; give images of at least 1 x 1 pixels")
    return torch.from_numpy(np.ascontiguousarray(arr))
