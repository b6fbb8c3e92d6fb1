"""Peak host memory of inference.py against the audio's length."""

import json
import sys
import tempfile
from pathlib import Path

from scripts.benchmarks.common import ROOT, case_flags, run_inference, write_cli_inputs, write_random_checkpoints


def run(args) -> dict:
    """inference.py (of this checkout, or --compare_with's) with tiny networks once per audio length: peak memory."""
    repo = Path(args.compare_with or ROOT).resolve()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ckpts = write_random_checkpoints(folder / "ckpts", "tiny")
        for seconds in args.seconds:
            flags = write_cli_inputs(folder, args.width, args.height, int(seconds * 30)) + case_flags(args)
            row = dict(seconds_of_audio=seconds, **run_inference(repo, ckpts, flags, folder / "out.mp4"))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    ok = [r for r in rows if r["exit_status"] == 0]
    ratio = round(ok[-1]["peak_host_memory_mib"] / ok[0]["peak_host_memory_mib"], 3) if len(ok) > 1 else None
    return dict(report="memory", repo=str(repo), width=args.width, height=args.height, steps=args.steps, runs=rows,
                peak_ratio_longest_to_shortest=ratio)
