import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The C2PA certificate every video is signed with is made once per machine under $XDG_CONFIG_HOME: the tests' own.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="v-express-tests-config-")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest -n, one thread per worker (and per CLI it starts): workers that each spin two OpenMP threads
    # on two cores wait on each other and run slower together than one worker alone.
    os.environ["OMP_NUM_THREADS"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (pytest -m gpu); skipped without one")


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch on one thread for a module: the evaluation's reference outputs were made on one thread, and one is
    also far faster on a busy two-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
