"""What the reports share: random networks built in memory or written in the real file layout, inputs, inference.py
run as a user runs it, memory readings."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SD_VAE_CONFIG = dict(  # stabilityai/sd-vae-ft-mse's architecture
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512,
)

def inference_defaults():
    """inference.py's own defaults (the published preset applied): the shared flags take theirs from here."""
    from app.requests import GenerationRequest

    return GenerationRequest()


def memory_now() -> dict:
    """Current and peak resident memory of this process (bytes), from /proc/self/status."""
    status = open("/proc/self/status").read()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) * 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak_memory(device) -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # Linux: the peak resident size starts again from the current one
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def build_pipeline(size: str, device, dtype, seed: int = 0):
    """A VExpressPipeline of random networks built in memory: `tiny` (the tiny checkpoints' architectures) or
    `full` (the published ones: SD1.5 UNets, the SD VAE, wav2vec2-base). Every parameter is drawn (no zero-initialised
    path stays dead), then moved to `device` in `dtype`."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
    from pipelines.config import load_inference_config
    from pipelines.pipeline_v_express import VExpressPipeline
    from pipelines.speech import SAMPLING_RATE
    from scripts import make_tiny_checkpoints as tiny

    config = load_inference_config()
    if size == "full":
        unet_config = json.loads((ROOT / "model_ckpts" / "stable-diffusion-v1-5" / "unet" / "config.json").read_text())
        builders = dict(
            vae=lambda: AutoencoderKL(**SD_VAE_CONFIG), audio_encoder=lambda: Wav2Vec2Model(Wav2Vec2Config()),
            v_kps_guider=VKpsGuider, audio_projection=AudioProjection,
        )
    else:
        unet_config = tiny.UNET_CONFIG
        builders = dict(
            vae=lambda: AutoencoderKL(**tiny.VAE_CONFIG), audio_encoder=lambda: Wav2Vec2Model(Wav2Vec2Config(**tiny.WAV2VEC2_CONFIG)),
            v_kps_guider=lambda: VKpsGuider(**tiny.V_KPS_GUIDER_CONFIG), audio_projection=lambda: AudioProjection(**tiny.AUDIO_PROJECTION_CONFIG),
        )
    builders.update(
        reference_net=lambda: reference_net_from_config(unet_config),
        denoising_unet=lambda: UNet3DConditionModel.from_config_2d(unet_config, config["unet_additional_kwargs"]),
    )
    networks = {}
    for index, (name, build) in enumerate(builders.items()):
        networks[name] = tiny.randomize_(build(), seed + index).to(device, dtype).requires_grad_(False)
    pipeline = VExpressPipeline(
        audio_processor=Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0, do_normalize=True),
        scheduler=DDIMScheduler(**config["noise_scheduler_kwargs"]), **networks,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sample_inputs(width: int, height: int, frames: int, seed: int = 0):
    """A random portrait, a keypoint sequence swaying by a few pixels, and speech-like noise lasting exactly `frames`
    frames at 30 fps."""
    import numpy as np
    import torch
    from PIL import Image

    from pipelines.speech import SAMPLING_RATE

    rng = np.random.default_rng(seed)
    reference = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    base = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.6]], dtype=np.float32) * [width, height]
    kps = np.stack([base + [3 * np.sin(i / 5), 2 * np.cos(i / 7)] for i in range(frames)]).astype(np.float32)
    samples = int(np.ceil(frames / 30 * SAMPLING_RATE)) + 1
    waveform = torch.from_numpy((rng.standard_normal(samples) * 0.1 * (1 + np.sin(np.arange(samples) / 2000))).astype(np.float32))
    return reference, kps, waveform


def write_random_checkpoints(folder: Path, size: str) -> Path:
    """A model_ckpts-layout folder of random networks: the tiny checkpoints, or the published architectures
    (about 9 GB of float32 files). Kept and reused when `folder` already holds them at that size (a marker file,
    written last, says which: an interrupted write is not reused)."""
    from modules.checkpoints import save_file, v_express_state_dicts
    from pipelines.loading import ModelPaths
    from scripts.make_tiny_checkpoints import write_tiny_checkpoints

    marker = folder / "benchmark_size.txt"
    if marker.is_file() and marker.read_text() == size and not ModelPaths.under(folder).missing():
        return folder
    marker.unlink(missing_ok=True)
    write_tiny_checkpoints(folder)
    if size == "full":
        import torch

        pipeline = build_pipeline("full", torch.device("cpu"), torch.float32)
        (folder / "stable-diffusion-v1-5" / "unet" / "config.json").write_text((ROOT / "model_ckpts" / "stable-diffusion-v1-5" / "unet" / "config.json").read_text())
        pipeline.vae.save_pretrained(folder / "sd-vae-ft-mse")
        pipeline.audio_encoder.save_pretrained(folder / "wav2vec2-base-960h")
        files = v_express_state_dicts(pipeline.reference_net, pipeline.denoising_unet, pipeline.v_kps_guider, pipeline.audio_projection)
        for name, state_dict in files.items():
            save_file(state_dict, folder / "v-express" / f"{name}.bin")
    marker.write_text(size)
    return folder


def write_cli_inputs(folder: Path, width: int, height: int, frames: int) -> list:
    """A portrait, speech of `frames` frames at 30 fps, and a keypoint file: inference.py's input flags."""
    import numpy as np
    import soundfile

    from pipelines.speech import SAMPLING_RATE

    reference, kps, waveform = sample_inputs(width, height, frames)
    reference.save(folder / "face.png")
    soundfile.write(folder / "speech.wav", waveform.numpy(), SAMPLING_RATE)
    np.save(folder / "kps.npy", kps)
    return ["--reference_image_path", folder / "face.png", "--audio_path", folder / "speech.wav", "--kps_path", folder / "kps.npy"]


def run_inference(repo: Path, ckpts: Path, flags: list, output: Path) -> dict:
    """`repo`'s inference.py as a user runs it: wall seconds, its exit status and the figures its summary prints."""
    from pipelines.loading import ModelPaths

    weights = [arg for name, path in vars(ModelPaths.under(ckpts)).items() for arg in (f"--{name}", path)]
    command = [sys.executable, str(repo / "inference.py"), *flags, "--output_path", output, *weights]
    started = time.perf_counter()
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo), HF_HUB_OFFLINE="1"))
    row = dict(repo=str(repo), exit_status=result.returncode, wall_seconds=round(time.perf_counter() - started, 2))
    if result.returncode != 0:
        row["error"] = (result.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1][-300:]
        return row
    phases = re.search(r"seconds per phase: (.*?)(;|$)", result.stdout, re.M)
    row["seconds_per_phase"] = {name.strip(): float(value) for name, value in re.findall(r"([a-z ]+) ([\d.]+)", phases.group(1))} if phases else {}
    # None where a summary (another checkout's, say) words a figure otherwise.
    figures = dict(peak_host_memory_mib=r"host (\d+) MiB", peak_accelerator_memory_mib=r"peak memory (\d+) MiB on", frames=r"wrote .*?: (\d+) frames")
    for name, pattern in figures.items():
        found = re.search(pattern, result.stdout)
        row[name] = int(found.group(1)) if found else None
    return row


def case_flags(args) -> list:
    return ["--image_width", args.width, "--image_height", args.height, "--num_inference_steps", args.steps, "--guidance_scale",
            args.guidance_scale, "--context_frames", args.context_frames, "--context_overlap", args.context_overlap, "--device", args.device,
            "--dtype", args.dtype]
