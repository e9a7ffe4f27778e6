"""Bad input never crashes: property-based fuzzing of every reader of untrusted bytes or text.

Each reader gets random bytes and mutations of valid files. The only allowed outcomes are a
well-formed result or a VaelabError with a message; any other exception type fails the test,
and so do a hang (a watchdog alarm) or a large allocation (tracemalloc peak; numpy's buffers
are traced) for a small input."""
from __future__ import annotations

import contextlib
import gzip
import io
import signal
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.config import dump_yaml, load_yaml, parse_set
from vaelab.data import get_source
from vaelab.data.parsers import decode_image, gunzip, load_npz, parse_idx, read_idx
from vaelab.errors import ConfigError, DataError, VaelabError
from vaelab.train import RunConfig, TrainConfig

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_PEAK = 32 << 20  # bytes a reader may allocate for an input of a few kilobytes


@contextlib.contextmanager
def bounded(seconds: float = 20.0, peak: int | None = MAX_PEAK):
    """Fail on a hang (SIGALRM) or on a traced peak allocation above ``peak``."""
    def on_alarm(signum, frame):
        raise AssertionError(f"no answer within {seconds} s: the reader hangs")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if peak is not None:
        tracemalloc.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if peak is not None:
            _, top = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert top < peak, f"allocated {top} bytes for a small input"


def only_vaelab_errors(fn, *args, **kwargs):
    """Run ``fn``: return its result, or None when it raised a VaelabError with a message."""
    try:
        return fn(*args, **kwargs)
    except VaelabError as e:
        assert str(e).strip(), "a VaelabError must say what is wrong"
        return None


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ---- mutations of valid files ----------------------------------------------------------------
@st.composite
def mutated(draw, seeds: list[bytes]):
    """A valid file, then byte flips, a truncation, an insertion or a duplicated slice."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "dup", "set"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        else:
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[i:i] = data[i:j]
    return bytes(data)


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(dt).tobytes()


IDX_SEEDS = [idx_bytes(np.arange(24).reshape(2, 3, 4), 0x08), idx_bytes(np.arange(5), 0x0C),
             idx_bytes(np.linspace(0, 1, 6).reshape(3, 2), 0x0E), idx_bytes(np.zeros((0, 4)), 0x0B)]


def check_idx_result(arr, data: bytes) -> None:
    if arr is not None:
        assert isinstance(arr, np.ndarray)
        header = 4 + 4 * data[3]
        assert arr.nbytes == len(data) - header  # nothing invented, nothing dropped
        assert list(arr.shape) == [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3])]


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated(IDX_SEEDS)))
def test_fuzz_parse_idx(data):
    with bounded():
        arr = only_vaelab_errors(parse_idx, data, "fuzz")
    check_idx_result(arr, data)


@FUZZ
@given(st.integers(1, 8), st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)), min_size=8, max_size=8),
       st.sampled_from([8, 9, 11, 12, 13, 14]), st.binary(max_size=64))
def test_fuzz_parse_idx_declared_shapes(ndim, dims, code, body):
    """Headers declaring any shape (up to 2**32 per axis) never allocate what the body does not hold."""
    data = struct.pack(">BBBB", 0, 0, code, ndim) + b"".join(struct.pack(">I", d) for d in dims[:ndim]) + body
    with bounded():
        arr = only_vaelab_errors(parse_idx, data, "fuzz")
    check_idx_result(arr, data)


@FUZZ
@given(st.one_of(mutated([gzip.compress(s) for s in IDX_SEEDS]), st.binary(max_size=200).map(lambda b: b"\x1f\x8b" + b)))
def test_fuzz_read_idx_gzip(scratch, data):
    path = scratch / "fuzz-idx.gz"
    path.write_bytes(data)
    with bounded():
        only_vaelab_errors(read_idx, path)


def test_idx_regression_empty_array_with_absurd_shape():
    """Found by the fuzzer: 0 x 2**32 x 2**32 holds no bytes, but numpy cannot even make that shape."""
    data = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 0, 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match="implausibly large"):
        parse_idx(data, "f")


def test_gzip_bomb_is_refused_before_inflating():
    bomb = gzip.compress(b"\0" * (4 << 20))  # 4 MiB of zeros in ~4 KiB
    with pytest.raises(DataError, match="more than 1000 bytes"):
        gunzip(bomb, "bomb.gz", limit=1000)
    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd"), "two.gz") == b"abcd"  # multi-member gzip


# ---- npz -------------------------------------------------------------------------------------
def npz_bytes(compressed: bool, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


NPZ_SEEDS = [
    npz_bytes(False, x=np.arange(12, dtype=np.uint8).reshape(3, 2, 2), y=np.arange(3)),
    npz_bytes(True, x_train=np.ones((2, 4, 4), np.float32), x_test=np.zeros((1, 4, 4), np.uint8)),
    npz_bytes(False, a=np.asfortranarray(np.arange(6.0).reshape(2, 3)), s=np.array(["ab", "c"])),
]


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), mutated(NPZ_SEEDS)))
def test_fuzz_load_npz(scratch, data):
    path = scratch / "fuzz.npz"
    path.write_bytes(data)
    with bounded():
        out = only_vaelab_errors(load_npz, path)
    if out is not None:
        assert all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in out.values())


@FUZZ
@given(shape=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**40)), min_size=0, max_size=4), dtype=st.sampled_from(["<u1", "<f8", ">i4", "|b1", "<c8"]),
       fortran=st.booleans(), body=st.binary(max_size=64))
def test_fuzz_npz_declared_shapes(scratch, shape, dtype, fortran, body):
    """An .npy header inside the zip may declare any shape: nothing beyond the entry's bytes is allocated."""
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", hdr.getvalue() + body)
    path = scratch / "shape.npz"
    path.write_bytes(buf.getvalue())
    with bounded():
        out = only_vaelab_errors(load_npz, path)
    if out is not None:
        assert out["x"].shape == tuple(shape) and out["x"].nbytes == len(body)


def test_npz_regressions(scratch):
    """Cases the fuzzer found in the first version of load_npz."""
    p = scratch / "plain.npy"  # a bare .npy (np.load returns an array, not an archive)
    np.save(p, np.zeros(3))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(p)
    q = scratch / "raw.npz"  # a zip entry that is not an array (np.load would hand back bytes)
    with zipfile.ZipFile(q, "w") as zf:
        zf.writestr("x.txt", b"hello")
    with pytest.raises(DataError, match="not .npy arrays"):
        load_npz(q)
    for n, msg in [(10**8, "truncated or corrupt"), (10**12, "implausibly large")]:  # 800 MB / 8 TB declared in a few bytes
        r = scratch / "huge.npz"
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
        with zipfile.ZipFile(r, "w") as zf:
            zf.writestr("x.npy", hdr.getvalue() + b"\0" * 8)
        with bounded(), pytest.raises(DataError, match=msg):
            load_npz(r)
    pickle_npz = scratch / "obj.npz"
    np.savez(pickle_npz, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickle"):
        load_npz(pickle_npz)


# ---- the npz source: images of every wrong kind ----------------------------------------------
ARRAYS = st.one_of(
    st.tuples(st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64, np.uint16]),
              st.lists(st.integers(0, 5), min_size=0, max_size=5)).map(
        lambda t: (np.random.default_rng(len(t[1])).random(t[1]) * 300 - 20).astype(t[0])),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=27).map(
        lambda v: np.array(v, np.float32)[: len(v) // 3 * 3].reshape(-1, 1, 3) if len(v) >= 3 else np.array(v, np.float32)),
)


@FUZZ
@given(x=ARRAYS, y=st.one_of(st.none(), ARRAYS), split_keys=st.booleans())
def test_fuzz_npz_source_images(scratch, x, y, split_keys):
    """Wrong shapes, channels, dtypes, NaN/inf pixels, empty arrays, bad labels: an ImageSet or a DataError."""
    path = scratch / "images.npz"
    arrays = {"x_train": x, "x_test": x} if split_keys else {"x": x}
    if y is not None:
        arrays["y_train" if split_keys else "y"] = y
    np.savez(path, **arrays)
    with bounded(peak=None):
        s = only_vaelab_errors(get_source("npz").load, "train", str(path))
    if s is not None and s.is_vector:  # an N x D array: vectors of finite float32 numbers
        assert s.images.dtype == torch.float32 and s.images.ndim == 2 and len(s) > 0 and s.images.shape[1] > 0
        assert torch.isfinite(s.images).all()
    elif s is not None:
        assert s.images.dtype == torch.uint8 and s.images.ndim == 4 and s.images.shape[1] in (1, 3)
        assert len(s) > 0 and min(s.images.shape[2:]) > 0


# ---- images ----------------------------------------------------------------------------------
def image_bytes(fmt: str, mode: str, size=(5, 4)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], len(mode) if mode in ("RGB", "RGBA") else 1), dtype=np.uint8)
    im = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr, mode if mode != "P" else None)
    if mode == "P":
        im = im.convert("P")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


IMAGE_SEEDS = [image_bytes(f, m) for f, m in [("PNG", "RGB"), ("PNG", "L"), ("PNG", "RGBA"), ("JPEG", "RGB"), ("GIF", "P"),
                                               ("BMP", "RGB"), ("TIFF", "RGB"), ("WEBP", "RGB"), ("PPM", "L")]]


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), mutated(IMAGE_SEEDS)), mode=st.sampled_from([None, "RGB", "L"]))
def test_fuzz_decode_image(data, mode):
    with bounded(peak=None):
        arr = only_vaelab_errors(decode_image, data, "fuzz.img", mode)
    if arr is not None:
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] in (1, 3) and arr.size > 0
        if mode is not None:
            assert arr.shape[2] == (3 if mode == "RGB" else 1)


@pytest.mark.parametrize("side", [8200, 60000])  # 67 M pixels (under Pillow's own bomb limit), 3.6 G pixels
def test_image_header_declaring_huge_size_is_refused_before_decoding(side):
    png = bytearray(image_bytes("PNG", "L"))
    png[16:24] = struct.pack(">II", side, side)  # IHDR width, height
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))  # a valid chunk checksum
    with bounded(seconds=10, peak=None), pytest.raises(DataError, match="pixels|DecompressionBomb"):
        decode_image(bytes(png), "huge.png")


# ---- configs ---------------------------------------------------------------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["vae", "ae", "mlp", "conv", "adam", "onecycle", "digits", "1e-3"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4)),
                      max_leaves=12)
MODEL_KEYS = ["name", "latent_dim", "arch", "mlp_hidden", "conv_channels", "hidden_dim", "activation", "likelihood", "beta",
              "gaussian_std", "learn_std", "image_shape"]
DATA_KEYS = ["name", "path", "val_fraction", "classes", "drop_classes", "limit", "size", "resize_mode", "channels"]
TRAIN_KEYS = [f for f in TrainConfig.__dataclass_fields__]


def section(keys):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), VALUES, max_size=5)


CONFIGS = st.one_of(
    VALUES,
    st.fixed_dictionaries({}, optional={"model": st.one_of(section(MODEL_KEYS), VALUES), "data": st.one_of(section(DATA_KEYS), VALUES),
                                        "train": st.one_of(section(TRAIN_KEYS), VALUES), "seed": VALUES, "vaelab_version": VALUES,
                                        "extra": VALUES}),
)


@FUZZ
@given(CONFIGS)
def test_fuzz_run_config_from_dict(d):
    with bounded(peak=None):
        cfg = only_vaelab_errors(RunConfig.from_dict, d)
    if cfg is not None:  # whatever is accepted round-trips through YAML unchanged
        assert RunConfig.from_dict(load_yaml(dump_yaml(cfg.to_dict()), "roundtrip")).to_dict() == cfg.to_dict()


YAML_TOKENS = list("abz019:-_ .,[]{}&*!|>'\"#%@`?\n\t") + ["!!python/object:os.system ", "2001-13-45", "!!binary ", "<<: ",
                                                         "0x", "~", "1e999", "!!float ", "!!int ", "!!timestamp ", "&a ", "*a"]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=200), YAMLISH, VALUES.map(lambda v: dump_yaml({"train": v, "model": {"name": "vae"}}))))
def test_fuzz_yaml_config_text(text):
    with bounded(peak=None):
        d = only_vaelab_errors(load_yaml, text, "fuzz.yaml")
        if d is not None:
            assert isinstance(d, dict)
            only_vaelab_errors(RunConfig.from_dict, d)


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=30), YAMLISH.map(lambda v: "train.lr=" + v), YAMLISH.map(lambda v: "model." + v)), max_size=4))
def test_fuzz_set_options(items):
    with bounded(peak=None):
        d = only_vaelab_errors(parse_set, items)
        if d is not None:
            only_vaelab_errors(RunConfig.build, "vae", d)


@pytest.mark.parametrize("d,msg", [
    ({1: 2, "model": {"name": "vae"}}, "unknown top-level"),  # a non-text key (sorting mixed keys crashed)
    ({"model": {"name": ["vae"]}}, "model.name"),  # an unhashable model name (crashed the registry lookup)
    ({"model": {"name": "vae"}, "data": "digits"}, "data: expected a mapping"),  # dict("digits") crashed
    ({"model": {"name": "vae"}, "train": {"lr": float("nan")}}, "finite"),  # NaN passed the lr > 0 check
    ({"model": {"name": "vae", "beta": 10**400}}, "number"),  # float(10**400) overflowed
    ({"model": {"name": "vae"}, "seed": 2**64}, "seed"),  # accepted, then failed inside Lightning
    ({"model": {"name": "vae"}, "train": {"checkpoint_every_n_steps": 0}}, "checkpoint_every_n_steps"),
    ([("model", 1)], "mapping"),
])
def test_config_regressions(d, msg):
    with pytest.raises(ConfigError, match=msg):
        RunConfig.from_dict(d)


def test_yaml_regressions():
    with pytest.raises(ConfigError, match="cannot be read"):
        load_yaml("seed: 2001-13-45", "c.yaml")  # a date the YAML grammar accepts but the calendar does not
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['echo pwned']", "c.yaml")  # never constructs Python objects
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_yaml("[" * 5000 + "]" * 5000, "c.yaml")
    assert parse_set(["train.lr=2001-13-45"]) == {"train": {"lr": "2001-13-45"}}  # kept as text, refused later
    laughs = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 8)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    with bounded(seconds=10, peak=None), pytest.raises(ConfigError):  # 8**9 elements if expanded: never expanded
        RunConfig.from_dict({"model": {"name": "vae", "mlp_hidden": load_yaml(laughs, "l.yaml")["i"]}})


# ---- bad images, named cases (the fuzzers above cover their neighbourhoods) ------------------
@pytest.mark.parametrize("x,msg", [
    (np.zeros((4, 8, 8, 2), np.uint8), "C in 1, 3"),  # two channels
    (np.zeros((4, 8, 8), np.int64), "uint8"),  # integer dtype other than uint8
    (np.full((4, 8, 8), np.inf, np.float32), "NaN or infinite"),  # inf pixels
    (np.full((4, 8, 8), 1.5, np.float32), r"\[0, 1\]"),  # floats out of range
    (np.zeros((0, 8, 8), np.uint8), "empty"),  # no images
    (np.zeros((4, 0, 8), np.uint8), "empty"),  # images of no pixels
    (np.zeros(8, np.uint8), "N x H x W"),  # neither a stack of images nor N x D vectors
    (np.array(3.0), "N x H x W"),  # a scalar (crashed with TypeError: len() of unsized object)
])
def test_npz_images_of_the_wrong_kind(scratch, x, msg):
    np.savez(scratch / "bad.npz", x=x)
    with pytest.raises(DataError, match=msg):
        get_source("npz").load("train", str(scratch / "bad.npz"))


def test_folder_images_of_different_sizes_or_none(tmp_path):
    from PIL import Image

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        get_source("folder").load("train", str(tmp_path / "empty"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, size in enumerate([(8, 8), (8, 8), (9, 8)]):
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(mixed / f"{i}.png")
    with pytest.raises(DataError, match="different sizes"):
        get_source("folder").load("train", str(mixed))
