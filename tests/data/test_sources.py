import hashlib
import os

import numpy as np
import pytest
import torch

from tests.conftest import SHARED, needs_fmnist, require_shared
from vaelab.data import DataConfig, ImageSet, get_source, load_data, load_split
from vaelab.data.download import RemoteFile, download
from vaelab.errors import ConfigError, DataError


@pytest.fixture
def shared_mnist():
    require_shared("mnist")


@pytest.fixture
def shared_cifar10():
    require_shared("cifar10")


@pytest.fixture
def shared_celeba_sample():
    require_shared("celeba-sample")


@needs_fmnist
def test_fashion_mnist_full_splits():
    tr = get_source("fashion-mnist").load("train")
    te = get_source("fashion-mnist").load("test")
    assert tr.images.shape == (60000, 1, 28, 28) and te.images.shape == (10000, 1, 28, 28)
    assert tr.images.dtype == torch.uint8
    assert torch.bincount(te.labels).tolist() == [1000] * 10


@pytest.mark.usefixtures("shared_mnist")
def test_mnist_first_test_labels():
    te = get_source("mnist").load("test")
    assert te.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first MNIST test labels


@pytest.mark.usefixtures("shared_cifar10")
def test_cifar10_jpeg_npz_matches_exact_subset():
    te = get_source("cifar10").load("test")
    assert te.images.shape == (10000, 3, 32, 32)
    exact = np.load(SHARED / "cifar10" / "cifar10_exact_subset.npz")
    idx = exact["idx_test"][:50]
    ref = torch.from_numpy(exact["x_test"][:50]).permute(0, 3, 1, 2).float()
    err = (te.images[torch.from_numpy(idx)].float() - ref).abs().mean()
    assert err < 13  # JPEG-lossy copy (documented mean error 5.8/255)
    assert (te.labels[torch.from_numpy(idx)] == torch.from_numpy(exact["y_test"][:50].astype(np.int64))).all()


@pytest.mark.usefixtures("shared_celeba_sample")
def test_celeba64_crop_resize():
    tr = get_source("celeba64").load("train")
    te = get_source("celeba64").load("test")
    assert tr.shape == (3, 64, 64) and len(tr) + len(te) == 32


def test_digits_and_transforms():
    s = load_split(DataConfig(name="digits", size=16, resize_mode="resize", channels=3), "train")
    assert s.shape == (3, 16, 16) and len(s) == 1438


def test_pad_28_to_32_keeps_pixels():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    y = ImageSet(x).to_size(32, "pad").images
    assert y.shape == (3, 1, 32, 32)
    assert torch.equal(y[:, :, 2:30, 2:30], x) and y[:, :, :2].sum() == 0


def test_class_filter_and_empty_selection():
    s = ImageSet(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert s.select_classes(keep=[1]).labels.tolist() == [1, 1]
    assert s.select_classes(drop=[1]).labels.tolist() == [0, 2, 0, 2]
    with pytest.raises(DataError, match="selects no image"):
        s.select_classes(keep=[7])


def test_imageset_rejects_bad_input():
    with pytest.raises(DataError, match="uint8"):
        ImageSet(torch.zeros(2, 1, 4, 4))
    with pytest.raises(DataError, match="channels"):
        ImageSet(torch.zeros(2, 5, 4, 4, dtype=torch.uint8))
    with pytest.raises(DataError, match="NaN"):
        ImageSet.from_float(torch.full((1, 1, 2, 2), float("nan")))


def test_split_is_deterministic_and_disjoint():
    s = ImageSet(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous())
    a, b = s.split(0.2, seed=3)
    a2, b2 = s.split(0.2, seed=3)
    assert torch.equal(b.images, b2.images) and len(b) == 20 and len(a) == 80
    assert not set(a.images[:, 0, 0, 0].tolist()) & set(b.images[:, 0, 0, 0].tolist())


def test_load_data_class_filter_applies_to_train_not_test():
    tr, va, te = load_data(DataConfig(name="digits", classes=[3], val_fraction=0.1))
    assert set(tr.labels.tolist()) == {3} and set(va.labels.tolist()) == {3}
    assert len(set(te.labels.tolist())) == 10


def test_unknown_dataset_lists_valid():
    with pytest.raises(ConfigError, match="fashion-mnist"):
        DataConfig(name="imagenet")


def test_missing_offline_says_where_and_how(monkeypatch, tmp_path):
    src = get_source("cifar10")
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(type(src), "candidates", lambda self: [tmp_path / "nothing" / "cifar10"])
    monkeypatch.setattr(src, "remote", (RemoteFile("cifar-10-binary.tar.gz", ("http://127.0.0.1:9/none",), "0" * 64),))
    with pytest.raises(DataError) as e:
        src.load("test")
    msg = str(e.value)
    assert "could not download" in msg and "place the file" in msg


def test_download_verifies_checksum_and_is_atomic(tmp_path):
    payload = os.urandom(5000)
    srcf = tmp_path / "remote.bin"
    srcf.write_bytes(payload)
    good = RemoteFile("data.bin", (srcf.as_uri(),), hashlib.sha256(payload).hexdigest(), len(payload))
    dest = tmp_path / "dest"
    assert download(good, dest).read_bytes() == payload
    bad = RemoteFile("other.bin", (srcf.as_uri(),), "f" * 64, len(payload))
    with pytest.raises(DataError, match="does not match"):
        download(bad, dest)
    assert not (dest / "other.bin").exists()
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin"]  # no partial files left
    short = RemoteFile("short.bin", (srcf.as_uri(),), hashlib.sha256(payload).hexdigest(), len(payload) + 10)
    with pytest.raises(DataError, match="partial"):
        download(short, dest)


def test_folder_source_with_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    tr = get_source("folder").load("train", str(tmp_path))
    te = get_source("folder").load("test", str(tmp_path))
    assert tr.shape == (3, 12, 12) and len(tr) == 18 and len(te) == 2
    assert tr.class_names == ["cats", "dogs"]
    (tmp_path / "cats" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png"):
        get_source("folder").load("train", str(tmp_path))


def test_npz_source(tmp_path):
    p = tmp_path / "mine.npz"
    np.savez(p, x_train=np.zeros((8, 10, 10), np.uint8), y_train=np.arange(8), x_test=np.ones((2, 10, 10), np.uint8))
    tr = get_source("npz").load("train", str(p))
    assert tr.shape == (1, 10, 10) and tr.labels.tolist() == list(range(8))
    q = tmp_path / "nan.npz"
    np.savez(q, x=np.full((4, 5, 5), np.nan))
    with pytest.raises(DataError, match="NaN"):
        get_source("npz").load("train", str(q))
