"""The GPU report: every speed, memory and precision figure of generation on one CUDA device, in one JSON
(scripts/benchmarks/gpu.py; `--help` lists what it measures).

    python scripts/benchmark_gpu.py --out gpu.json          # full-size networks, about 7 minutes on an H200
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.benchmarks.gpu import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
