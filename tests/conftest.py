import os
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _env(tmp_path_factory):
    """Real data from ../shared/data and Debian's Fashion-MNIST; a private cache; 2 threads, or one
    per pytest-xdist worker (scripts/test.sh runs a worker per logical CPU: two workers of two threads
    each would both slow down several times)."""
    if SHARED.is_dir():
        os.environ["VAELAB_DATA"] = str(SHARED)
    os.environ["VAELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


def has_fashion_mnist() -> bool:
    from vaelab.data import get_source

    return get_source("fashion-mnist").locate() is not None


needs_fmnist = pytest.mark.skipif("not __import__('tests.conftest', fromlist=['x']).has_fashion_mnist()",
                                  reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny models: no spin-waiting between threads when the machine
    is shared with other jobs, and no slower on tensors this small."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
