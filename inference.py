"""V-Express: a portrait photo and speech audio (and optionally face keypoints) -> talking-head video.

    python inference.py --reference_image_path face.jpg --audio_path speech.wav --output_path out.mp4
"""

import argparse
import sys
import time
import warnings
from dataclasses import fields
from pathlib import Path

from pipelines.kps import RETARGET_STRATEGIES

DRIVING_STRATEGIES = ("no_retarget", "offset_retarget", "naive_retarget")


class InputError(ValueError):
    """Bad input: one line for the user, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from pipelines.loading import ModelPaths

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    inputs = parser.add_argument_group("inputs and output")
    inputs.add_argument("--reference_image_path", "--reference_image", dest="reference_image_path", required=True, help="portrait photo (JPG, PNG, BMP, WebP, ...)")
    inputs.add_argument("--audio_path", "--audio", dest="audio_path", required=True, help="speech (WAV, MP3, FLAC, M4A, OGG, or a video with sound)")
    inputs.add_argument("--kps_path", default=None, help="driving keypoint sequence (scripts/extract_kps_sequence_and_audio.py writes one)")
    inputs.add_argument("--reference_video", default=None, help="driving video: its keypoint sequence is extracted on the fly and used as --kps_path")
    inputs.add_argument("--output_path", "--output", dest="output_path", required=True, help="the MP4 to write")

    generation = parser.add_argument_group("generation")
    generation.add_argument("--retarget_strategy", default="no_retarget", help=f"one of {', '.join(RETARGET_STRATEGIES)} (default no_retarget)")
    generation.add_argument("--num_inference_steps", type=int, default=25)
    generation.add_argument("--guidance_scale", type=float, default=3.5)
    generation.add_argument("--reference_attention_weight", type=float, default=1.0, help="identity strength (published default 0.95)")
    generation.add_argument("--audio_attention_weight", type=float, default=1.0, help="lip-sync strength (published default 3.0)")
    generation.add_argument("--expression_strength", type=float, default=1.0, help="multiplies --audio_attention_weight")
    generation.add_argument("--image_width", type=int, default=512)
    generation.add_argument("--image_height", type=int, default=512)
    generation.add_argument("--fps", type=float, default=30.0)
    generation.add_argument("--seed", type=int, default=42)
    generation.add_argument("--context_frames", type=int, default=24)
    generation.add_argument("--context_overlap", type=int, default=4)
    generation.add_argument("--num_pad_audio_frames", type=int, default=2)
    generation.add_argument("--standard_audio_sampling_rate", type=int, default=16000)
    generation.add_argument("--audio_embeddings_type", default="global", choices=["global"])
    generation.add_argument("--test_stage", default="stage_3", choices=["stage_1", "stage_2", "stage_3"])
    generation.add_argument("--no_median_filter", action="store_true", help="skip the 3x3x3 flicker filter")

    runtime = parser.add_argument_group("device and memory")
    runtime.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cuda, mps or cpu")
    runtime.add_argument("--gpu_id", type=int, default=0)
    runtime.add_argument("--dtype", default=None, choices=["fp16", "bf16", "fp32"], help="default: fp16 on CUDA/MPS, fp32 on CPU")
    runtime.add_argument("--save_gpu_memory", action="store_true", help="offload finished networks, keep latents on the CPU, decode frame by frame")
    runtime.add_argument("--do_multi_devices_inference", action="store_true", help="with `accelerate launch`: split the windows of each step across processes")

    weights = parser.add_argument_group("weights")
    for field in fields(ModelPaths):
        weights.add_argument(f"--{field.name}", default=field.default)
    return parser


def pick_device(args):
    import torch

    if args.do_multi_devices_inference:
        from accelerate import PartialState

        state = PartialState()
        return state.device, state
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is available; use --device cpu")
        name = f"cuda:{args.gpu_id}"
    return torch.device(name), None


def pick_dtype(args, device):
    import torch

    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if args.dtype is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    if device.type == "cpu" and args.dtype == "fp16":
        print("note: fp16 is not supported on the CPU; using fp32", file=sys.stderr)
        return torch.float32
    return dtypes[args.dtype]


def check_inputs(args):
    """Everything that can be checked before a network loads. Returns the waveform and the driving keypoints."""
    from PIL import Image, UnidentifiedImageError

    from pipelines.audio import AudioError, load_audio
    from pipelines.kps import KpsError, load_kps_sequence
    from pipelines.loading import ModelPaths

    if args.retarget_strategy not in RETARGET_STRATEGIES:
        raise InputError(f"--retarget_strategy {args.retarget_strategy!r} is unknown; choose one of {', '.join(RETARGET_STRATEGIES)}")
    for name in ("image_width", "image_height"):
        value = getattr(args, name)
        if value <= 0 or value % 8:
            raise InputError(f"--{name} {value}: must be a positive multiple of 8")
    if not 1 <= args.context_frames <= 32:
        raise InputError(f"--context_frames {args.context_frames}: must be between 1 and 32 (the motion modules' frame limit)")
    if not 0 <= args.context_overlap < args.context_frames:
        raise InputError(f"--context_overlap {args.context_overlap}: must be at least 0 and smaller than --context_frames ({args.context_frames})")
    for name in ("num_inference_steps", "fps"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name} must be positive")
    if Path(args.output_path).suffix.lower() != ".mp4":
        raise InputError(f"--output_path {args.output_path}: the output is an MP4 video; give a path ending in .mp4")

    image_path = Path(args.reference_image_path)
    if not image_path.is_file():
        raise InputError(f"{image_path}: reference image not found")
    try:
        with Image.open(image_path) as image:
            image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{image_path}: cannot open the reference image ({error}); use a JPG, PNG, BMP or WebP photo") from None

    try:
        waveform = load_audio(args.audio_path, args.standard_audio_sampling_rate)
    except AudioError as error:
        raise InputError(str(error)) from None
    if float(waveform.abs().max()) < 1e-4:
        print(f"warning: {args.audio_path}: the audio is silent; the mouth will barely move", file=sys.stderr)

    driving_kps = None
    if args.kps_path and args.reference_video:
        raise InputError("give either --kps_path or --reference_video, not both")
    if args.kps_path:
        try:
            driving_kps = load_kps_sequence(args.kps_path)
        except KpsError as error:
            raise InputError(str(error)) from None
    elif args.reference_video and not Path(args.reference_video).is_file():
        raise InputError(f"{args.reference_video}: reference video not found")

    missing = ModelPaths.from_args(args).missing()
    if missing:
        raise InputError(f"missing model file {missing[0]}; download the weights with: python scripts/download_models.py")
    return waveform, driving_kps


def generate(args) -> int:
    import torch
    from PIL import Image

    from modules.checkpoints import CheckpointError
    from pipelines.context import num_frames_for_audio, video_length
    from pipelines.face import FaceDetector, FaceError
    from pipelines.kps import draw_kps_image, resample_kps_sequence, retarget_kps
    from pipelines.loading import ModelPaths, load_pipeline
    from pipelines.pipeline_v_express import published_noise_generator
    from pipelines.video import median_filter_video, video_to_uint8, write_video

    started = time.perf_counter()
    waveform, driving_kps = check_inputs(args)
    device, distributed_state = pick_device(args)
    dtype = pick_dtype(args, device)
    is_main = distributed_state is None or distributed_state.is_main_process
    say = (lambda message: print(message, file=sys.stderr)) if is_main else (lambda message: None)
    width, height = args.image_width, args.image_height

    strategy = args.retarget_strategy
    if strategy in DRIVING_STRATEGIES and driving_kps is None and not args.reference_video:
        say(f"note: --retarget_strategy {strategy} needs driving keypoints (--kps_path or --reference_video); using fix_face")
        strategy = "fix_face"

    timings = {}
    clock = time.perf_counter()
    reference_kps = None
    if strategy != "no_retarget" or args.reference_video:
        try:
            detector = FaceDetector(args.insightface_model_path, image_size=(width, height), device=device.type, gpu_id=args.gpu_id)
            if strategy != "no_retarget":
                reference_kps, num_faces = detector.reference_kps(args.reference_image_path, width, height)
                if num_faces > 1:
                    say(f"note: {num_faces} faces in {args.reference_image_path}; using the largest")
            if args.reference_video:
                from pipelines.kps_extraction import extract_kps_sequence

                driving_kps = extract_kps_sequence(args.reference_video, detector, width, height, report=say).kps
        except FaceError as error:
            raise InputError(str(error)) from None
        del detector
    timings["face keypoints"] = time.perf_counter() - clock

    duration = len(waveform) / args.standard_audio_sampling_rate
    length = video_length(num_frames_for_audio(duration, args.fps), args.context_frames, args.context_overlap)
    if driving_kps is not None:
        driving_kps = resample_kps_sequence(driving_kps, length)
    kps_sequence = retarget_kps(reference_kps, driving_kps, strategy, num_frames=length)
    kps_images = [Image.fromarray(draw_kps_image(height, width, kps.numpy())) for kps in kps_sequence]

    clock = time.perf_counter()
    try:
        pipeline = load_pipeline(ModelPaths.from_args(args), device, dtype)
    except CheckpointError as error:
        raise InputError(str(error)) from None
    if args.test_stage == "stage_1":
        pipeline.denoising_unet.zero_audio_and_motion_outputs()  # the network as stage 1 trained it
    pipeline.set_progress_bar_config(disable=not is_main, leave=False)
    timings["loading"] = time.perf_counter() - clock
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    video = pipeline(
        Image.open(args.reference_image_path).convert("RGB"), kps_images, waveform, width, height, length,
        args.num_inference_steps, args.guidance_scale, args.context_frames, args.context_overlap,
        args.reference_attention_weight, args.audio_attention_weight * args.expression_strength,
        args.num_pad_audio_frames, generator=published_noise_generator(args.seed, pipeline.audio_encoder),
        save_gpu_memory=args.save_gpu_memory, distributed_state=distributed_state, timings=timings,
    )
    if not is_main:
        return 0
    clock = time.perf_counter()
    if not args.no_median_filter:
        video = median_filter_video(video)
    output_fps = length / duration
    write_video(args.output_path, video_to_uint8(video), output_fps, args.audio_path)
    timings["writing"] = time.perf_counter() - clock

    generation_seconds = sum(timings.get(k, 0.0) for k in ("reference", "audio", "keypoints", "denoising", "decoding"))
    print(f"wrote {args.output_path}: {length} frames at {output_fps:.3f} fps ({duration:.2f} s), {width}x{height}, "
          f"strategy {strategy}, {device} {str(dtype).removeprefix('torch.')}")
    print("seconds per phase: " + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in timings.items()))
    print(f"generation: {length / generation_seconds:.2f} frames/s; total {time.perf_counter() - started:.1f} s; peak memory {peak_memory(device)}")
    return 0


def peak_memory(device) -> str:
    import resource

    import torch

    host = f"host {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB on {device}, {host}"
    return host


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        return generate(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
