"""inference.py's flags, and requests as those flags for the scripts that generate videos for someone else (the web
UI, batch generation). A request is an argv list of inference.py flags parsed by the same parser, so every option
stays available and is checked the same way as on the command line."""

import argparse
import textwrap
from dataclasses import fields

from modules.errors import VExpressError

# The flags that name one video's inputs and output: the page or the manifest row gives them.
PER_VIDEO_FLAGS = ("reference_image_path", "audio_path", "kps_path", "reference_video", "output_path")
# Stand-ins for the per-video flags that inference.py requires, to parse the other flags of a command line alone.
PLACEHOLDERS = ["--reference_image_path", "portrait.png", "--audio_path", "speech.wav", "--output_path", "video.mp4"]
ONE_VIDEO_ON_MANY_PROCESSES = "do_multi_devices_inference"  # the one flag these scripts cannot honour


CHANGES_NUMBERS = "opt-in, changes the video"


def build_inference_parser(description: str | None = None) -> argparse.ArgumentParser:
    """inference.py's flags (its --help text is `description`)."""
    from app.generation import PRESETS
    from motion.retarget import RETARGET_STRATEGIES
    from pipelines.loading import SCHEDULERS, ModelPaths
    from motion.plan import HEAD_MOTIONS, KPS_FITS

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    inputs = parser.add_argument_group("inputs and output")
    inputs.add_argument("--reference_image_path", "--reference_image", dest="reference_image_path", required=True, help="portrait photo (JPG, PNG, BMP, WebP, ...)")
    inputs.add_argument("--audio_path", "--audio", dest="audio_path", required=True, help="speech (WAV, MP3, FLAC, M4A, OGG, or a video with sound)")
    inputs.add_argument("--kps_path", default=None, help="driving keypoint sequence (scripts/extract_kps_sequence_and_audio.py writes one)")
    inputs.add_argument("--reference_video", default=None, help="driving video: its keypoint sequence is extracted on the fly and used as --kps_path")
    inputs.add_argument("--output_path", "--output", dest="output_path", required=True, help="the MP4 to write")

    generation = parser.add_argument_group("generation")
    generation.add_argument("--retarget_strategy", default="no_retarget", help=f"how driving keypoints map onto the portrait: {', '.join(RETARGET_STRATEGIES)} (default no_retarget)")
    generation.add_argument("--num_inference_steps", type=int, default=None, help="denoising steps (default 25, or the preset's)")
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
    generation.add_argument("--standard_audio_sampling_rate", type=int, default=16000, help="must be the audio encoder's rate (16000)")
    generation.add_argument("--audio_embeddings_type", default="global", choices=["global"])
    generation.add_argument("--test_stage", default="stage_3", choices=["stage_1", "stage_2", "stage_3"])
    generation.add_argument("--no_median_filter", action="store_true", help="skip the 3x3x3 flicker filter")

    motion = parser.add_argument_group("motion (opt-in; the defaults are the published behaviour)")
    motion.add_argument("--kps_fit", default="stretch", help=f"how a driving sequence covers the video: {', '.join(KPS_FITS)} (default stretch, published; the others {CHANGES_NUMBERS})")
    motion.add_argument("--head_motion", default="none", help=f"{' or '.join(HEAD_MOTIONS)}; natural: a speech-driven head motion for a still portrait ({CHANGES_NUMBERS})")
    motion.add_argument("--head_motion_strength", type=float, default=1.0, help="scales --head_motion natural (0 to 3)")

    speed = parser.add_argument_group("speed (docs/speed.md)")
    speed.add_argument("--preset", default="published", choices=list(PRESETS), help=f"published (default), balanced or fast: scheduler, steps, guidance interval and cache together ({CHANGES_NUMBERS} unless published)")
    speed.add_argument("--scheduler", default=None, choices=SCHEDULERS, help=f"ddim (published), dpmpp_2m or unipc ({CHANGES_NUMBERS})")
    speed.add_argument("--guidance_interval", type=float, nargs=2, default=None, metavar=("START", "END"),
                       help=f"classifier-free guidance only on the steps in [START, END) of the schedule, fractions (default 0 1; {CHANGES_NUMBERS})")
    speed.add_argument("--cache_interval", type=int, default=None, help=f"DeepCache: full UNet every N steps, its shallow branch in between (default 1: off; {CHANGES_NUMBERS})")
    speed.add_argument("--context_batch_size", type=int, default=1, help="context windows per UNet call (same video)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the denoising UNet and the VAE decoder (same video; the first window pays a warm-up)")
    speed.add_argument("--decode_batch_frames", type=int, default=None, help="frames per VAE decode (default: what fits in memory)")

    runtime = parser.add_argument_group("device and memory")
    runtime.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cuda, mps or cpu")
    runtime.add_argument("--gpu_id", type=int, default=0)
    runtime.add_argument("--dtype", default=None, choices=["fp16", "bf16", "fp32"], help="default: fp16 on CUDA/MPS, fp32 on CPU")
    runtime.add_argument("--save_gpu_memory", action="store_true", help="offload finished networks, keep latents on the CPU, decode frame by frame")
    runtime.add_argument("--do_multi_devices_inference", action="store_true", help="with `accelerate launch`: split the windows of each step across processes")
    runtime.add_argument("--resume_interval", type=float, default=60.0, help="seconds between saves of the resume state beside the output (0: every step)")

    weights = parser.add_argument_group("weights")
    for field in fields(ModelPaths):
        weights.add_argument(f"--{field.name}", default=field.default)
    return parser


class FlagError(VExpressError):
    """Flags inference.py's parser refuses: an unknown flag, a missing value, a value of the wrong type or choice."""


def raising(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser`, made to raise FlagError where argparse would print its usage and exit: a request that a page or a
    manifest row built is reported there, and the server or the batch goes on."""

    def refuse(message):
        raise FlagError(message)

    parser.error = refuse
    return parser


def request_parser() -> argparse.ArgumentParser:
    """inference.py's parser, raising FlagError."""
    return raising(build_inference_parser())


def parse_request(argv: list, switches: dict[str, bool] | None = None) -> argparse.Namespace:
    """inference.py's flags -> the request that `check_request` and `VideoGenerator.generate` take. `switches`
    ({destination: on}) are set either way after parsing: on a command line a flag can only turn a switch on, and a
    page's box or a manifest's column may turn off one that the server's command line turned on."""
    request = request_parser().parse_args([str(arg) for arg in argv])
    for name, on in (switches or {}).items():
        setattr(request, name, on)
    return request


def inference_flags() -> dict[str, argparse.Action]:
    """Every long flag of inference.py, without its dashes (aliases too), in --help order -> its argparse action."""
    return {option[2:]: action for action in request_parser()._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


def script_parser(description: str, per_video_flags: bool, passed_on: str) -> argparse.ArgumentParser:
    """The parser of a script that passes inference.py's flags on (see `split_command_line`). Its --help ends with
    those flags, after `passed_on` (what they do there); `per_video_flags` says whether the input and output flags
    are among them."""
    names = [name for name, action in inference_flags().items() if action.dest != ONE_VIDEO_ON_MANY_PROCESSES
             and (per_video_flags or action.dest not in PER_VIDEO_FLAGS)]
    epilog = textwrap.fill(f"Every other flag is an inference.py flag (python inference.py --help says what each does): {passed_on}: "
                           + " ".join(f"--{name}" for name in names), width=100)
    # No abbreviations: unknown flags pass through to inference.py, so a prefix of one must not be taken for ours.
    return argparse.ArgumentParser(description=description, epilog=epilog, allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def split_command_line(parser: argparse.ArgumentParser, argv=None, per_video_flags: bool = True) -> tuple[argparse.Namespace, list[str]]:
    """(the script's own flags, the rest of its command line: inference.py flags for every video). The rest is
    checked here, once, so that a typo stops the script at its start rather than failing every video; a bad flag
    exits as argparse does (usage, one line, status 2)."""
    own, common = parser.parse_known_args(argv)
    try:
        given, defaults = parse_request(PLACEHOLDERS + common), parse_request(PLACEHOLDERS)
    except FlagError as error:
        parser.error(str(error))
    if getattr(given, ONE_VIDEO_ON_MANY_PROCESSES):
        parser.error(f"--{ONE_VIDEO_ON_MANY_PROCESSES} splits one video across processes; here each process makes "
                     "whole videos, so leave it out")
    named = [name for name in PER_VIDEO_FLAGS if getattr(given, name) != getattr(defaults, name)]
    if named and not per_video_flags:
        parser.error(f"--{named[0]} is given for each video in the page, not on the command line")
    return own, common
