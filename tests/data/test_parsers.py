import gzip
import struct

import numpy as np
import pytest

from vaelab.data.parsers import load_npz, parse_idx, read_idx
from vaelab.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


def test_idx_roundtrip_raw_and_gzip(tmp_path, images):
    raw = tmp_path / "x-idx3-ubyte"
    raw.write_bytes(idx_bytes(images))
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(raw), images)
    np.testing.assert_array_equal(read_idx(gz), images)


def test_idx_labels_1d():
    y = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(y)), y)


def test_idx_bad_magic(images):
    data = bytearray(idx_bytes(images))
    data[0] = 7
    with pytest.raises(DataError, match="magic"):
        parse_idx(bytes(data), "f")


def test_idx_unknown_type(images):
    data = bytearray(idx_bytes(images))
    data[2] = 0x42
    with pytest.raises(DataError, match="element type"):
        parse_idx(bytes(data), "f")


@pytest.mark.parametrize("cut", [1, 100, 28 * 28 * 5 - 1])
def test_idx_truncated_names_file(tmp_path, images, cut):
    p = tmp_path / "bad-idx3-ubyte"
    p.write_bytes(idx_bytes(images)[:-cut])
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_idx_too_long_is_corrupt(images):
    with pytest.raises(DataError, match="corrupt"):
        parse_idx(idx_bytes(images) + b"\0\0", "f")


def test_idx_huge_declared_size_refused_before_allocating():
    header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 2**31, 2**31, 2**31)
    with pytest.raises(DataError, match="implausibly large"):
        parse_idx(header + b"\0" * 16, "f")


def test_truncated_gzip_names_file(tmp_path, images):
    p = tmp_path / "t-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(images))[:-40])
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(p)
    assert str(p) in str(e.value)


def test_npz_missing_keys_and_pickle(tmp_path):
    p = tmp_path / "a.npz"
    np.savez(p, x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="missing arrays"):
        load_npz(p, ("x_test",))
    q = tmp_path / "obj.npz"
    np.savez(q, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickle"):
        load_npz(q)
    r = tmp_path / "trunc.npz"
    r.write_bytes(p.read_bytes()[:50])
    with pytest.raises(DataError, match="trunc.npz"):
        load_npz(r)
