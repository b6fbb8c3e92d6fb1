"""Speed and memory of generation, printed as JSON (and written with --out). Weights are random: the architecture,
not the weights, sets the cost; nothing is downloaded.

    python scripts/benchmark_inference.py --case full_cpu                       # the full-size CPU case, per phase and UNet call
    python scripts/benchmark_inference.py --case full_cpu --compile --context_batch_size 3
    python scripts/benchmark_inference.py --report cli --case full_cpu --compare_with ../main-before   # end to end, A/B
    python scripts/benchmark_inference.py --report memory --width 256 --height 256 --seconds 10 60
    python scripts/benchmark_inference.py --report filter                       # the flicker filter on 512x512 frames
    python scripts/benchmark_inference.py --report audio --seconds 60 600       # wav2vec2-base on 1 and 10 minutes of audio
    python scripts/benchmark_inference.py --report modes --size full --width 128 --height 128
    python scripts/benchmark_inference.py --report upsampling --case full_cpu  # regrouped up-samplers against diffusers'
    python scripts/benchmark_inference.py --report scoring --seconds 10 --repeats 1   # scripts/evaluate.py on a 10 s 512x512 video
    python scripts/benchmark_inference.py --report server --jobs 8 --workers_counts 1 2   # the job server's overhead, jobs per hour

Reports:
- phases: one generation in this process (the streamed path inference.py takes): seconds per phase and per UNet
  call, peak host memory over the loaded networks, peak accelerator memory.
- cli: inference.py run as users run it on checkpoint files of random weights, end to end; with --compare_with
  also another checkout's inference.py (e.g. a git worktree of an older commit) on the same files and inputs,
  alternating, the best of --repeats each, and whether the two videos are identical.
- memory: inference.py with tiny networks once per --seconds (of this checkout, or --compare_with's): peak memory
  against audio length.
- upsampling: diffusers' Upsample2D against modules/upsampling.py's PhaseUpsample2D, in the VAE decoder (seconds
  per decoded frame) and in the denoising UNet (seconds per call on one window), and how far the outputs differ.
- filter, audio, modes (the fast modes against the default: UNet and total seconds).
The GPU report, every figure on one CUDA device, is scripts/benchmark_gpu.py.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.benchmarks.common import inference_defaults  # noqa: E402

REPORTS = ["phases", "cli", "memory", "filter", "audio", "modes", "upsampling", "scoring", "server"]  # scripts/benchmarks/<report>.py
CASES = {  # issue 12's "full-size CPU case"
    "full_cpu": dict(size="full", width=128, height=128, frames=28, context_frames=12, context_overlap=4, steps=2,
                     guidance_scale=3.5, device="cpu", dtype="fp32"),
}



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", choices=REPORTS, default="phases")
    parser.add_argument("--case", choices=list(CASES), help="a named case (sets size, resolution, frames, windows, steps, dtype)")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--width", type=int, default=None, help="default 512 for memory and filter, 64 otherwise")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--frames", type=int, default=48, help="video length (phases, filter, modes)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60], help="audio lengths (memory, audio)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 1 for memory, 4 otherwise)")
    defaults = inference_defaults()  # the flags shared with inference.py default as there
    parser.add_argument("--context_frames", type=int, default=defaults.context_frames)
    parser.add_argument("--context_overlap", type=int, default=defaults.context_overlap)
    parser.add_argument("--guidance_scale", type=float, default=defaults.guidance_scale)
    parser.add_argument("--device", default=None, help="cuda when there is one, else cpu")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None)
    parser.add_argument("--scheduler", default=defaults.scheduler)
    parser.add_argument("--guidance_interval", type=float, nargs=2, default=tuple(defaults.guidance_interval))
    parser.add_argument("--cache_interval", type=int, default=defaults.cache_interval)
    parser.add_argument("--context_batch_size", type=int, default=defaults.context_batch_size)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best counts")
    parser.add_argument("--compare_with", default=None, help="another checkout of this project (cli: measured too; memory: measured instead)")
    parser.add_argument("--ckpts_dir", default=None, help="cli: keep the random checkpoint files here and reuse them")
    parser.add_argument("--extra_flags", nargs=argparse.REMAINDER, default=[], help="cli: more inference.py flags for this checkout's runs")
    parser.add_argument("--jobs", type=int, default=8, help="server: jobs per measurement")
    parser.add_argument("--workers_counts", type=int, nargs="+", default=[1, 2], help="server: worker processes to measure throughput with")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    case, _ = parser.parse_known_args(argv)
    parser.set_defaults(**CASES.get(case.case, {}))  # a case's settings, under the flags given with it
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    large = args.report in ("memory", "filter", "scoring")
    args.width, args.height = args.width or (512 if large else 64), args.height or (512 if large else 64)
    args.steps = args.steps or {"memory": 1}.get(args.report, 4)
    args.dtype = args.dtype or ("fp32" if args.device == "cpu" else "fp16")
    report = importlib.import_module(f"scripts.benchmarks.{args.report}").run(args)
    report["settings"] = {k: v for k, v in vars(args).items() if k not in ("out",)}
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
