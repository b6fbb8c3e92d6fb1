"""One generation through the CLI's streamed path, per phase and per UNet call."""

import json
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchmarks.common import build_pipeline, memory_now, reset_peak_memory, sample_inputs


def run(args) -> dict:
    """One generation of `args.frames` frames through the CLI's streamed path (latents, then decoded, filtered and
    encoded in batches), with networks built in memory."""
    import torch

    from modules.checkpoints import DTYPES
    from motion.keypoints import KpsImages
    from pipelines.loading import make_scheduler
    from media.video import write_video

    device = torch.device(args.device)
    started = time.perf_counter()
    pipeline = build_pipeline(args.size, device, DTYPES[args.dtype])
    build_seconds = time.perf_counter() - started
    if args.compile:
        pipeline.denoising_unet = torch.compile(pipeline.denoising_unet, dynamic=False)
    pipeline.scheduler = make_scheduler(args.scheduler)
    reference, kps, waveform = sample_inputs(args.width, args.height, args.frames)
    runs = []
    for _ in range(args.repeats):
        before = memory_now()["VmRSS"]
        reset_peak_memory(device)
        started = time.perf_counter()
        output = pipeline(
            reference_image=reference, kps_images=KpsImages(kps, args.height, args.width), audio_waveform=waveform, width=args.width,
            height=args.height, video_length=args.frames, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
            context_frames=args.context_frames, context_overlap=args.context_overlap, generator=torch.Generator().manual_seed(0),
            output_type="latent", context_batch_size=args.context_batch_size, guidance_interval=tuple(args.guidance_interval),
            cache_interval=args.cache_interval, return_output=True,
        )
        timings, unet_calls, clock = output.timings, output.unet_calls, time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            write_video(Path(folder) / "video.mp4", pipeline.stream_frames(output.frames), 30.0, num_frames=args.frames)
        timings["decoding and writing"] = time.perf_counter() - clock
        run = dict(
            seconds=round(time.perf_counter() - started, 3), seconds_per_phase={k: round(v, 3) for k, v in timings.items()},
            unet_calls=unet_calls, seconds_per_unet_call=round(timings["denoising"] / unet_calls, 3),
            host_memory_before_gib=round(before / 2**30, 3), extra_peak_host_memory_gib=round((memory_now()["VmHWM"] - before) / 2**30, 3),
        )
        if device.type == "cuda":
            run["peak_accelerator_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    return dict(report="phases", build_seconds=round(build_seconds, 1), runs=runs, best_seconds=min(r["seconds"] for r in runs))
