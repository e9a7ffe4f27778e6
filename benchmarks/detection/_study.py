"""Shared by one_class and detect_tasks: the OOD study's layout (`vaelab data build-ood-study`), at its
full size or, for a smoke test, built from --study-limit images of each split."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--study-limit", type=int, default=None,
                    help="smoke tests: build each study from N training and N test images drawn from its dataset, with N / 10 "
                         "labelled and normal images per set (its provenance indices then index those draws; default: the "
                         "whole dataset, 1,000 and 1,000)")


def build(path: Path, a: argparse.Namespace, seed: int = 0, classes=(0, 1, 2, 3, 4), dataset: str = "mnist") -> Path:
    """The study file PATH (its name gets -limitN with --study-limit), built unless it is there."""
    from vaelab.data import SOURCES
    from vaelab.detect.study import build_ood_study

    if a.study_limit:
        path = path.with_name(f"{path.stem}-limit{a.study_limit}{path.suffix}")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        if a.study_limit:
            n = a.study_limit // 10 // len(classes) * len(classes)
            src = SOURCES[dataset]
            sets = (src.load("train").limit(a.study_limit, seed), src.load("test").limit(a.study_limit, seed))
            build_ood_study(path, seed=seed, classes=list(classes), n_labeled=n, n_normal=n, mnist=sets, dataset=dataset)
        else:
            build_ood_study(path, seed=seed, classes=list(classes), dataset=dataset)
    return path
