"""A directory of your own images (reading it is data/folder.py)."""
from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ..folder import FolderCache, FolderOptions, read_folder
from ..imageset import ImageSet
from .base import Source, register_source


class FolderSource(Source):
    """A directory of images, optionally one sub-directory per class, optionally train/ and test/
    sub-directories; without those, 10% of the images (seeded) form the test split, and the split
    'all' is every image (what `vaelab detect` scores). Reading is in data/folder.py."""

    config_keys = ("size", "resize_mode", "channels")  # it decodes files itself: it brings them to the run's shape

    _cache = FolderCache()  # one per process: the last folder read

    def locate(self) -> Path | None:
        return None

    def claims(self, path: Path) -> int:
        return 1 if path.is_dir() else 0

    def scored_whole(self, path: Path) -> bool:
        return not ((path / "train").is_dir() and (path / "test").is_dir())

    def load(self, split: str, path: str | None = None, options: FolderOptions | None = None, **image_options) -> ImageSet:
        d = self._path(path, "images")
        if not d.is_dir():
            raise DataError(f"folder {d} does not exist or is not a directory")
        opt = options or FolderOptions(**image_options)
        if (d / "train").is_dir() and (d / "test").is_dir():
            if split == "all":
                raise DataError(f"{d} has train/ and test/ sub-folders: choose one of them (split train or test)")
            return read_folder(d / split, opt)
        full = self._cache.get(d, opt)
        if split == "all":
            return full
        train, test = full.split(0.1, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, train.name, train.class_names,
                                                       files=test.files, notes=test.notes)


FOLDER = register_source(FolderSource("folder", "your own directory of images (class sub-directories optional)", (),
                                      "set data.path to the directory", needs_path=True))
