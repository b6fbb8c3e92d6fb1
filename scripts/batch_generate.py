"""Generate many videos from a manifest: one row per video, its columns named after inference.py's flags.

    python scripts/batch_generate.py --manifest jobs.csv
    accelerate launch --num_processes 4 scripts/batch_generate.py --manifest jobs.csv

jobs.csv (or jobs.jsonl, one JSON object per line):

    job,reference_image,audio,kps_path,output,retarget_strategy
    alice,faces/alice.png,speech/alice.wav,,out/alice.mp4,fix_face
    bob,faces/bob.png,speech/bob.wav,kps/bob.pth,out/bob.mp4,

A job whose output exists is skipped, so running the same command again picks up where a run stopped. A failing
job is recorded and the others go on; results.csv (job, status, seconds, frames, message) holds every job's
outcome. Under `accelerate launch` the jobs are shared out among the processes, one GPU each.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.requests import script_parser, split_command_line  # noqa: E402


def build_parser():
    parser = script_parser(__doc__, per_video_flags=True, passed_on="it applies to every job, unless the job's column sets it")
    parser.add_argument("--manifest", required=True, help="the jobs: a .csv with a header row, or a .jsonl")
    parser.add_argument("--results", default=None, help="where to write the outcome of every job (default: results.csv beside the manifest)")
    return parser


def main(argv=None) -> int:
    import warnings

    from app.batch import run_batch

    args, defaults = split_command_line(build_parser(), argv, per_video_flags=True)
    warnings.filterwarnings("ignore", category=FutureWarning)
    results = args.results or Path(args.manifest).with_name("results.csv")
    try:
        return run_batch(args.manifest, results, defaults)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to go on (finished videos are kept; the one in progress resumes "
              "from its last saved step)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
