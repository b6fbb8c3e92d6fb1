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
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SD_VAE_CONFIG = dict(  # stabilityai/sd-vae-ft-mse's architecture
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512,
)
CASES = {  # issue 12's "full-size CPU case"
    "full_cpu": dict(size="full", width=128, height=128, frames=28, context_frames=12, context_overlap=4, steps=2,
                     guidance_scale=3.5, device="cpu", dtype="fp32"),
}


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
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
    from pipelines.speech import SAMPLING_RATE
    from pipelines.config import load_inference_config
    from pipelines.pipeline_v_express import VExpressPipeline
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


def run_phases(args) -> dict:
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
        pipeline.vae.decoder = torch.compile(pipeline.vae.decoder, dynamic=False)
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


def run_cli(args) -> dict:
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


def run_memory(args) -> dict:
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


def run_filter(args) -> dict:
    """The flicker filter on `args.frames` frames of 512x512 (or --width x --height): the previous implementation
    (unfold + sort on the float video) against the streamed min/max one on uint8 frames, same output checked."""
    import torch
    import torch.nn.functional as F

    from pipelines.flicker_filter import FlickerFilter

    def previous_filter(video):  # the implementation this project had before, kept here to time and check against
        padded = F.pad(video, (1, 1, 1, 1, 1, 1), mode="reflect")
        out = torch.empty_like(video)
        for start in range(0, video.shape[2], 8):
            stop = min(start + 8, video.shape[2])
            neighbours = padded[:, :, start:stop + 2].unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)
            out[:, :, start:stop] = neighbours.flatten(-3).median(dim=-1).values
        return out

    video = torch.rand(1, 3, args.frames, args.height, args.width, generator=torch.Generator().manual_seed(0))
    best = {"previous": float("inf"), "streamed_uint8": float("inf")}
    for _ in range(args.repeats):
        started = time.perf_counter()
        expected = (previous_filter(video) * 255).to(torch.uint8)
        best["previous"] = min(best["previous"], time.perf_counter() - started)
        started = time.perf_counter()
        stream, frames = FlickerFilter(args.frames), (video[0].transpose(0, 1) * 255).to(torch.uint8)
        filtered = torch.cat([stream.push(frames[i:i + 8]) for i in range(0, args.frames, 8)])
        best["streamed_uint8"] = min(best["streamed_uint8"], time.perf_counter() - started)
        assert torch.equal(filtered.transpose(0, 1)[None], expected), "the filters disagree"
    return dict(report="filter", frames=args.frames, size=f"{args.width}x{args.height}", identical=True,
                seconds_per_frame={k: round(v / args.frames, 4) for k, v in best.items()},
                speedup=round(best["previous"] / best["streamed_uint8"], 2))


def run_audio(args) -> dict:
    """wav2vec2-base (random weights) and the Audio Projection on `--seconds` of audio: seconds and peak host memory of
    the audio phase, chunked (what generation does) and, for audio short enough, in one pass for comparison."""
    import torch

    from pipelines.speech import SAMPLING_RATE, encode_speech

    device = torch.device(args.device)
    pipeline = build_pipeline("full", device, torch.float32)
    rows = []
    for seconds in args.seconds:
        waveform = torch.randn(int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
        for mode in ("chunked", "single pass") if seconds <= 120 else ("chunked",):
            before = memory_now()["VmRSS"]
            reset_peak_memory(device)
            started = time.perf_counter()
            with torch.no_grad():
                if mode == "chunked":
                    tokens = pipeline.encode_audio(waveform, int(seconds * 30), 2)
                else:
                    inputs = pipeline.audio_processor(waveform.numpy(), sampling_rate=SAMPLING_RATE, return_tensors="pt").input_values.to(device)
                    states = pipeline.audio_encoder(inputs).last_hidden_state
            row = dict(seconds_of_audio=seconds, mode=mode, seconds=round(time.perf_counter() - started, 1),
                       extra_peak_host_memory_mib=round((memory_now()["VmHWM"] - before) / 2**20))
            if mode == "chunked":
                row["tokens_shape"] = list(tokens.shape)
            else:  # checked after the measurement: the chunked encoder gives the single pass's states
                with torch.no_grad():
                    check = encode_speech(pipeline.audio_encoder, inputs, chunk_seconds=seconds / 4)
                row["chunked_vs_single_pass_relative_error"] = float((check - states).norm() / states.norm())
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return dict(report="audio", runs=rows)


def run_modes(args) -> dict:
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


def run_upsampling(args, pipeline=None) -> dict:
    """diffusers' Upsample2D against PhaseUpsample2D (on --device, whichever it is) in the VAE decoder (one frame per
    decode, as on the CPU) and in the denoising UNet (one window of --context_frames frames, both halves of guidance),
    alternating, the best of --repeats; and the relative difference between the two outputs."""
    import torch
    from diffusers.models.upsampling import Upsample2D

    from modules.checkpoints import DTYPES
    from modules.upsampling import PhaseUpsample2D, use_phase_upsampling
    from motion.keypoints import KpsImages

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipeline = pipeline or build_pipeline(args.size, device, dtype)  # its VAE decoder has PhaseUpsample2D already
    use_phase_upsampling(pipeline.denoising_unet)
    frames, height, width = args.context_frames, args.height // 8, args.width // 8
    reference, kps, waveform = sample_inputs(args.width, args.height, frames)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        unet_inputs = (
            torch.randn(2, 4, frames, height, width, generator=generator).to(device, dtype), torch.tensor(999, device=device),
            pipeline.encode_audio(waveform, frames, 2),
            pipeline.encode_kps(KpsImages(kps, args.height, args.width), range(frames), args.width, args.height),
            pipeline.encode_reference(reference, args.width, args.height),
        )
        latents = torch.randn(frames, 4, height, width, generator=generator).to(device, dtype)
        measured = {
            "vae decoder": (pipeline.vae, lambda: torch.cat([pipeline.vae.decode(latent[None]).sample for latent in latents]), frames),
            "denoising unet": (pipeline.denoising_unet, lambda: pipeline.denoising_unet(*unet_inputs, num_unconditional=1), 1),
        }
        rows = []
        for network, (model, call, per) in measured.items():
            phase = {name: module for name, module in model.named_modules() if isinstance(module, PhaseUpsample2D)}
            plain = {}
            for name, module in phase.items():
                module.phase_devices = {device.type}  # measured here whatever the device
                plain[name] = Upsample2D(module.channels, out_channels=module.out_channels)
                plain[name].use_conv, plain[name].conv = True, module.conv
            seconds, outputs = {}, {}
            for _ in range(args.repeats):
                for variant, modules in (("Upsample2D", plain), ("PhaseUpsample2D", phase)):
                    for name, module in modules.items():
                        parent, _, child = name.rpartition(".")
                        setattr(model.get_submodule(parent), child, module)
                    synchronize()
                    started = time.perf_counter()
                    outputs[variant] = call()
                    synchronize()
                    seconds[variant] = min(seconds.get(variant, float("inf")), (time.perf_counter() - started) / per)
            expected, got = outputs["Upsample2D"].double(), outputs["PhaseUpsample2D"].double()
            rows.append(dict(
                network=network, up_samplers=len(phase), per="frame" if per > 1 else "call",
                seconds={variant: round(value, 4) for variant, value in seconds.items()},
                speedup=round(seconds["Upsample2D"] / seconds["PhaseUpsample2D"], 3),
                relative_difference=float((got - expected).norm() / expected.norm()),
            ))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return dict(report="upsampling", size=args.size, width=args.width, height=args.height, window_frames=frames, rows=rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", choices=["phases", "cli", "memory", "filter", "audio", "modes", "upsampling"], default="phases")
    parser.add_argument("--case", choices=list(CASES), help="a named case (sets size, resolution, frames, windows, steps, dtype)")
    parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--width", type=int, default=None, help="default 512 for memory and filter, 64 otherwise")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--frames", type=int, default=48, help="video length (phases, filter, modes)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60], help="audio lengths (memory, audio)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 1 for memory, 4 otherwise)")
    parser.add_argument("--context_frames", type=int, default=24)
    parser.add_argument("--context_overlap", type=int, default=4)
    parser.add_argument("--guidance_scale", type=float, default=3.5)
    parser.add_argument("--device", default=None, help="cuda when there is one, else cpu")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None)
    parser.add_argument("--scheduler", default="ddim")
    parser.add_argument("--guidance_interval", type=float, nargs=2, default=(0.0, 1.0))
    parser.add_argument("--cache_interval", type=int, default=1)
    parser.add_argument("--context_batch_size", type=int, default=1)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best counts")
    parser.add_argument("--compare_with", default=None, help="another checkout of this project (cli: measured too; memory: measured instead)")
    parser.add_argument("--ckpts_dir", default=None, help="cli: keep the random checkpoint files here and reuse them")
    parser.add_argument("--extra_flags", nargs=argparse.REMAINDER, default=[], help="cli: more inference.py flags for this checkout's runs")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    case, _ = parser.parse_known_args(argv)
    parser.set_defaults(**CASES.get(case.case, {}))  # a case's settings, under the flags given with it
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    large = args.report in ("memory", "filter")
    args.width, args.height = args.width or (512 if large else 64), args.height or (512 if large else 64)
    args.steps = args.steps or {"memory": 1}.get(args.report, 4)
    args.dtype = args.dtype or ("fp32" if args.device == "cpu" else "fp16")
    reports = dict(phases=run_phases, cli=run_cli, memory=run_memory, filter=run_filter, audio=run_audio, modes=run_modes,
                   upsampling=run_upsampling)
    report = reports[args.report](args)
    report["settings"] = {k: v for k, v in vars(args).items() if k not in ("out",)}
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
