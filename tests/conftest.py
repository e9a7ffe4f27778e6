import os
import subprocess
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _progress_on_after_each_test():
    """Every test leaves progress on and the 'vaelab' logger enabled, as a new process starts: a test that
    turns progress off (set_quiet(True), to check that --quiet silences something), or a library that one
    configures logging with (``logging.config.dictConfig`` disables the loggers it does not name), cannot
    silence the lines a later test in the worker checks."""
    yield
    import logging

    from vaelab.progress import set_quiet

    set_quiet(False)
    logging.getLogger("vaelab").disabled = False


@pytest.fixture(autouse=True, scope="session")
def _env(tmp_path_factory):
    """Real data from ../shared/data and Debian's Fashion-MNIST; a private cache; 2 threads, or one
    per pytest-xdist worker (scripts/test.sh runs a worker per logical CPU: two workers of two threads
    each would both slow down several times)."""
    if SHARED.is_dir():
        os.environ["VAELAB_DATA"] = str(SHARED)
    os.environ["VAELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    # the runs the tests train draw no report figures (train.figures' default; about 40% of the suite's CPU
    # time when they did): the tests of the figures ask for them (the `figures` fixture), and
    # VAELAB_FIGURES=1 pytest ... draws them for every run
    os.environ.setdefault("VAELAB_FIGURES", "0")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def figures(monkeypatch):
    """The runs this test trains draw their report's figures (train.figures' default back to true)."""
    monkeypatch.setenv("VAELAB_FIGURES", "1")


@pytest.fixture(scope="module")
def figures_module():
    """The runs this module's fixtures train draw their report's figures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VAELAB_FIGURES", "1")
        yield


# CI installs every extra and dataset a test needs (scripts/install.sh, ../shared/data), so there a
# missing one is a failure that names it; on a developer's machine the test is skipped instead.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Stop a test that cannot run here: a skip, or under CI=true a failure naming what is missing."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: CI installs it, so its absence fails the run)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str):
    """``pytest.importorskip(name)`` that fails under CI=true."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed (bash scripts/install.sh installs the extras the tests use)")


def require_source(name: str) -> None:
    """The named data source can be found (../shared/data, VAELAB_DATA or Debian's package), or the test stops."""
    from vaelab.data import get_source

    if get_source(name).locate() is None:
        hint = ("apt-get install dataset-fashion-mnist" if name == "fashion-mnist"
                else f"put {name}/ under ../shared/data or VAELAB_DATA")
        missing(f"the {name} data set is not installed ({hint})")


def require_shared(sub: str) -> None:
    """../shared/data/<sub> exists, or the test stops."""
    if not (SHARED / sub).is_dir():
        missing(f"{SHARED / sub} not found (the project's offline data beside the repository)")


@pytest.fixture(scope="session")
def fashion_mnist():  # session scope: checked before any module fixture that would train on it
    require_source("fashion-mnist")


needs_fmnist = pytest.mark.usefixtures("fashion_mnist")


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny models: no spin-waiting between threads when the machine
    is shared with other jobs, and no slower on tensors this small."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def vaelab_here(*args, cwd=None) -> subprocess.CompletedProcess:
    """``vaelab ARGS`` run by the same ``main()`` the console script calls, in this process: no
    interpreter start-up and no second import of torch (seconds per command, many more on a busy
    machine). What a process of its own would have is given to it and taken back afterwards: its
    command line (``sys.argv``: the run's command.txt records it), its current directory, its stdout
    and stderr (returned, as ``subprocess.run(..., capture_output=True, text=True)`` does), argparse's
    exits as exit statuses, warnings printed as they are raised, and the models and modules that
    ``--import`` added. A test that needs
    a real process (a signal, a lock held by another process, the console script itself) starts one."""
    import contextlib
    import io
    import sys
    import warnings

    from vaelab.cli import main
    from vaelab.models import registry

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved = (sys.argv, list(sys.path), dict(registry.MODELS), dict(registry.IMPORTED), set(sys.modules), os.getcwd())
    try:
        sys.argv = ["vaelab", *argv]
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # warnings reach stderr where they are raised, each once, under the interpreter's default
            # filters, as in a process of its own (pytest would otherwise collect them out of sight)
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            try:
                rc = main(argv)
            except SystemExit as e:  # argparse's refusals and --help
                rc = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv, sys.path[:] = saved[0], saved[1]
        registry.MODELS.clear()
        registry.MODELS.update(saved[2])
        for name in set(registry.IMPORTED) - set(saved[3]):  # the next command imports them again, as a new process would
            if name not in saved[4]:
                sys.modules.pop(name, None)
        registry.IMPORTED.clear()
        registry.IMPORTED.update(saved[3])
        os.chdir(saved[5])
    return subprocess.CompletedProcess(["vaelab", *argv], rc, out.getvalue(), err.getvalue())


def console_script() -> str:
    """The installed ``vaelab`` command (beside this interpreter, as pip puts it), for the tests that
    run the entry point itself."""
    import shutil
    import sys

    found = shutil.which("vaelab", path=str(Path(sys.executable).parent)) or shutil.which("vaelab")
    if found is None:
        missing("the vaelab command is not installed (pip install -e . puts it beside the interpreter)")
    return found


def train_run_keeping_model(cfg, run_dir):
    """``vaelab.api.train_run(cfg, run_dir)`` that also returns the model as training left it, so that a
    test can compare what ``vaelab.load`` gives back with the trained model itself (not with a second load)."""
    import vaelab.train
    from vaelab.api import train_run

    kept, fit = {}, vaelab.train.fit

    def keep(*a, **k):
        out = fit(*a, **k)
        kept["model"] = out[0]
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vaelab.train, "fit", keep)
        run, metrics = train_run(cfg, run_dir)
    return run, metrics, kept["model"].eval()
