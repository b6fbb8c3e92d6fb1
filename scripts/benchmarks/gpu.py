"""The GPU report: every speed, memory and precision figure of generation on one CUDA device, in one JSON.

    python scripts/benchmark_gpu.py --out docs/benchmarks/gpu.json          # full-size networks, about 7 minutes on an H200
    python scripts/benchmark_gpu.py --size tiny --device cpu --width 64 --height 64 --e2e_seconds 2 --memory_seconds 1 2 --audio_seconds 2

Networks have random weights, built in memory (the architecture, not the weights, sets the cost). Sections run
cheapest first; each is written to --out as soon as it is measured, so a run stopped by --budget_seconds (or
killed) still leaves every figure measured so far. A section that fails records its error and the rest go on.

Sections: environment; UNet seconds per window call in fp16 and bf16 under each lever (eager, cudnn.benchmark,
channels_last, each SDPA backend, context batch sizes) and the FLOPs of one call; the best levers combined; where one
call's GPU time goes (CUDA only); fp16/bf16 against fp32 (and TF32 against strict fp32) on a short video; VAE
decode per batch size with and without the regrouped up-samplers; the flicker filter; wav2vec2 on --audio_seconds;
the presets; one end-to-end generation of --e2e_seconds at 25 steps; peak memory for each of --memory_seconds with
and without --save_gpu_memory; torch.compile (default, reduce-overhead = CUDA graphs, max-autotune) while the budget lasts; derived figures.
"""

import argparse
import contextlib
import copy
import json
import sys
import time
import traceback
from pathlib import Path

from modules.errors import first_line
from pipelines.cuda_levers import CUDA_DEFAULTS, SDPA_BACKENDS, unet_levers as levers
from scripts.benchmarks.common import build_pipeline, inference_defaults, sample_inputs

# Dense fp16/bf16 tensor-core peak (TFLOP/s) from the vendors' data sheets, for the fraction of peak reached.
PEAK_TFLOPS = {"H200": 989.4, "H100 SXM": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "V100": 125.0}
PUBLISHED_EXAMPLE = dict(seconds=31.0, v100_seconds=2617.4, v100_peak_mib=7956)  # the published README's long example


class Report:
    """The JSON being written: sections added as they finish, the file rewritten atomically each time."""

    def __init__(self, out: Path | None, budget_seconds: float, only: list | None = None):
        self.data, self.out, self.only = {}, out, only
        self.started, self.budget = time.perf_counter(), budget_seconds

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def save(self) -> None:
        self.data["elapsed_seconds"] = round(time.perf_counter() - self.started, 1)
        if self.out is not None:
            from modules.checkpoints import atomic_path

            with atomic_path(self.out) as partial:
                partial.write_text(json.dumps(self.data, indent=1, default=str) + "\n")

    @contextlib.contextmanager
    def section(self, name: str, needs_seconds: float = 0.0):
        """Runs the block unless less than `needs_seconds` of the budget is left (or --sections leaves it out); an
        error is recorded, not raised."""
        if self.only and name not in ("environment", "build") and not any(name.startswith(wanted) for wanted in self.only):
            yield None
            return
        if self.left() < needs_seconds:
            self.data[name] = {"skipped": f"time budget: {self.left():.0f} s left, about {needs_seconds:.0f} s needed"}
            self.save()
            yield None
            return
        entry = self.data.setdefault(name, {})
        clock = time.perf_counter()
        try:
            yield entry
        except Exception as error:  # a lever a device or version lacks must not cost the other figures
            entry["error"] = f"{type(error).__name__}: {str(error).strip()[:400]}"
            print(traceback.format_exc(), file=sys.stderr)
        entry["section_seconds"] = round(time.perf_counter() - clock, 1)
        print(f"[{time.perf_counter() - self.started:6.0f} s] {name}: {json.dumps(entry, default=str)[:600]}", file=sys.stderr, flush=True)
        self.save()


def timed(call, repeats: int, synchronize, warmup: int = 1) -> tuple[float, object]:
    """(the best seconds of `repeats` calls after `warmup` calls, the last result)."""
    result = None
    for _ in range(warmup):
        result = call()
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


def relative_error(value, reference) -> float:
    value, reference = value.double(), reference.double()
    return float((value - reference).norm() / reference.norm())


class WindowCall:
    """One denoising UNet call on `batch` context windows with guidance (2 x batch rows), on fixed inputs."""

    def __init__(self, pipeline, inputs, frames: int, width: int, height: int, batch: int = 1):
        import torch

        from motion.keypoints import KpsImages

        reference, kps, waveform = inputs
        device, dtype = pipeline.device, pipeline.denoising_unet.dtype
        self.unet = pipeline.denoising_unet
        self.reference_kv = pipeline.encode_reference(reference, width, height)
        audio = pipeline.encode_audio(waveform, frames, 2)
        kps_features = pipeline.encode_kps(KpsImages(kps, height, width), range(frames), width, height)
        noise = torch.randn(2, 4, frames, height // 8, width // 8, generator=torch.Generator().manual_seed(0))
        self.latents = torch.cat([noise] * batch).to(device, dtype)
        self.audio, self.kps_features = torch.cat([audio] * batch), torch.cat([kps_features] * batch)
        self.timestep, self.batch = torch.tensor(999, device=device), batch

    def __call__(self, unet=None):
        return (self.unet if unet is None else unet)(self.latents, self.timestep, self.audio, self.kps_features, self.reference_kv, num_unconditional=self.batch)


def measure_unet(report: Report, pipelines: dict, inputs, args, synchronize) -> dict:
    """Seconds per window call per dtype and lever; returns {dtype: {lever: seconds per window}}."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    figures = {}
    for dtype_name, pipeline in pipelines.items():
        with report.section(f"unet_{dtype_name}", needs_seconds=20) as entry:
            if entry is None:
                continue
            with torch.no_grad():
                call = WindowCall(pipeline, inputs, args.context_frames, args.width, args.height)
                if dtype_name == "fp16":
                    with FlopCounterMode(display=False) as counter:
                        call()
                    entry["tflop_per_window_call"] = float(f"{counter.get_total_flops() / 1e12:.4g}")
                seconds = entry.setdefault("seconds_per_window", {})
                runs = {"eager": {}, "cudnn.benchmark": dict(cudnn_benchmark=True), "channels_last": dict(channels_last=True)}
                runs.update({f"sdpa {backend.lower()}": dict(sdpa_backend=backend) for backend in SDPA_BACKENDS})
                for name, settings in runs.items():
                    try:
                        with levers(pipeline.denoising_unet, **settings):
                            best, prediction = timed(call, args.repeats, synchronize, warmup=2 if settings.get("cudnn_benchmark") else 1)
                        seconds[name] = round(best, 4)
                        if not bool(torch.isfinite(prediction).all()):
                            entry.setdefault("nan_or_inf", []).append(name)
                    except Exception as error:  # e.g. a backend that cannot take one of the attention shapes
                        seconds[name] = f"{type(error).__name__}: {first_line(error)}"
                del call
                for batch in args.context_batch_sizes:
                    if batch == 1:
                        continue
                    try:
                        batched = WindowCall(pipeline, inputs, args.context_frames, args.width, args.height, batch)
                        best, _ = timed(batched, args.repeats, synchronize)
                        seconds[f"context_batch_size {batch}"] = round(best / batch, 4)
                        del batched
                    except torch.OutOfMemoryError as error:
                        seconds[f"context_batch_size {batch}"] = f"OutOfMemoryError: {str(error)[:120]}"
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            figures[dtype_name] = {k: v for k, v in seconds.items() if isinstance(v, float)}
    return figures


KERNEL_KINDS = (  # a CUDA kernel's name -> what it computes, first match wins
    ("attention", ("flash", "fmha", "attention", "softmax", "sdpa")),
    ("convolution", ("conv", "implicit_gemm", "winograd", "dgrad", "wgrad", "fprop", "nchw", "nhwc")),
    ("matmul", ("gemm", "cutlass", "sm90", "sm80", "matmul", "nvjet")),
    ("normalization", ("norm", "welford", "reduce")),
)


def measure_profile(entry: dict, pipeline, inputs, args) -> None:
    """Where one eager window call's GPU time goes: per kind of kernel, and the ten costliest kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    call = WindowCall(pipeline, inputs, args.context_frames, args.width, args.height)
    with torch.no_grad():
        call()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            call()
            torch.cuda.synchronize()
    kernels = [e for e in profiler.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total = sum(e.time_range.elapsed_us() for e in kernels) or 1.0
    kinds, by_name = {}, {}
    for event in kernels:
        name = event.name.lower()
        kind = next((k for k, words in KERNEL_KINDS if any(w in name for w in words)), "elementwise and other")
        microseconds = event.time_range.elapsed_us()
        kinds[kind] = kinds.get(kind, 0.0) + microseconds
        by_name[event.name] = by_name.get(event.name, 0.0) + microseconds
    entry["gpu_milliseconds"] = round(total / 1000, 1)
    entry["fraction_by_kind"] = {k: round(v / total, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    entry["costliest_kernels"] = {name[:120]: round(v / total, 3) for name, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:10]}


def best_levers(seconds: dict) -> dict:
    """Each lever on its own against eager: the set of those that paid (by more than 2 %), for `levers`."""
    eager, chosen = seconds["eager"], {}
    if seconds.get("cudnn.benchmark", eager) < 0.98 * eager:
        chosen["cudnn_benchmark"] = True
    if seconds.get("channels_last", eager) < 0.98 * eager:
        chosen["channels_last"] = True
    backends = {b: seconds[f"sdpa {b.lower()}"] for b in SDPA_BACKENDS if f"sdpa {b.lower()}" in seconds}
    if backends and min(backends.values()) < 0.98 * eager:
        chosen["sdpa_backend"] = min(backends, key=backends.get)
    batches = {int(k.split()[-1]): v for k, v in seconds.items() if k.startswith("context_batch_size")}
    batch = min(batches, key=batches.get) if batches and min(batches.values()) < 0.98 * eager else 1
    return dict(levers=chosen, context_batch_size=batch)


def generate(pipeline, inputs, frames, args, steps, **kwargs):
    """`frames` frames through the pipeline: the video (1, 3, L, H, W) float32, or what kwargs ask for."""
    import torch

    from motion.keypoints import KpsImages

    reference, kps, waveform = inputs
    return pipeline(
        reference_image=reference, kps_images=KpsImages(kps, args.height, args.width), audio_waveform=waveform,
        width=args.width, height=args.height, video_length=frames, num_inference_steps=steps, guidance_scale=3.5,
        generator=torch.Generator().manual_seed(0), context_frames=args.context_frames, context_overlap=args.context_overlap, **kwargs,
    )


def measure_precision(entry: dict, master, pipelines: dict, args) -> None:
    """The same short video (same weights and noise) in each dtype against fp32; TF32 convolutions against strict fp32."""
    import torch


    frames = args.context_frames
    inputs = sample_inputs(args.width, args.height, frames)
    master.cuda_levers = {}  # unet_levers' own defaults: every lever off, strict fp32 as the CPU computes it
    reference = generate(master, inputs, frames, args, args.precision_steps)
    videos = {}
    if master.device.type == "cuda":
        master.cuda_levers = dict(strict_fp32=False)  # PyTorch's own default: TF32 convolutions
        videos["fp32 with TF32 convolutions"] = generate(master, inputs, frames, args, args.precision_steps)
        master.cuda_levers = dict(CUDA_DEFAULTS)
        videos["fp32 with the CUDA defaults"] = generate(master, inputs, frames, args, args.precision_steps)
    for dtype_name, pipeline in pipelines.items():  # with the CUDA defaults
        videos[dtype_name] = generate(pipeline, inputs, frames, args, args.precision_steps)
    entry["relative_error_vs_strict_fp32"] = {name: relative_error(video, reference) for name, video in videos.items()}
    entry["nan_or_inf"] = [name for name, video in {"fp32": reference, **videos}.items() if not bool(torch.isfinite(video).all())]
    entry["frames"], entry["steps"] = frames, args.precision_steps


def measure_components(entry: dict, master, half, args, synchronize) -> None:
    """Which network a lower precision moves, and whether the attention backends agree: each network in `half`'s
    dtype on the fp32 network's own inputs (cast), against fp32; the UNet once per SDPA backend."""
    import torch


    dtype = half.denoising_unet.dtype
    cast = lambda value: value.to(dtype) if torch.is_tensor(value) else type(value)(cast(v) for v in value)  # noqa: E731
    inputs = sample_inputs(args.width, args.height, args.context_frames)
    with torch.no_grad():
        exact = WindowCall(master, inputs, args.context_frames, args.width, args.height)
        approximate = WindowCall(half, inputs, args.context_frames, args.width, args.height)
        entry["reference_kv"] = max(relative_error(approximate.reference_kv[k][0], exact.reference_kv[k][0]) for k in exact.reference_kv)
        entry["audio_tokens"] = relative_error(approximate.audio, exact.audio)
        entry["kps_features"] = relative_error(approximate.kps_features, exact.kps_features)
        approximate.latents, approximate.audio = cast(exact.latents), cast(exact.audio)
        approximate.kps_features, approximate.reference_kv = cast(exact.kps_features), {k: cast(v) for k, v in exact.reference_kv.items()}
        with levers(master.denoising_unet):
            expected = exact()
        unet = entry.setdefault("unet_call", {})
        for backend in (None, *SDPA_BACKENDS):
            try:
                with levers(half.denoising_unet, sdpa_backend=backend):
                    unet[backend or "default"] = relative_error(approximate(), expected)
            except RuntimeError as error:
                unet[backend or "default"] = first_line(error)
        latents = torch.randn(4, 4, args.height // 8, args.width // 8, generator=torch.Generator().manual_seed(0)).to(master.device)
        decoded = master.vae.decode(latents).sample
        entry["vae_decode"] = relative_error(half.vae.decode(latents.to(dtype)).sample, decoded)
        entry["vae_decode_max_abs_fp32"] = float(decoded.abs().max())


def measure_decoding(entry: dict, pipeline, args, synchronize) -> None:
    """VAE decode seconds per frame per batch size, diffusers' up-samplers against the regrouped ones."""
    import torch

    from modules.upsampling import PhaseUpsample2D

    device = pipeline.device
    frames = max(args.decode_batch_sizes)
    latents = torch.randn(frames, 4, args.height // 8, args.width // 8, generator=torch.Generator().manual_seed(0)).to(device, pipeline.vae.dtype)
    phase = [m for m in pipeline.vae.modules() if isinstance(m, PhaseUpsample2D)]
    seconds = entry.setdefault("seconds_per_frame", {})
    outputs = {}
    for variant, devices in (("Upsample2D", set()), ("PhaseUpsample2D", {device.type})):
        for module in phase:
            module.phase_devices = devices
        for batch in args.decode_batch_sizes:
            call = lambda: torch.cat([pipeline.vae.decode(latents[i:i + batch]).sample for i in range(0, frames, batch)])  # noqa: E731
            best, outputs[variant] = timed(call, args.repeats, synchronize)
            seconds[f"{variant} batch {batch}"] = round(best / frames, 5)
    for module in phase:
        module.phase_devices = {"cpu"}
    entry["phase_vs_diffusers_relative_difference"] = relative_error(outputs["PhaseUpsample2D"], outputs["Upsample2D"])
    entry["up_samplers"] = len(phase)


def measure_filter_and_audio(entry: dict, pipeline, args, synchronize) -> None:
    import torch

    from pipelines.speech import SAMPLING_RATE
    from pipelines.flicker_filter import FlickerFilter

    device = pipeline.device
    frames = 64
    video = torch.randint(0, 256, (frames, 3, args.height, args.width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)

    def run_filter():
        frame_filter = FlickerFilter(frames)
        return [frame_filter.push(video[i:i + 16]) for i in range(0, frames, 16)]

    best, _ = timed(run_filter, args.repeats, synchronize)
    entry["flicker_filter_seconds_per_frame"] = round(best / frames, 6)
    _, _, waveform = sample_inputs(64, 64, int(args.audio_seconds * 30))
    waveform = waveform[: int(args.audio_seconds * SAMPLING_RATE)]
    with torch.no_grad():
        best, tokens = timed(lambda: pipeline.encode_audio(waveform, int(args.audio_seconds * 30), 2), args.repeats, synchronize)
    entry[f"wav2vec2_and_projection_seconds_for_{args.audio_seconds:g}_s"] = round(best, 3)
    entry["audio_tokens_shape"] = list(tokens.shape)


def run_generation(pipeline, args, seconds: float, steps: int, save_gpu_memory: bool = False, **kwargs) -> dict:
    """inference.py's streamed path on `seconds` of audio: latents, then frames decoded, filtered and converted a batch
    at a time (not encoded: the device has no ffmpeg). Seconds per phase and peak accelerator memory."""
    import torch

    from pipelines.context import context_windows, num_frames_for_audio, video_length

    frames = video_length(num_frames_for_audio(seconds, 30), args.context_frames, args.context_overlap)
    inputs = sample_inputs(args.width, args.height, frames)
    device = pipeline.device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    output = generate(pipeline, inputs, frames, args, steps, output_type="latent", save_gpu_memory=save_gpu_memory, return_output=True, **kwargs)
    latents, timings, clock = output.frames, dict(output.timings, unet_calls=output.unet_calls), time.perf_counter()
    written = sum(1 for _ in pipeline.stream_frames(latents, 1 if save_gpu_memory else None))
    timings["decoding, filter and conversion"] = time.perf_counter() - clock
    row = dict(seconds_of_audio=seconds, frames=written, steps=steps, windows=len(context_windows(frames, args.context_frames, args.context_overlap)),
               unet_calls=timings.pop("unet_calls"), seconds=round(time.perf_counter() - started, 2),
               seconds_per_phase={k: round(v, 3) for k, v in timings.items()})
    if device.type == "cuda":
        row["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        row["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20)
    if save_gpu_memory:
        pipeline.to(device)  # networks were offloaded as they finished
    return row


def compile_like_inference(pipeline, args) -> float:
    """Compile the UNet as `inference.py --compile` does, and warm them up on one window (one step,
    decoded). Returns the warm-up's seconds."""
    import torch

    pipeline.denoising_unet = torch.compile(pipeline.denoising_unet, dynamic=False)
    started = time.perf_counter()
    with torch.no_grad():
        inputs = sample_inputs(args.width, args.height, args.context_frames)
        latents = generate(pipeline, inputs, args.context_frames, args, 1, output_type="latent")
        for _ in pipeline.stream_frames(latents):
            pass
    if pipeline.device.type == "cuda":
        torch.cuda.synchronize()
    return round(time.perf_counter() - started, 1)


def measure_compile(report: Report, pipeline, inputs, args, synchronize) -> None:
    import torch

    modes = {"compile default": dict(), "compile reduce-overhead (CUDA graphs)": dict(mode="reduce-overhead"),
             "compile max-autotune": dict(mode="max-autotune")}
    for name, options in modes.items():
        with report.section(name, needs_seconds=args.compile_needs_seconds) as entry:
            if entry is None:
                continue
            torch._dynamo.reset()
            with torch.no_grad():
                call = WindowCall(pipeline, inputs, args.context_frames, args.width, args.height)
                compiled = torch.compile(pipeline.denoising_unet, dynamic=False, **options)
                started = time.perf_counter()
                compiled_call = lambda: call(compiled).clone()  # noqa: E731  (CUDA graphs reuse their output buffers)
                compiled_call()
                synchronize()
                entry["warmup_seconds"] = round(time.perf_counter() - started, 1)
                best, prediction = timed(compiled_call, args.repeats, synchronize, warmup=2)
                eager_prediction = call()
            entry["seconds_per_window"] = round(best, 4)
            entry["relative_difference_vs_eager"] = relative_error(prediction, eager_prediction)
    torch._dynamo.reset()


def derive(report: Report, args) -> None:
    """GPU-seconds per second of video, the published 31 s example, and the fraction of the peak FLOP/s reached."""
    from pipelines.context import context_windows

    data = report.data
    derived = data.setdefault("derived", {})
    e2e = data.get("end_to_end", {})
    if "seconds" in e2e:
        per_video_second = e2e["seconds"] / e2e["seconds_of_audio"] * 25 / e2e["steps"]
        derived["gpu_seconds_per_video_second_end_to_end"] = round(per_video_second, 2)
        derived["published_31s_example_from_end_to_end_seconds"] = round(per_video_second * PUBLISHED_EXAMPLE["seconds"], 1)
    unet = data.get("unet_fp16", {}).get("seconds_per_window", {})
    combined = data.get("best_levers", {}).get("seconds_per_window")
    per_window = combined or unet.get("eager")
    decode = data.get("decoding", {}).get("seconds_per_frame", {})
    decode_best = min((v for v in decode.values() if isinstance(v, float)), default=None)
    if isinstance(per_window, float):
        windows = len(context_windows(int(PUBLISHED_EXAMPLE["seconds"] * 30), args.context_frames, args.context_overlap))
        estimate = windows * 25 * per_window + (decode_best or 0) * PUBLISHED_EXAMPLE["seconds"] * 30
        derived["published_31s_example_estimate_seconds"] = round(estimate, 1)
        derived["published_31s_example_speedup_vs_v100"] = round(PUBLISHED_EXAMPLE["v100_seconds"] / estimate, 1)
        derived["gpu_seconds_per_video_second_from_window_calls"] = round(estimate / PUBLISHED_EXAMPLE["seconds"], 2)
        tflop = data.get("unet_fp16", {}).get("tflop_per_window_call")
        peak = data.get("environment", {}).get("peak_dense_fp16_tflops")
        if tflop and peak:
            derived["unet_tflops_reached"] = round(tflop / per_window, 1)
            derived["fraction_of_peak_flops"] = round(tflop / per_window / peak, 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "full"], default="full")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    defaults = inference_defaults()  # the flags shared with inference.py default as there
    parser.add_argument("--context_frames", type=int, default=defaults.context_frames)
    parser.add_argument("--context_overlap", type=int, default=defaults.context_overlap)
    parser.add_argument("--context_batch_sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--decode_batch_sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--precision_steps", type=int, default=4, help="steps of the short fp16/bf16-against-fp32 video")
    parser.add_argument("--audio_seconds", type=float, default=31.0, help="wav2vec2's audio (the published long example's length)")
    parser.add_argument("--e2e_seconds", type=float, default=10.0)
    parser.add_argument("--e2e_steps", type=int, default=25)
    parser.add_argument("--e2e_compile", action="store_true", help="the end-to-end run as inference.py --compile runs it (after a one-window warm-up)")
    parser.add_argument("--e2e_seconds_per_window", type=float, default=None,
                        help="the UNet's seconds per window that sizes the end-to-end run to the budget when its section was not measured")
    parser.add_argument("--memory_seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget_seconds", type=float, default=420.0, help="sections that would not fit are skipped")
    parser.add_argument("--compile_needs_seconds", type=float, default=150.0, help="budget a compiled mode needs to start")
    parser.add_argument("--dtypes", nargs="+", choices=["fp16", "bf16"], default=["fp16", "bf16"])
    parser.add_argument("--sections", nargs="+", default=None, help="only these sections (name prefixes; environment and build always)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import diffusers
    import torch
    import transformers

    from modules.checkpoints import DTYPES

    device = torch.device(args.device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    report = Report(args.out, args.budget_seconds, args.sections)
    with report.section("environment") as entry:
        entry.update(date=time.strftime("%Y-%m-%d"), torch=torch.__version__, diffusers=diffusers.__version__,
                     transformers=transformers.__version__, size=args.size, width=args.width, height=args.height,
                     context_frames=args.context_frames, context_overlap=args.context_overlap, device=str(device))
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            entry.update(gpu=name, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                         memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
                         peak_dense_fp16_tflops=next((v for k, v in PEAK_TFLOPS.items() if k in name), None))

    with report.section("build") as entry:
        started = time.perf_counter()
        master = build_pipeline(args.size, torch.device("cpu"), torch.float32).to(device)  # drawn once; each dtype a copy
        pipelines = {name: copy.deepcopy(master).to(device, DTYPES[name]) for name in args.dtypes}
        for pipeline in (master, *pipelines.values()):
            pipeline.set_progress_bar_config(disable=True)
        entry["seconds"] = round(time.perf_counter() - started, 1)

    window_inputs = sample_inputs(args.width, args.height, args.context_frames)
    figures = measure_unet(report, pipelines, window_inputs, args, synchronize)

    choice = None
    with report.section("best_levers", needs_seconds=10) as entry:
        if entry is not None and "fp16" in figures:
            choice = best_levers(figures["fp16"])
            call = WindowCall(pipelines["fp16"], window_inputs, args.context_frames, args.width, args.height, choice["context_batch_size"])
            try:
                with torch.no_grad(), levers(pipelines["fp16"].denoising_unet, **choice["levers"]):
                    best, _ = timed(call, args.repeats, synchronize, warmup=2)
            except RuntimeError as error:  # an attention backend that took each window's shapes alone but not batched
                entry["dropped"] = dict(sdpa_backend=choice["levers"].pop("sdpa_backend", None), error=str(error)[:200])
                with torch.no_grad(), levers(pipelines["fp16"].denoising_unet, **choice["levers"]):
                    best, _ = timed(call, args.repeats, synchronize, warmup=2)
            entry.update(choice)
            entry["seconds_per_window"] = round(best / choice["context_batch_size"], 4)
            entry["speedup_vs_eager"] = round(figures["fp16"]["eager"] / entry["seconds_per_window"], 3)
            del call

    if device.type == "cuda" and "fp16" in pipelines:  # CUDA kernels are leaves; a CPU profile's operators nest
        with report.section("profile", needs_seconds=15) as entry:
            if entry is not None:
                measure_profile(entry, pipelines["fp16"], window_inputs, args)

    with report.section("precision", needs_seconds=20) as entry:
        if entry is not None:
            measure_precision(entry, master, pipelines, args)
    for dtype_name, half in pipelines.items():
        with report.section(f"precision_by_network_{dtype_name}", needs_seconds=20) as entry:
            if entry is not None:
                measure_components(entry, master, half, args, synchronize)
    del master
    pipelines = {"fp16": pipelines["fp16"]}
    pipeline = pipelines["fp16"]
    if device.type == "cuda":
        torch.cuda.empty_cache()

    with report.section("decoding", needs_seconds=10) as entry:
        if entry is not None:
            with torch.no_grad():
                measure_decoding(entry, pipeline, args, synchronize)
    with report.section("filter_and_audio", needs_seconds=10) as entry:
        if entry is not None:
            measure_filter_and_audio(entry, pipeline, args, synchronize)

    from app.requests import PRESETS
    from pipelines.loading import make_scheduler

    with report.section("presets", needs_seconds=30) as entry:
        if entry is not None:
            frames = args.context_frames * 2 - args.context_overlap  # two windows
            inputs = sample_inputs(args.width, args.height, frames)
            for name, preset in PRESETS.items():
                preset = dict(preset)
                pipeline.scheduler = make_scheduler(preset.pop("scheduler"))
                output = generate(pipeline, inputs, frames, args, preset.pop("num_inference_steps"), output_type="latent", return_output=True, **preset)
                entry[name] = dict(denoising_seconds=round(output.timings["denoising"], 3), unet_calls=output.unet_calls)
            for name in PRESETS:
                entry[name]["speedup"] = round(entry["published"]["denoising_seconds"] / entry[name]["denoising_seconds"], 2)
            pipeline.scheduler = make_scheduler("ddim")

    settings = (choice or {}).get("levers", {})
    batch = (choice or {}).get("context_batch_size", 1)
    with report.section("end_to_end", needs_seconds=30) as entry:
        if entry is not None:
            per_window = (report.data.get("best_levers", {}).get("seconds_per_window") or figures.get("fp16", {}).get("eager")
                          or args.e2e_seconds_per_window or 1.0)
            from pipelines.context import context_windows, num_frames_for_audio, video_length

            pipeline.cuda_levers = settings  # the levers that paid (the others off), as the pipeline applies them
            if args.e2e_compile:
                entry["compile_warmup_seconds"] = compile_like_inference(pipeline, args)

            frames = video_length(num_frames_for_audio(args.e2e_seconds, 30), args.context_frames, args.context_overlap)
            windows = len(context_windows(frames, args.context_frames, args.context_overlap))
            memory_reserve = 0.25 * report.left()  # for the memory section after this one
            steps = args.e2e_steps
            while steps > 1 and windows * steps * per_window * 1.3 > report.left() - memory_reserve:
                steps -= 1  # fewer steps when 25 would not fit: said in the row (steps)
            entry.update(run_generation(pipeline, args, args.e2e_seconds, steps, context_batch_size=batch))
            entry["levers"], entry["context_batch_size"] = settings, batch

    with report.section("memory", needs_seconds=20) as entry:
        if entry is not None:
            rows = entry.setdefault("runs", [])
            for save_gpu_memory in (False, True):
                for seconds in args.memory_seconds:
                    if report.left() < 15:
                        rows.append(dict(seconds_of_audio=seconds, save_gpu_memory=save_gpu_memory, skipped="time budget"))
                        continue
                    try:
                        row = run_generation(pipeline, args, seconds, 1, save_gpu_memory, context_batch_size=1 if save_gpu_memory else batch)
                    except RuntimeError as error:
                        row = dict(seconds_of_audio=seconds, error=f"{type(error).__name__}: {str(error)[:300]}")
                        pipeline.to(device)
                    rows.append(dict(save_gpu_memory=save_gpu_memory, **row))
                    report.save()
            for save_gpu_memory in (False, True):
                peaks = [r["peak_allocated_mib"] for r in rows if r.get("save_gpu_memory") == save_gpu_memory and "peak_allocated_mib" in r]
                if len(peaks) > 1:
                    entry[f"peak_ratio_longest_to_shortest{' save_gpu_memory' if save_gpu_memory else ''}"] = round(peaks[-1] / peaks[0], 3)

    derive(report, args)  # before the compiled modes, whose warm-ups may outlast the budget
    report.save()
    if device.type == "cuda":
        measure_compile(report, pipeline, window_inputs, args, synchronize)
    derive(report, args)
    report.save()
    print(json.dumps(report.data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
