"""One video from one request: what inference.py, the web UI and batch generation share. A request is the
argparse namespace of inference.py's flags; `check_request` looks at everything before a network loads, and a
`VideoGenerator` keeps the networks loaded across requests."""

import contextlib
import fcntl
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from modules.checkpoints import DTYPES, leftover_partials
from modules.errors import VExpressError, first_line

from media.audio import load_audio
from pipelines.speech import SAMPLING_RATE, receptive_field
from pipelines.context import num_frames_for_audio, video_length
from motion.keypoints import KpsImages, load_kps_sequence
from motion.retarget import RETARGET_STRATEGIES
from pipelines.loading import SCHEDULERS, ModelPaths, load_pipeline, make_scheduler
from motion.plan import HEAD_MOTIONS, KPS_FITS, MAX_HEAD_MOTION_STRENGTH, plan_keypoints
from pipelines.pipeline_v_express import MAX_CONTEXT_FRAMES, published_noise_generator
from app.resume import StateWriter, fingerprint, load_state, state_path
from media.video import BYTES_PER_OUTPUT_PIXEL, count_frames, write_video

DRIVING_STRATEGIES = ("no_retarget", "offset_retarget", "naive_retarget", "similarity_retarget")  # need driving keypoints
# The settings a preset stands for; any of them given on the command line wins.
PRESETS = {
    "published": dict(scheduler="ddim", num_inference_steps=25, guidance_interval=(0.0, 1.0), cache_interval=1),
    "balanced": dict(scheduler="ddim", num_inference_steps=12, guidance_interval=(0.2, 1.0), cache_interval=1),
    "fast": dict(scheduler="dpmpp_2m", num_inference_steps=8, guidance_interval=(0.2, 1.0), cache_interval=2),
}
# Flags that change no number of the latents beyond float rounding (which device computes them, e.g. a run started
# under `accelerate launch`, which passes --device, and finished as one plain process): a run may resume under
# different values of them.
NOT_IN_FINGERPRINT = (
    "output_path", "no_median_filter", "save_gpu_memory", "resume_interval", "device", "gpu_id", "decode_batch_frames",
)


class InputError(VExpressError):
    """A request that cannot be generated: a flag out of range, an unusable file, an output another run writes."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a generation; the message is the one line to print: what was saved, and how to go on."""


@dataclass
class CheckedInputs:
    waveform: torch.Tensor  # 16 kHz mono
    driving_kps: np.ndarray | None = None  # (N, 3, 2) from --kps_path
    duration: float = 0.0  # seconds of audio
    length: int = 0  # frames the video will have
    notes: list[str] = field(default_factory=list)


def apply_preset(args) -> None:
    """Fill the fast-mode settings the command line left unset (None) from --preset."""
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_request(args) -> CheckedInputs:
    """Every flag and input file, before anything expensive: one InputError naming the problem and the fix."""
    apply_preset(args)
    _check_settings(args)
    if Path(args.output_path).suffix.lower() != ".mp4":
        raise InputError(f"--output_path {args.output_path}: the output is an MP4 video; give a path ending in .mp4")
    check_image(Path(args.reference_image_path))
    missing = ModelPaths.from_args(args).missing()
    if missing:
        raise InputError(f"{missing[0]}; download the weights with: python scripts/download_models.py")
    audio_rate, encoder_field = _audio_encoder_input(args.audio_encoder_path)
    if args.standard_audio_sampling_rate != audio_rate:
        raise InputError(
            f"--standard_audio_sampling_rate {args.standard_audio_sampling_rate}: the audio encoder ({args.audio_encoder_path}) "
            f"takes {audio_rate} Hz audio; leave the flag at {audio_rate} (the audio is resampled to it whatever its own rate)"
        )
    waveform = load_audio(args.audio_path, audio_rate)
    inputs = CheckedInputs(waveform)
    shortest = max(encoder_field, math.ceil(audio_rate / args.fps))
    if len(waveform) < shortest:
        raise InputError(
            f"{args.audio_path}: the audio lasts {1000 * len(waveform) / audio_rate:.0f} ms; give at least {math.ceil(1000 * shortest / audio_rate)} ms "
            f"(one video frame at {args.fps:g} fps, and what the audio encoder needs for one vector)"
        )
    if not torch.isfinite(waveform).all():
        raise InputError(f"{args.audio_path}: the audio holds NaN or infinite samples; export it again")
    if float(waveform.abs().max()) < 1e-4:
        inputs.notes.append(f"warning: {args.audio_path}: the audio is silent; the mouth will barely move")
    for source in (args.reference_image_path, args.audio_path, args.kps_path, args.reference_video):
        if source and Path(source).resolve() == Path(args.output_path).resolve():
            raise InputError(f"--output_path {args.output_path} is also an input; choose another output file")
    if args.kps_path and args.reference_video:
        raise InputError("give either --kps_path or --reference_video, not both")
    if args.kps_path:
        inputs.driving_kps = load_kps_sequence(args.kps_path)
        reach = inputs.driving_kps.max(axis=(0, 1))
        if reach[0] > 1.5 * args.image_width or reach[1] > 1.5 * args.image_height:
            inputs.notes.append(f"note: {args.kps_path}: keypoints reach ({reach[0]:.0f}, {reach[1]:.0f}) in a "
                                f"{args.image_width}x{args.image_height} video; were they extracted at another size (--width/--height)?")
    elif args.reference_video and not Path(args.reference_video).is_file():
        raise InputError(f"{args.reference_video}: reference video not found")
    inputs.duration = len(waveform) / audio_rate
    inputs.length = video_length(num_frames_for_audio(inputs.duration, args.fps), args.context_frames, args.context_overlap)
    pixels = inputs.length * args.image_width * args.image_height
    latent_bytes = pixels // 64 * 4 * 4  # the resume state: float32 latents
    check_output_location(Path(args.output_path), int(pixels * BYTES_PER_OUTPUT_PIXEL) + latent_bytes + Path(args.audio_path).stat().st_size)
    return inputs


# Every numeric flag's range where the model works: the one place each limit lives (the pipeline's and the head
# motion's own limits are theirs; the web UI's sliders take theirs from here).
SETTING_RANGES = {
    "num_inference_steps": (1, 1000), "guidance_scale": (0.0, 30.0), "reference_attention_weight": (0.0, 10.0),
    "audio_attention_weight": (0.0, 10.0), "expression_strength": (0.0, 10.0), "fps": (1.0, 120.0),
    "image_width": (64, 4096), "image_height": (64, 4096), "context_frames": (1, MAX_CONTEXT_FRAMES), "num_pad_audio_frames": (0, 2),
    "seed": (0, 2**63 - 1), "gpu_id": (0, 1023), "cache_interval": (1, 1000), "context_batch_size": (1, 64),
    "head_motion_strength": (0.0, MAX_HEAD_MOTION_STRENGTH), "resume_interval": (0.0, 1e9),
}


def _check_settings(args) -> None:
    """Each named choice known; each numeric flag finite and in SETTING_RANGES (NaN is in no range)."""
    for name, (low, high) in SETTING_RANGES.items():
        value = getattr(args, name)
        if not low <= value <= high:
            raise InputError(f"--{name} {value}: must be between {low} and {high}")
    for name in ("image_width", "image_height"):
        if getattr(args, name) % 8:
            raise InputError(f"--{name} {getattr(args, name)}: must be a multiple of 8 (the VAE's scale)")
    if not 0 <= args.context_overlap < args.context_frames:
        raise InputError(f"--context_overlap {args.context_overlap}: must be at least 0 and smaller than --context_frames ({args.context_frames})")
    start, end = args.guidance_interval
    if not 0 <= start < end <= 1:
        raise InputError(f"--guidance_interval {start} {end}: needs 0 <= START < END <= 1 (fractions of the denoising steps)")
    for name, known in (("retarget_strategy", RETARGET_STRATEGIES), ("kps_fit", KPS_FITS), ("head_motion", HEAD_MOTIONS), ("scheduler", SCHEDULERS)):
        if getattr(args, name) not in known:
            raise InputError(f"--{name} {getattr(args, name)!r} is unknown; choose one of {', '.join(known)}")


def check_image(path: Path) -> None:
    """The reference image exists and opens; else an InputError saying why."""
    from PIL import Image, UnidentifiedImageError

    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the reference image file")
    if not path.is_file():
        raise InputError(f"{path}: reference image not found")
    try:
        with Image.open(path) as image:
            image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise InputError(f"{path}: cannot open the reference image ({first_line(error, path, 160)}); use a JPG, PNG, BMP or WebP photo") from None


def _audio_encoder_input(folder) -> tuple[int, int]:
    """(sampling rate, samples one output vector sees) of the audio encoder, from its config files."""
    import json

    from transformers import Wav2Vec2FeatureExtractor

    try:
        rate = Wav2Vec2FeatureExtractor.from_pretrained(folder).sampling_rate
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{folder}: cannot read the audio encoder's config ({first_line(error, limit=160)}); download it with: "
                         "python scripts/download_models.py --include wav2vec2-base-960h") from None
    return rate, receptive_field(config.get("conv_kernel", [400]), config.get("conv_stride", [320]))


def check_output_location(path: Path, needed_bytes: int) -> None:
    """The output's folder exists (or can be made), takes a file, and has room for `needed_bytes`."""
    folder = path.parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{existing}: is a file, not a folder; choose another --output_path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise InputError(f"{folder}: cannot write the output there ({error.strerror or error}); choose another --output_path") from None
    if path.is_dir():
        raise InputError(f"--output_path {path}: is a folder; give a file name ending in .mp4")
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise InputError(
            f"{folder}: {free / 2**20:.0f} MiB free, but this video needs about {needed_bytes / 2**20:.0f} MiB; "
            "free some space or choose another --output_path"
        )


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Held while a run writes `output`, so that two never write one file: an flock on `.NAME.lock` beside it (let go
    by the system when the process ends, however it ends), which holds the pid for the message a second run gets."""
    lock = output.with_name(f".{output.name}.lock")
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).split() or [b"unknown"]
            os.close(descriptor)
            raise InputError(f"{output} is being written by another run (pid {holder[0].decode()}); wait for it or choose another --output_path") from None
        try:
            if os.path.samestat(os.fstat(descriptor), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)  # the file its last holder removed as it finished: lock the one there now
    try:
        os.ftruncate(descriptor, 0)
        with contextlib.suppress(OSError):  # the disk full: the lock holds all the same
            os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)  # while held: a run that opened it meanwhile sees it gone and tries again
        os.close(descriptor)


def plan_video_keypoints(args, driving_kps, waveform, num_frames: int, fps: float, face_detector, say) -> tuple[torch.Tensor, str]:
    """(the keypoints (num_frames, 3, 2) a request's video is drawn from, the strategy used), as `args` (inference.py's
    flags) asks: a strategy that needs a driver falls back to fix_face without one; the portrait's keypoints, and a
    --reference_video's, come from `face_detector()` (called only when needed); `waveform` drives the head motion."""
    strategy, reference_video = args.retarget_strategy, getattr(args, "reference_video", None)
    if strategy in DRIVING_STRATEGIES and driving_kps is None and not reference_video:
        say(f"note: --retarget_strategy {strategy} needs driving keypoints (--kps_path or --reference_video); using fix_face")
        strategy = "fix_face"
    reference_kps = None
    if strategy != "no_retarget" or reference_video:
        detector = face_detector()
        if strategy != "no_retarget":
            reference_kps, num_faces = detector.reference_kps(args.reference_image_path, args.image_width, args.image_height)
            if num_faces > 1:
                say(f"note: {num_faces} faces in {args.reference_image_path}; using the largest")
        if reference_video:
            from media.kps_extraction import extract_kps_sequence

            driving_kps = extract_kps_sequence(reference_video, detector, args.image_width, args.image_height, report=say).kps
    kps = plan_keypoints(
        reference_kps, driving_kps, num_frames, strategy=strategy, kps_fit=args.kps_fit, head_motion=args.head_motion,
        head_motion_strength=args.head_motion_strength, waveform=waveform, sampling_rate=getattr(args, "standard_audio_sampling_rate", SAMPLING_RATE),
        fps=fps, seed=args.seed,
    )
    return kps, strategy


def pick_device(args):
    """(device, accelerate PartialState or None)."""
    if args.do_multi_devices_inference:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.accelerator.is_available())  # on CPUs too, each torchrun process sees the others
        return state.device, state
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available; use --device cpu")
        if args.gpu_id >= torch.cuda.device_count():
            raise InputError(f"--gpu_id {args.gpu_id}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        name = f"cuda:{args.gpu_id}"
    elif name not in ("cpu", "mps"):
        raise InputError(f"--device {name}: choose auto, cuda, mps or cpu")
    return torch.device(name), None


def pick_dtype(args, device, report=print):
    if args.dtype is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    if device.type == "cpu" and args.dtype == "fp16":
        report("note: fp16 is not supported on the CPU; using fp32")
        return torch.float32
    return DTYPES[args.dtype]


@dataclass
class GenerationReport:
    output_path: Path
    frames_written: int
    fps: float
    duration: float
    size: tuple[int, int]
    strategy: str
    device: torch.device
    dtype: torch.dtype
    timings: dict
    resumed_at_step: int | None
    total_seconds: float

    def summary(self) -> list[str]:
        seconds = sum(v for k, v in self.timings.items() if k in ("reference", "audio", "denoising", "decoding and writing"))
        phases = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items() if k != "unet_calls")
        lines = [
            f"wrote {self.output_path}: {self.frames_written} frames (counted in the file) at {self.fps:.3f} fps ({self.duration:.2f} s), "
            f"{self.size[0]}x{self.size[1]}, strategy {self.strategy}, {self.device} {str(self.dtype).removeprefix('torch.')}",
            f"seconds per phase: {phases}" + (f"; {self.timings['unet_calls']} UNet calls" if "unet_calls" in self.timings else ""),
            f"generation: {self.frames_written / max(seconds, 1e-9):.2f} frames/s; total {self.total_seconds:.1f} s; peak memory {peak_memory(self.device)}",
        ]
        if self.resumed_at_step is not None:
            lines.insert(1, f"resumed after denoising step {self.resumed_at_step}")
        return lines


def peak_memory(device) -> str:
    host = f"host {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB on {device}, {host}"
    return host


class VideoGenerator:
    """The networks, loaded once, and `generate(request)` for each video. The weight paths, device, dtype,
    --test_stage and --compile are fixed at loading; every other flag may change from request to request."""

    LOAD_TIME_FLAGS = ("device", "dtype", "test_stage", "compile", "do_multi_devices_inference",
                       *(f.name for f in fields(ModelPaths)))

    def __init__(self, args, report=None):
        self.report = report or (lambda message: print(message, file=sys.stderr))
        self.args = args
        self.loaded_with = {name: getattr(args, name) for name in self.LOAD_TIME_FLAGS}
        self.device, self.distributed_state = pick_device(args)
        self.dtype = pick_dtype(args, self.device, self.report)
        self.is_main = self.distributed_state is None or self.distributed_state.is_main_process
        self._pipeline = self._face_detector = None

    @property
    def pipeline(self):
        """The networks, loaded on first use (so that a request's keypoints are checked before they load)."""
        if self._pipeline is None:
            self._pipeline = load_pipeline(ModelPaths.from_args(self.args), self.device, self.dtype)
            if self.args.test_stage == "stage_1":
                self._pipeline.denoising_unet.zero_audio_and_motion_outputs()  # the network as stage 1 trained it
            if self.args.compile:
                self._pipeline.denoising_unet = torch.compile(self._pipeline.denoising_unet, dynamic=False)
                self._pipeline.vae.decoder = torch.compile(self._pipeline.vae.decoder, dynamic=False)
            self._pipeline.set_progress_bar_config(disable=not self.is_main, leave=False)
        return self._pipeline

    def face_detector(self, args):
        from media.face import FaceDetector

        size = (args.image_width, args.image_height)
        if self._face_detector is None or self._face_detector[0] != size:
            self._face_detector = (size, FaceDetector(args.insightface_model_path, image_size=size, device=self.device.type, gpu_id=args.gpu_id))
        return self._face_detector[1]

    def generate(self, args, inputs: CheckedInputs | None = None) -> GenerationReport | None:
        """One video as `args` asks (inference.py's flags). Returns the report on the main process, None on others.
        The main process holds the output's lock from start to end (InputError when another run holds it). A run
        stopped while denoising or writing, by Ctrl-C (Interrupted) or an error, first saves where it got to."""
        started = time.perf_counter()
        changed = [name for name, value in self.loaded_with.items() if getattr(args, name) != value]
        if changed:
            raise InputError(f"--{changed[0]} differs from the value the networks were loaded with; it cannot change per video")
        inputs = inputs or check_request(args)
        if not self.is_main:  # the other processes of a --do_multi_devices_inference run work for the main one, which writes
            return self._generate(args, inputs, started)
        output = Path(args.output_path)
        with output_lock(output):
            for leftover in (*leftover_partials(output), *leftover_partials(state_path(output))):
                leftover.unlink(missing_ok=True)  # of a run killed while writing: with the lock held, no other run writes these
            return self._generate(args, inputs, started)

    def _generate(self, args, inputs: CheckedInputs, started: float) -> GenerationReport | None:
        from PIL import Image

        say = self.report if self.is_main else (lambda message: None)
        for note in inputs.notes:
            say(note)
        width, height, output = args.image_width, args.image_height, Path(args.output_path)
        duration, length = inputs.duration, inputs.length

        # 1. The keypoints: the portrait's and the driver's, fitted, retargeted and animated.
        timings = {}
        clock = time.perf_counter()
        kps_sequence, strategy = plan_video_keypoints(
            args, inputs.driving_kps, inputs.waveform, length, length / duration, lambda: self.face_detector(args), say,
        )
        timings["face keypoints"] = time.perf_counter() - clock

        # 2. Where an interrupted run with these very inputs and settings stopped.
        settings = {name: value for name, value in sorted(vars(args).items()) if name not in NOT_IN_FINGERPRINT}
        settings.update(strategy=strategy, weights=[(p, Path(p).stat().st_size) for p in vars(ModelPaths.from_args(args)).values() if Path(p).is_file()])
        run_fingerprint = fingerprint(
            {"reference_image": args.reference_image_path, "audio": args.audio_path, "kps": args.kps_path, "video": args.reference_video},
            settings,
        )
        resume_from = load_state(state_path(output), run_fingerprint, report=say)
        resume = StateWriter(state_path(output), run_fingerprint, args.resume_interval, resumed_from=resume_from)
        if resume_from is not None:
            say(f"resuming from {resume.path}: denoising step {resume_from.step} of {args.num_inference_steps} done")

        # 3 and 4: a run stopped on the way (Ctrl-C, the disk full) first saves the last step it can go on from.
        try:
            # 3. Denoise to latents.
            clock = time.perf_counter()
            pipeline = self.pipeline
            timings["loading"] = time.perf_counter() - clock
            pipeline.to(self.device)  # a previous request with --save_gpu_memory may have offloaded networks
            pipeline.scheduler = make_scheduler(args.scheduler)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            denoised = pipeline(
                reference_image=Image.open(args.reference_image_path).convert("RGB"), kps_images=KpsImages(kps_sequence, height, width),
                audio_waveform=inputs.waveform, width=width, height=height, video_length=length,
                num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
                generator=published_noise_generator(args.seed, pipeline.audio_encoder), output_type="latent",
                context_frames=args.context_frames, context_overlap=args.context_overlap,
                reference_attention_weight=args.reference_attention_weight,
                audio_attention_weight=args.audio_attention_weight * args.expression_strength, num_pad_audio_frames=args.num_pad_audio_frames,
                do_multi_devices_inference=args.do_multi_devices_inference, save_gpu_memory=args.save_gpu_memory,
                guidance_interval=tuple(args.guidance_interval), cache_interval=args.cache_interval,
                context_batch_size=args.context_batch_size, resume_from=resume_from,
                callback_on_step_end=resume if self.is_main else None, return_output=True,
            )
            latents = denoised.frames
            timings.update(denoised.timings, unet_calls=denoised.unet_calls)
            if not self.is_main:
                return None

            # 4. Decode, filter and encode, a batch of frames at a time.
            clock = time.perf_counter()
            frames = pipeline.stream_frames(latents, 1 if args.save_gpu_memory else args.decode_batch_frames, flicker_filter=not args.no_median_filter)
            write_video(output, frames, length / duration, args.audio_path, num_frames=length)
            timings["decoding and writing"] = time.perf_counter() - clock
        except KeyboardInterrupt:
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the save short
            try:
                step = resume.save_latest()
            finally:
                signal.signal(signal.SIGINT, handler)
            raise Interrupted(f"interrupted at step {step} of {args.num_inference_steps}; run the same command again to continue"
                              if step is not None else "interrupted; nothing was written") from None
        except Exception:  # the disk full, the device out of memory while decoding: the run that follows goes on from here
            resume.save_latest()
            raise
        resume.remove()
        return GenerationReport(
            output, count_frames(output), length / duration, duration, (width, height), strategy, self.device, self.dtype, timings,
            resume_from.step if resume_from else None, time.perf_counter() - started,
        )
