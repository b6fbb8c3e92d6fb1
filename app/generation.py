"""One video from one request: what inference.py, the web UI and batch generation share. A request is an
app.requests.GenerationRequest (its settings already checked); `check_request` looks at its files before a network
loads, and a `VideoGenerator` keeps the networks loaded across requests."""

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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from modules.checkpoints import DTYPES, leftover_partials
from modules.errors import first_line

from media.audio import load_audio, resample
from media.voice_activity import VAD_RATE, mouth_rest_weights
from pipelines.speech import SAMPLING_RATE, receptive_field
from pipelines.context import num_frames_for_audio, video_length
from motion.keypoints import KpsImages, hand_placed_kps, load_kps_sequence
from pipelines.loading import load_pipeline, make_scheduler
from motion.plan import plan_keypoints
from pipelines.pipeline_v_express import REST_MECHANISM, published_noise_generator
from app.requests import GenerationRequest, InputError
from app.resume import StateWriter, fingerprint, load_state, state_path
from media.face import FaceError, chosen_face, photo_advice, portrait_check_tasks
from media.paste_back import PasteBack, canvas_size, detection_size, face_box_from_kps
from media.provenance import check_credentials, mark
from media.video import BYTES_PER_OUTPUT_PIXEL, count_frames, write_video

DRIVING_STRATEGIES = ("no_retarget", "offset_retarget", "naive_retarget", "similarity_retarget")  # need driving keypoints


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a generation; the message is the one line to print: what was saved, and how to go on."""


@dataclass
class CheckedInputs:
    waveform: torch.Tensor  # 16 kHz mono
    driving_kps: np.ndarray | None = None  # (N, 3, 2) from --kps_path
    hand_kps: np.ndarray | None = None  # (3, 2) in the portrait's own pixels, from --reference_kps
    duration: float = 0.0  # seconds of audio
    length: int = 0  # frames the video will have
    notes: list[str] = field(default_factory=list)
    mouth_weights: np.ndarray | None = None  # (length,) the audio's pull on the mouth per frame (--mouth_in_silence rest)


def check_request(request: GenerationRequest) -> CheckedInputs:
    """Every input file and the output's place, before anything expensive (the settings were checked as the request
    was made): one InputError naming the problem and the fix."""
    for name in ("reference_image_path", "audio_path", "output_path"):
        if getattr(request, name) is None:
            raise InputError(f"--{name} is missing; give it")
    if Path(request.output_path).suffix.lower() != ".mp4":
        raise InputError(f"--output_path {request.output_path}: the output is an MP4 video; give a path ending in .mp4")
    portrait_size = check_image(Path(request.reference_image_path))
    if not request.no_provenance:
        check_credentials(request.c2pa_cert, request.c2pa_key)
    missing = request.weights.missing()
    if missing:
        raise InputError(f"{missing[0]}; download the weights with: python scripts/download_models.py")
    audio_rate, encoder_field = _audio_encoder_input(request.weights.audio_encoder_path)
    if request.standard_audio_sampling_rate != audio_rate:
        raise InputError(
            f"--standard_audio_sampling_rate {request.standard_audio_sampling_rate}: the audio encoder ({request.weights.audio_encoder_path}) "
            f"takes {audio_rate} Hz audio; leave the flag at {audio_rate} (the audio is resampled to it whatever its own rate)"
        )
    waveform = load_audio(request.audio_path, audio_rate)
    inputs = CheckedInputs(waveform)
    if request.reference_kps:
        inputs.hand_kps = hand_placed_kps(request.reference_kps, portrait_size)
    shortest = max(encoder_field, math.ceil(audio_rate / request.fps))
    if len(waveform) < shortest:
        raise InputError(
            f"{request.audio_path}: the audio lasts {1000 * len(waveform) / audio_rate:.0f} ms; give at least {math.ceil(1000 * shortest / audio_rate)} ms "
            f"(one video frame at {request.fps:g} fps, and what the audio encoder needs for one vector)"
        )
    if not torch.isfinite(waveform).all():
        raise InputError(f"{request.audio_path}: the audio holds NaN or infinite samples; export it again")
    if float(waveform.abs().max()) < 1e-4:
        inputs.notes.append(f"warning: {request.audio_path}: the audio is silent; the mouth will barely move")
    for source in (request.reference_image_path, request.audio_path, request.kps_path, request.reference_video):
        if source and Path(source).resolve() == Path(request.output_path).resolve():
            raise InputError(f"--output_path {request.output_path} is also an input; choose another output file")
    if request.kps_path and request.reference_video:
        raise InputError("give either --kps_path or --reference_video, not both")
    if request.kps_path:
        inputs.driving_kps = load_kps_sequence(request.kps_path)
        reach = inputs.driving_kps.max(axis=(0, 1))
        if reach[0] > 1.5 * request.image_width or reach[1] > 1.5 * request.image_height:
            inputs.notes.append(f"note: {request.kps_path}: keypoints reach ({reach[0]:.0f}, {reach[1]:.0f}) in a "
                                f"{request.image_width}x{request.image_height} video; were they extracted at another size (--width/--height)?")
    elif request.reference_video and not Path(request.reference_video).is_file():
        raise InputError(f"{request.reference_video}: reference video not found")
    inputs.duration = len(waveform) / audio_rate
    inputs.length = video_length(num_frames_for_audio(inputs.duration, request.fps), request.context_frames, request.context_overlap)
    if request.mouth_in_silence == "rest":
        inputs.mouth_weights = mouth_rest_weights(resample(waveform, audio_rate, VAD_RATE).numpy(), inputs.length,
                                                  inputs.length / inputs.duration, inputs.notes.append)
    frame_size = canvas_size(*portrait_size, request.max_output_side) if request.paste_back else (request.image_width, request.image_height)
    pixels = inputs.length * frame_size[0] * frame_size[1]
    latent_bytes = inputs.length * request.image_width * request.image_height // 64 * 4 * 4  # the resume state: float32 latents
    check_output_location(Path(request.output_path), int(pixels * BYTES_PER_OUTPUT_PIXEL) + latent_bytes + Path(request.audio_path).stat().st_size)
    return inputs


def check_image(path: Path) -> tuple[int, int]:
    """The reference image's (width, height) when it exists and opens; else an InputError saying why."""
    from PIL import UnidentifiedImageError

    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the reference image file")
    if not path.is_file():
        raise InputError(f"{path}: reference image not found")
    try:
        with Image.open(path) as image:
            image.convert("RGB")
            return image.size
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


def prepare_portrait(request, hand_kps: np.ndarray | None, face_detector) -> tuple[Image.Image, np.ndarray | None, PasteBack | None]:
    """(the portrait the video is generated from, the hand-placed keypoints in the video's frame or None, the
    paste-back or None). With --paste_back the portrait is a square crop around the face (placed by hand, or the
    --face_index-th found by `face_detector(size)` on the whole photo) of the photo scaled to the video's size; else
    the photo itself."""
    photo = Image.open(request.reference_image_path).convert("RGB")
    width, height = request.image_width, request.image_height
    if not getattr(request, "paste_back", False):
        return photo, None if hand_kps is None else (hand_kps * [width / photo.width, height / photo.height]).astype(np.float32), None
    size = canvas_size(*photo.size, request.max_output_side)
    canvas = np.asarray(photo if size == photo.size else photo.resize(size, Image.LANCZOS))
    to_canvas = np.array([size[0] / photo.width, size[1] / photo.height])
    if hand_kps is not None:
        box = face_box_from_kps(hand_kps * to_canvas)
    else:
        faces = face_detector(detection_size(size)).faces(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        box = chosen_face(faces, request.face_index, request.reference_image_path).bbox
    paste = PasteBack.around(canvas, box)
    return paste.crop(), None if hand_kps is None else paste.to_crop(hand_kps * to_canvas, width, height), paste


def portrait_advice(request, portrait, face_detector) -> list[str]:
    """The photo checks where no keypoints are taken from the portrait (no_retarget): advice only, so a portrait
    without a face, or no detector at all, is one line or nothing, never a stop."""
    try:
        faces = face_detector().portrait_faces(portrait, request.image_width, request.image_height)
    except FaceError:  # no detector installed: no_retarget does without one
        return []
    if not faces:
        return [f"warning: {request.reference_image_path}: no face found; the driving keypoints are drawn as given"]
    index = min(getattr(request, "face_index", 0), len(faces) - 1)
    return photo_advice(request.reference_image_path, faces, index, (request.image_width, request.image_height))


def plan_video_keypoints(request, portrait, driving_kps, waveform, num_frames: int, fps: float, face_detector, say,
                         hand_kps: np.ndarray | None = None) -> tuple[torch.Tensor, str]:
    """(the keypoints (num_frames, 3, 2) a request's video is drawn from, the strategy used), as `request` asks: a
    strategy that needs a driver falls back to fix_face without one; the portrait's keypoints are `hand_kps` (placed
    by hand, in the video's frame) or else found in `portrait` (a PIL image) by `face_detector()`, which also finds a
    --reference_video's (called only when needed); `waveform` drives the head motion."""
    strategy, reference_video = request.retarget_strategy, getattr(request, "reference_video", None)
    if strategy in DRIVING_STRATEGIES and driving_kps is None and not reference_video:
        say(f"note: --retarget_strategy {strategy} needs driving keypoints (--kps_path or --reference_video); using fix_face")
        strategy = "fix_face"
    reference_kps = hand_kps if strategy != "no_retarget" else None
    if hand_kps is not None and reference_kps is None:
        say("note: --retarget_strategy no_retarget draws the driving keypoints as they are; --reference_kps is not used")
    if strategy == "no_retarget" and hand_kps is None:
        for line in portrait_advice(request, portrait, face_detector):
            say(line)
    if strategy != "no_retarget" and reference_kps is None:
        reference_kps, advice = face_detector().reference_kps(portrait, request.reference_image_path, request.image_width,
                                                              request.image_height, getattr(request, "face_index", 0))
        for line in advice:  # the photo checks: one line each, and the run goes on
            say(line)
    if reference_video:
        from media.kps_extraction import extract_kps_sequence

        driving_kps = extract_kps_sequence(reference_video, face_detector(), request.image_width, request.image_height, report=say).kps
    kps = plan_keypoints(
        reference_kps, driving_kps, num_frames, strategy=strategy, kps_fit=request.kps_fit, head_motion=request.head_motion,
        head_motion_strength=request.head_motion_strength, waveform=waveform, sampling_rate=getattr(request, "standard_audio_sampling_rate", SAMPLING_RATE),
        fps=fps, seed=request.seed,
    )
    return kps, strategy


def pick_device(request):
    """(device, accelerate PartialState or None)."""
    if request.do_multi_devices_inference:
        from accelerate import PartialState

        state = PartialState(cpu=not torch.accelerator.is_available())  # on CPUs too, each torchrun process sees the others
        return state.device, state
    name = request.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available; use --device cpu")
        if request.gpu_id >= torch.cuda.device_count():
            raise InputError(f"--gpu_id {request.gpu_id}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        name = f"cuda:{request.gpu_id}"
    return torch.device(name), None


def pick_dtype(request, device, report=print):
    if request.dtype is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    if device.type == "cpu" and request.dtype == "fp16":
        report("note: fp16 is not supported on the CPU; using fp32")
        return torch.float32
    return DTYPES[request.dtype]


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

    LOAD_TIME_FLAGS = ("device", "dtype", "test_stage", "compile", "do_multi_devices_inference", "weights")

    def __init__(self, request, report=None):
        self.report = report or (lambda message: print(message, file=sys.stderr))
        self.request = request
        self.loaded_with = {name: getattr(request, name) for name in self.LOAD_TIME_FLAGS}
        self.device, self.distributed_state = pick_device(request)
        self.dtype = pick_dtype(request, self.device, self.report)
        self.is_main = self.distributed_state is None or self.distributed_state.is_main_process
        self._pipeline, self._face_detectors = None, {}

    @property
    def pipeline(self):
        """The networks, loaded on first use (so that a request's keypoints are checked before they load)."""
        if self._pipeline is None:
            self._pipeline = load_pipeline(self.request.weights, self.device, self.dtype)
            if self.request.test_stage == "stage_1":
                self._pipeline.denoising_unet.zero_audio_and_motion_outputs()  # the network as stage 1 trained it
            if self.request.compile:
                # The UNet only: the decoder's last batch is a new shape and recompiles, which cost more than it saved
                # (H200, docs/benchmarks/gpu-h200-2026-12-04-lease3.json).
                self._pipeline.denoising_unet = torch.compile(self._pipeline.denoising_unet, dynamic=False)
            self._pipeline.set_progress_bar_config(disable=not self.is_main, leave=False)
        return self._pipeline

    def face_detector(self, request, size: tuple[int, int] | None = None):
        """The detector for images of `size` (default the video's), made once per size."""
        from media.face import FaceDetector

        size = size or (request.image_width, request.image_height)
        if size not in self._face_detectors:
            self._face_detectors[size] = FaceDetector(request.weights.insightface_model_path, image_size=size, device=self.device.type,
                                                      gpu_id=request.gpu_id, tasks=portrait_check_tasks(request.weights.insightface_model_path))
        return self._face_detectors[size]

    def generate(self, request, inputs: CheckedInputs | None = None, progress=None) -> GenerationReport | None:
        """One video as `request` asks (inference.py's flags). Returns the report on the main process, None on others.
        The main process holds the output's lock from start to end (InputError when another run holds it). A run
        stopped while denoising or writing, by Ctrl-C (Interrupted) or an error, first saves where it got to.
        progress(phase, step, total): called as each phase starts and after each denoising step (step and total
        None outside denoising); an exception it raises stops the run as an error would."""
        started = time.perf_counter()
        changed = [name for name, value in self.loaded_with.items() if getattr(request, name) != value]
        if changed == ["weights"]:  # name the weight path's own flag
            changed = [name for name, value in vars(request.weights).items() if value != getattr(self.loaded_with["weights"], name)]
        if changed:
            raise InputError(f"--{changed[0]} differs from the value the networks were loaded with; it cannot change per video")
        inputs = inputs or check_request(request)
        if not self.is_main:  # the other processes of a --do_multi_devices_inference run work for the main one, which writes
            return self._generate(request, inputs, started, progress)
        output = Path(request.output_path)
        with output_lock(output):
            for leftover in (*leftover_partials(output), *leftover_partials(state_path(output))):
                leftover.unlink(missing_ok=True)  # of a run killed while writing: with the lock held, no other run writes these
            return self._generate(request, inputs, started, progress)

    def _generate(self, request, inputs: CheckedInputs, started: float, progress=None) -> GenerationReport | None:
        say = self.report if self.is_main else (lambda message: None)
        progress = progress if self.is_main and progress else (lambda phase, step, total: None)
        for note in inputs.notes:
            say(note)
        width, height, output = request.image_width, request.image_height, Path(request.output_path)
        duration, length = inputs.duration, inputs.length

        # 1. The keypoints: the portrait's and the driver's, fitted, retargeted and animated.
        timings = {}
        clock = time.perf_counter()
        progress("face keypoints", None, None)
        detector = lambda size=None: self.face_detector(request, size)  # noqa: E731  (loaded only when a face is to be found)
        portrait, hand_kps, paste = prepare_portrait(request, inputs.hand_kps, detector)
        kps_sequence, strategy = plan_video_keypoints(request, portrait, inputs.driving_kps, inputs.waveform, length, length / duration,
                                                      detector, say, hand_kps)
        timings["face keypoints"] = time.perf_counter() - clock

        # 2. Where an interrupted run with these very inputs and settings stopped.
        settings = request.video_settings()
        settings.update(strategy=strategy, weights=[(p, Path(p).stat().st_size) for p in vars(request.weights).values() if Path(p).is_file()])
        if inputs.mouth_weights is not None:  # a state saved by another rest mechanism would finish another video
            settings.update(rest_mechanism=REST_MECHANISM)
        run_fingerprint = fingerprint(
            {"reference_image": request.reference_image_path, "audio": request.audio_path, "kps": request.kps_path, "video": request.reference_video},
            settings,
        )
        resume_from = load_state(state_path(output), run_fingerprint, report=say)
        resume = StateWriter(state_path(output), run_fingerprint, request.resume_interval, resumed_from=resume_from)
        if resume_from is not None:
            say(f"resuming from {resume.path}: denoising step {resume_from.step} of {request.num_inference_steps} done")

        def on_step_end(pipeline, step, timestep, callback_kwargs):  # saved first: a stop asked here keeps this step
            callback_kwargs = resume(pipeline, step, timestep, callback_kwargs)
            progress("denoising", step, request.num_inference_steps)
            return callback_kwargs

        # 3 and 4: a run stopped on the way (Ctrl-C, the disk full) first saves the last step it can go on from.
        try:
            # 3. Denoise to latents.
            clock = time.perf_counter()
            pipeline = self.pipeline
            timings["loading"] = time.perf_counter() - clock
            progress("denoising", resume_from.step if resume_from else 0, request.num_inference_steps)
            pipeline.to(self.device)  # a previous request with --save_gpu_memory may have offloaded networks
            pipeline.scheduler = make_scheduler(request.scheduler)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            denoised = pipeline(
                reference_image=portrait, kps_images=KpsImages(kps_sequence, height, width),
                audio_waveform=inputs.waveform, width=width, height=height, video_length=length,
                num_inference_steps=request.num_inference_steps, guidance_scale=request.guidance_scale,
                generator=published_noise_generator(request.seed, pipeline.audio_encoder), output_type="latent",
                context_frames=request.context_frames, context_overlap=request.context_overlap,
                reference_attention_weight=request.reference_attention_weight,
                audio_attention_weight=request.audio_attention_weight * request.expression_strength, num_pad_audio_frames=request.num_pad_audio_frames,
                do_multi_devices_inference=request.do_multi_devices_inference, save_gpu_memory=request.save_gpu_memory,
                guidance_interval=tuple(request.guidance_interval), cache_interval=request.cache_interval,
                context_batch_size=request.context_batch_size, resume_from=resume_from,
                callback_on_step_end=on_step_end if self.is_main else None, return_output=True,
                mouth_weights=None if inputs.mouth_weights is None else torch.from_numpy(inputs.mouth_weights),
            )
            latents = denoised.frames
            timings.update(denoised.timings, unet_calls=denoised.unet_calls)
            if not self.is_main:
                return None

            # 4. Decode, filter and encode, a batch of frames at a time.
            clock = time.perf_counter()
            progress("decoding and writing", None, None)
            frames = pipeline.stream_frames(latents, 1 if request.save_gpu_memory else request.decode_batch_frames, flicker_filter=not request.no_median_filter)
            if paste is not None:
                frames = paste.frames(frames)

            def marks(partial: Path) -> None:  # on the complete file, before it takes the output's name
                clock = time.perf_counter()
                mark(partial, request.c2pa_cert, request.c2pa_key)
                timings["provenance marks"] = time.perf_counter() - clock

            write_video(output, frames, length / duration, request.audio_path, num_frames=length, finish=None if request.no_provenance else marks)
            timings["decoding and writing"] = time.perf_counter() - clock
        except KeyboardInterrupt:
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the save short
            try:
                step = resume.save_latest()
            finally:
                signal.signal(signal.SIGINT, handler)
            raise Interrupted(f"interrupted at step {step} of {request.num_inference_steps}; run the same command again to continue"
                              if step is not None else "interrupted; nothing was written") from None
        except Exception:  # the disk full, the device out of memory while decoding: the run that follows goes on from here
            resume.save_latest()
            raise
        resume.remove()
        return GenerationReport(
            output, count_frames(output), length / duration, duration, (width, height) if paste is None else paste.canvas.shape[1::-1], strategy, self.device, self.dtype, timings,
            resume_from.step if resume_from else None, time.perf_counter() - started,
        )
