import os
import sys
import tempfile
from pathlib import Path

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
