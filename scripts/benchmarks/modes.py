"""Each fast mode and preset against the default."""

import json
import sys
import time

from scripts.benchmarks.common import build_pipeline, sample_inputs


def run(args) -> dict:
    """Each fast mode and preset against the default (DDIM 25 steps, guidance on every step): UNet and total seconds."""
    import torch

    from modules.checkpoints import DTYPES
    from motion.keypoints import KpsImages
    from pipelines.loading import make_scheduler
    from scripts.learning_check import modes_and_presets

    device = torch.device(args.device)
    pipeline = build_pipeline(args.size, device, DTYPES[args.dtype])
    reference, kps, waveform = sample_inputs(args.width, args.height, args.frames)
    rows = []
    for name, mode in modes_and_presets().items():  # the learning check's modes, measured there for deviation
        mode = dict(mode)
        mode["num_inference_steps"] = mode.pop("steps")
        pipeline.scheduler = make_scheduler(mode.pop("scheduler"))
        started = time.perf_counter()
        timings = pipeline(reference_image=reference, kps_images=KpsImages(kps, args.height, args.width), audio_waveform=waveform,
                           width=args.width, height=args.height, video_length=args.frames, guidance_scale=args.guidance_scale,
                           generator=torch.Generator().manual_seed(0), return_output=True, context_frames=args.context_frames,
                           context_overlap=args.context_overlap, **mode).timings
        rows.append(dict(mode=name, unet_seconds=round(timings["denoising"], 2), total_seconds=round(time.perf_counter() - started, 2)))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for row in rows:
        row["unet_speedup"] = round(rows[0]["unet_seconds"] / row["unet_seconds"], 2)
        row["total_speedup"] = round(rows[0]["total_seconds"] / row["total_seconds"], 2)
    return dict(report="modes", size=args.size, frames=args.frames, width=args.width, height=args.height, rows=rows)
