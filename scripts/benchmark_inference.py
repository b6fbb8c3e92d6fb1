"""Time the generation pipeline and report seconds per phase, seconds per frame and peak memory as JSON.

    python scripts/benchmark_inference.py --size tiny                 # tiny random networks, CPU-friendly
    python scripts/benchmark_inference.py --size full --width 256 --height 256 --seconds 2 --device cuda
Weights are random (the architecture, not the weights, sets the cost); nothing is downloaded.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.context import video_length  # noqa: E402
from pipelines.kps import draw_kps_image  # noqa: E402
from pipelines.loading import ModelPaths, load_pipeline  # noqa: E402
from scripts.make_tiny_checkpoints import write_tiny_checkpoints  # noqa: E402


def full_size_checkpoints(folder: Path) -> Path:
    """The tiny layout, with the five V-Express networks replaced by full-size random ones (VAE and wav2vec2 stay tiny)."""
    from diffusers import AutoencoderKL
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
    from pipelines.config import load_inference_config

    write_tiny_checkpoints(folder)
    root = Path(__file__).resolve().parents[1] / "model_ckpts" / "stable-diffusion-v1-5" / "unet" / "config.json"
    (folder / "stable-diffusion-v1-5" / "unet" / "config.json").write_text(root.read_text())
    AutoencoderKL().save_pretrained(folder / "sd-vae-ft-mse")  # SD's VAE architecture
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder / "wav2vec2-base-960h")  # wav2vec2-base
    express = folder / "v-express"
    state = UNet3DConditionModel.from_config_2d(root, load_inference_config()["unet_additional_kwargs"]).state_dict()
    torch.save({k: v for k, v in state.items() if "motion_modules" not in k}, express / "denoising_unet.bin")
    torch.save({k: v for k, v in state.items() if "motion_modules" in k}, express / "motion_module.bin")
    torch.save(reference_net_from_config(root).state_dict(), express / "reference_net.bin")
    torch.save(VKpsGuider().state_dict(), express / "v_kps_guider.bin")
    torch.save(AudioProjection().state_dict(), express / "audio_projection.bin")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=2.0, help="audio length")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None)
    parser.add_argument("--save_gpu_memory", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("fp32" if device.type == "cpu" else "fp16")]

    with tempfile.TemporaryDirectory() as folder:
        ckpts = (full_size_checkpoints if args.size == "full" else write_tiny_checkpoints)(Path(folder))
        paths = ModelPaths.under(ckpts)
        started = time.perf_counter()
        pipeline = load_pipeline(paths, device, dtype)
        load_seconds = time.perf_counter() - started

    frames = video_length(int(args.seconds * 30))
    rng = np.random.default_rng(0)
    reference = Image.fromarray(rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8))
    kps = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.6]], dtype=np.float32) * [args.width, args.height]
    kps_images = [Image.fromarray(draw_kps_image(args.height, args.width, kps))] * frames
    waveform = torch.from_numpy(rng.standard_normal(int(args.seconds * 16000)).astype(np.float32) * 0.1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timings = {}
    started = time.perf_counter()
    pipeline(reference, kps_images, waveform, args.width, args.height, frames, args.steps, 3.5,
             generator=torch.Generator().manual_seed(0), save_gpu_memory=args.save_gpu_memory, timings=timings)
    total = time.perf_counter() - started
    report = {
        "size": args.size, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "width": args.width, "height": args.height, "frames": frames, "steps": args.steps, "save_gpu_memory": args.save_gpu_memory,
        "load_seconds": round(load_seconds, 3), "seconds_per_phase": {k: round(v, 3) for k, v in timings.items()},
        "total_seconds": round(total, 3), "seconds_per_frame": round(total / frames, 4),
        "peak_host_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if device.type == "cuda":
        report["peak_gpu_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
