"""inference.py end to end as users run it, A/B against another checkout."""

import json
import sys
import tempfile
from pathlib import Path

from scripts.benchmarks.common import ROOT, case_flags, run_inference, write_cli_inputs, write_random_checkpoints


def run(args) -> dict:
    """The case end to end through inference.py: this checkout, and --compare_with's, alternating."""
    import numpy as np

    from media.video import read_video

    repos = [ROOT] + ([Path(args.compare_with).resolve()] if args.compare_with else [])
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ckpts = write_random_checkpoints(Path(args.ckpts_dir) if args.ckpts_dir else folder / "ckpts", args.size)
        flags = write_cli_inputs(folder, args.width, args.height, args.frames) + case_flags(args)
        runs = {str(repo): [] for repo in repos}
        for _ in range(args.repeats):
            for index, repo in enumerate(repos):
                row = run_inference(repo, ckpts, flags + args.extra_flags if repo == ROOT else flags, folder / f"out{index}.mp4")
                runs[str(repo)].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        report = dict(report="cli", runs=runs, best_wall_seconds={repo: min(r["wall_seconds"] for r in rows) for repo, rows in runs.items()})
        if len(repos) == 2 and all(r["exit_status"] == 0 for rows in runs.values() for r in rows):
            videos = [read_video(folder / f"out{i}.mp4")[0] for i in range(2)]
            # Written as H.264, nearly identical frames need not give identical files: one value that truncates to the
            # next level can change the encoder's choices. The float videos are compared by the tests (golden fixtures).
            if videos[0].shape == videos[1].shape:
                difference = videos[0].astype(float) - videos[1]
                report["identical_frames"] = bool((difference == 0).all())
                report["max_pixel_difference"] = int(np.abs(difference).max())
                report["psnr_between_the_videos_db"] = round(float(10 * np.log10(255**2 / max((difference**2).mean(), 1e-12))), 1)
            best = report["best_wall_seconds"]
            report["speedup_vs_compare_with"] = round(best[str(repos[1])] / best[str(ROOT)], 3)
    return report
