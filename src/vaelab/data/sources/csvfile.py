"""A CSV file of numbers, one example per row (tabular data)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..imageset import ImageSet
from .base import Source, register_source
from .npz import labels_tensor


CSV_MAX_COLUMNS = 1 << 16  # a vector's length: the widest layer a model may have (models.base.MAX_WIDTH)
CSV_MAX_CELLS = 1 << 28  # 2 GiB of float64 numbers


class CsvSource(Source):
    """A CSV file of numbers, one example per row (tabular data): vectors of every column but the
    label column (``data.label_column``: its header name or 0-based index; integer classes). A
    first row with any non-numeric cell is the header. 10% of the rows (seeded) form the test
    split; the split 'all' is every row (what `vaelab detect` scores)."""

    config_keys = ("label_column",)

    def locate(self) -> Path | None:
        return None

    def claims(self, path: Path) -> int:
        return 2 if path.suffix.lower() == ".csv" else 0

    def scored_whole(self, path: Path) -> bool:
        return True  # a table has no test split of its own

    def load(self, split: str, path: str | None = None, label_column: str | None = None) -> ImageSet:
        p = self._path(path, "table.csv")
        if not p.is_file():
            raise DataError(f"csv file {p} does not exist")
        try:
            with open(p, newline="", encoding="utf-8-sig") as f:
                rows, cells = [], 0
                for r in csv.reader(f):
                    if not (r and any(c.strip() for c in r)):
                        continue
                    cells += len(r)
                    if len(r) > CSV_MAX_COLUMNS or cells > CSV_MAX_CELLS:  # before a table that cannot fit is built
                        raise DataError(f"{p}: row {len(rows) + 1} brings the table to {len(r):,} columns and {cells:,} "
                                        f"cells; a CSV source takes at most {CSV_MAX_COLUMNS:,} columns and "
                                        f"{CSV_MAX_CELLS:,} cells. Select the columns you need first")
                    rows.append(r)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{p}: cannot be read as a CSV text file ({e})") from None
        if not rows:
            raise DataError(f"{p}: the file holds no rows")

        def number(c: str) -> bool:
            try:
                float(c)
                return True
            except ValueError:
                return False

        header = rows[0] if not all(number(c) for c in rows[0]) else None
        body = rows[1:] if header else rows
        width = len(rows[0])
        bad = [i + (2 if header else 1) for i, r in enumerate(body) if len(r) != width]
        if bad:
            raise DataError(f"{p}: rows {bad[:5]} have another number of columns than the first ({width})")
        col = None
        if label_column is not None:
            names = header or []
            if label_column in names:
                col = names.index(label_column)
            elif label_column.lstrip("-").isdigit() and -width <= int(label_column) < width:
                col = int(label_column) % width
            else:
                raise DataError(f"{p}: no label column {label_column!r}; columns: {names or list(range(width))}")
        class_names: list[str] = []
        if col is not None and not all(number(r[col]) for r in body):  # class names: numbered in sorted order
            class_names = sorted({r[col].strip() for r in body})
            ids = {n: str(i) for i, n in enumerate(class_names)}
            body = [[*r[:col], ids[r[col].strip()], *r[col + 1:]] for r in body]
        try:
            table = np.array([[float(c) for c in r] for r in body], dtype=np.float64)
        except ValueError:
            where = next((i + (2 if header else 1), j) for i, r in enumerate(body) for j, c in enumerate(r) if not number(c))
            raise DataError(f"{p}: row {where[0]}, column {where[1]} is not a number ({body[where[0] - (2 if header else 1)][where[1]]!r}); "
                            "a CSV source holds numbers only (encode categories as numbers first)") from None
        if len(table) == 0:
            raise DataError(f"{p}: the file has a header but no rows")
        y = None
        if col is not None:
            y = table[:, col]
            if not np.all(y == np.round(y)):
                raise DataError(f"{p}: the label column {label_column!r} must hold integer classes")
            y = y.astype(np.int64)
            table = np.delete(table, col, axis=1)
        full = ImageSet(torch.from_numpy(table.astype(np.float32)), None if y is None else labels_tensor(y, len(y), p), p.stem,
                        class_names)
        if split == "all":
            return full
        train, test = full.split(0.1, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, full.name, full.class_names)



CSV = register_source(CsvSource("csv", "a CSV file of numbers, one example per row (tabular data; data.label_column optional)",
                                (), "set data.path to the .csv file", needs_path=True))
