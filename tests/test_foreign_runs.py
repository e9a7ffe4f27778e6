"""A run directory from someone else is data, never code: the modules its config names are not
imported unless the user says so, never from inside it or beside it (namespace packages,
relative and absolute paths, symlinks, sys.path entries, the current directory); its YAML is
bounded and alias-free; nothing in it is followed through a symlink; and only vaelab's marker
makes a directory a run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import vaelab
from vaelab.errors import CheckpointError, ConfigError, TrainingError, VaelabError

# each payload writes a file named after itself into PWNED_DIR: it must never appear
PAYLOAD = "import os, pathlib; pathlib.Path(os.environ['PWNED_DIR'], {name!r}).write_text('ran')\n"

# one process drives every case through vaelab.load and `vaelab evaluate / compare / detect / export / app`, with
# and without trust, with the current directory on sys.path ('' of python -c)
DRIVER = r"""
import json, os, sys
import vaelab
from vaelab.cli import main
cases = json.loads(sys.argv[1])
out = {}
for case, (run, cwd) in cases.items():
    os.chdir(cwd)
    got = []
    for trust in (False, True):
        try:
            vaelab.load(run, trust_imports=trust)
            got.append("loaded")
        except vaelab.VaelabError as e:
            got.append(str(e))
        flags = ["--trust-imports"] if trust else []
        got.append(main(["evaluate", run, *flags]))
        got.append(main(["compare", run, run + "-copy", *flags]))
        for job in (["detect", run, "--data", "digits"], ["export", run, "--out", run + "-bundle"], ["app", run]):
            got.append(main([*job, *flags]))
    out[case] = got
print("RESULT" + json.dumps(out))
"""


def _run_dir(root: Path, name: str, imports: list[str]) -> str:
    run = root / name
    run.mkdir(parents=True)
    cfg = {"model": {"name": "payload-vae"}, "data": {"name": "digits"}, "imports": imports}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.json").write_text('{"nelbo": 1.0}')  # so that compare reads the config
    shutil.copytree(run, root / f"{name}-copy")
    return str(run)


def test_code_in_or_beside_a_run_directory_never_runs(tmp_path):
    """Every way a run could bring the module its config names is refused before the module runs, in
vaelab.load and the evaluate, compare, detect, export and app commands:
    a namespace package (no __init__.py) inside the run and beside it, a relative ../x.py, an
    absolute path into the run through a symlink, a regular package found through a sys.path
    entry that holds the run; an absolute path outside runs only with the user's trust."""
    pwned = tmp_path / "pwned"
    pwned.mkdir()
    archive = tmp_path / "archive"  # what a user unpacked: runs and files beside them
    cases = {}

    run = _run_dir(archive, "ns-inside", ["nsin.evil"])  # a namespace package inside the run, run from within it
    (Path(run) / "nsin").mkdir()
    (Path(run) / "nsin" / "evil.py").write_text(PAYLOAD.format(name="nsin"))
    cases["ns-inside"] = (run, run)

    run = _run_dir(archive, "ns-beside", ["nsbeside.evil"])  # one beside the run, with the archive as cwd
    (archive / "nsbeside").mkdir()
    (archive / "nsbeside" / "evil.py").write_text(PAYLOAD.format(name="nsbeside"))
    cases["ns-beside"] = (run, str(archive))

    run = _run_dir(archive, "relative", ["../rel.py"])  # a relative path: shipped beside the run
    (archive / "rel.py").write_text(PAYLOAD.format(name="rel"))
    cases["relative"] = (run, str(tmp_path))

    run = _run_dir(archive, "pkg-on-path", ["besidepkg.evil"])  # a regular package beside it, on PYTHONPATH
    (archive / "besidepkg").mkdir()
    (archive / "besidepkg" / "__init__.py").write_text(PAYLOAD.format(name="besidepkg-init"))
    (archive / "besidepkg" / "evil.py").write_text(PAYLOAD.format(name="besidepkg"))
    cases["pkg-on-path"] = (run, str(tmp_path))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _run_dir(archive, "abs-link", [str(elsewhere / "link.py")])  # an absolute path outside, a symlink into the run
    (Path(run) / "real.py").write_text(PAYLOAD.format(name="abs-link"))
    (elsewhere / "link.py").symlink_to(Path(run) / "real.py")
    cases["abs-link"] = (run, str(tmp_path))

    run = _run_dir(archive, "abs-outside", [str(elsewhere / "outside.py")])  # a plain absolute path elsewhere
    (elsewhere / "outside.py").write_text(PAYLOAD.format(name="outside") + "raise RuntimeError('trusted import ran')\n")
    cases["abs-outside"] = (run, str(tmp_path))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PWNED_DIR": str(pwned),
           "PYTHONPATH": os.pathsep.join([str(archive), ".", os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    results = json.loads(p.stdout.split("RESULT", 1)[1])
    for case, got in results.items():
        load, load_t = got[0], got[6]
        assert got[1:6] == got[7:] == [2] * 5, (case, got)  # evaluate, compare, detect, export, app: refused
        if case == "abs-outside":  # outside the run's tree: refused unless trusted
            assert "--trust-imports" in load and "trusted import ran" in load_t
            continue
        for message in (load, load_t):
            assert "inside the run directory or beside it" in message, (case, message)
    # the one trusted import outside the tree ran; nothing a run brought did
    assert sorted(os.listdir(pwned)) == ["outside"], os.listdir(pwned)
    # 5 runs refused by evaluate, compare, detect, export and app, trusted or not (load's messages are in stdout)
    assert p.stderr.count("inside the run directory or beside it") == 5 * 5 * 2


def test_a_module_on_the_import_path_elsewhere_is_imported_only_when_trusted(tmp_path, monkeypatch):
    """The everyday case: your own module, installed or on sys.path away from the run. Without
    trust the run is refused naming the module and both ways to go on; with trust it loads."""
    from vaelab.models import MODELS
    from vaelab.train import RunConfig

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mymodels_xyz.py").write_text(
        "import vaelab\nfrom vaelab.models import VAE\n\n\n@vaelab.register_model('mine-xyz-vae')\nclass Mine(VAE):\n"
        "    \"\"\"Mine.\"\"\"\n")
    monkeypatch.syspath_prepend(str(lib))
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "mine-xyz-vae", "arch": "mlp"},
                                                     "imports": ["mymodels_xyz"]}))
    with pytest.raises(ConfigError, match=r"--import mymodels_xyz.*--trust-imports"):
        RunConfig.load(run / "config.yaml")
    assert "mymodels_xyz" not in sys.modules
    with vaelab.trust_imports():
        cfg = RunConfig.load(run / "config.yaml")
    assert cfg.model.name == "mine-xyz-vae"
    MODELS.pop("mine-xyz-vae")
    sys.modules.pop("mymodels_xyz")


def test_yaml_of_a_run_is_bounded_and_alias_free(tmp_path):
    """An alias bomb of a few hundred bytes is refused at once (it would expand to 9**9 values),
    and so is a config larger than vaelab reads, before it is parsed."""
    from vaelab.train import RunConfig

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    (tmp_path / "config.yaml").write_text("\n".join(lines) + "\nmodel: {name: vae}\n")
    assert (tmp_path / "config.yaml").stat().st_size < 600
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"alias \(\*name\) at line 2"):
        RunConfig.load(tmp_path / "config.yaml")
    assert time.perf_counter() - t0 < 5
    with open(tmp_path / "config.yaml", "w") as fh:
        fh.write("model: {name: vae}\n# " + "x" * (2 << 20) + "\n")
    with pytest.raises(CheckpointError, match="more than the"):
        RunConfig.load(tmp_path / "config.yaml")
    # what vaelab writes holds no alias even when two keys share one value, so it reads back
    from vaelab.config import dump_yaml, load_yaml

    shared = [1, 2]
    assert load_yaml(dump_yaml({"a": shared, "b": shared}), "x") == {"a": [1, 2], "b": [1, 2]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run (an MLP autoencoder on digits, one epoch)."""
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("ae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]",
                                           "model.latent_dim=2", "train.epochs=1", "train.progress_bar=false",
                                           "train.loggers=csv"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("trained") / "run")
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst, symlinks=True)
    return dst


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_symlinked_lock_figures_or_command_changes_nothing_outside_the_run(trained, tmp_path):
    """.lock, figures/ and command.txt planted as symlinks to the user's files: resume, evaluate and
    load refuse the run with a one-line error naming the link, and the user's files are as they were."""
    from vaelab.api import evaluate_run, train_run
    from vaelab.train import RunConfig

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    (mine / "secret.txt").write_text("SECRET-TOKEN\n")
    (mine / "reconstructions.png").write_bytes(b"my picture")
    before = _snapshot(mine)
    for entry, target in ((".lock", mine / "notes.txt"), ("figures", mine), ("command.txt", mine / "secret.txt")):
        run = _copy(trained, tmp_path / entry.strip("."))
        path = run / entry
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        path.symlink_to(target)
        cfg = RunConfig.load(run / "config.yaml")
        jobs = (lambda c=cfg, r=run: train_run(c, r, resume=True), lambda r=run: evaluate_run(r), lambda r=run: vaelab.load(r))
        for job in jobs:
            with pytest.raises(CheckpointError, match=f"{entry} is a symlink") as e:
                job()
            assert "\n" not in str(e.value)
        assert _snapshot(mine) == before
        assert "SECRET-TOKEN" not in (run / "report.html").read_text()


def test_the_lock_is_opened_without_following_a_symlink(tmp_path):
    """Below check_links: the lock itself is opened with O_NOFOLLOW and never truncated."""
    from vaelab.runfiles import open_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / ".lock").symlink_to(victim)
    with pytest.raises(CheckpointError, match="is a symlink"):
        open_lock(tmp_path / ".lock")
    assert victim.read_text() == "keep me\n"
    (tmp_path / "own.lock").write_text("old")
    os.close(open_lock(tmp_path / "own.lock"))
    assert (tmp_path / "own.lock").read_text() == "old"


def test_only_vaelabs_marker_makes_a_directory_a_run(trained, tmp_path):
    """A user's directory with a config.yaml of its own is not a run stopped before its first
    checkpoint: training into it is refused and its files stay; a run vaelab started carries the marker."""
    from vaelab.api import train_run
    from vaelab.train import RunConfig
    from vaelab.train.rundir import MARKER, check_new_run_dir

    assert (trained / MARKER).is_file()
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.yaml").write_text("project: x\n")
    (mine / "report.html").write_text("<p>my report</p>")
    (mine / "metrics.json").write_text('{"mine": 1}')
    before = _snapshot(mine)
    with pytest.raises(TrainingError, match="is not a vaelab run"):
        check_new_run_dir(mine)
    cfg = RunConfig.build("ae", {"data": {"name": "digits"}, "model": {"arch": "mlp", "mlp_hidden": [8]},
                                 "train": {"epochs": 1, "progress_bar": False}})
    with pytest.raises(VaelabError):
        train_run(cfg, mine)
    with pytest.raises(CheckpointError, match="not a vaelab run"):
        train_run(cfg, mine, resume=True)
    assert {k: v for k, v in _snapshot(mine).items() if k != ".lock"} == before
    stopped = tmp_path / "stopped"  # a run vaelab started and that was stopped before its first checkpoint
    stopped.mkdir()
    (stopped / "config.yaml").write_text("model: {name: ae}\n")
    (stopped / MARKER).write_text("vaelab run directory\n")
    assert check_new_run_dir(stopped) is True
