"""Three-stage V-Express training (training.md). Not built yet: the networks, their conversions
(`modules/checkpoints.py`) and the weight formats it will write are in place."""

import sys

if __name__ == "__main__":
    print("error: training is not implemented yet (tracked in the training issue); inference.py works", file=sys.stderr)
    sys.exit(2)
