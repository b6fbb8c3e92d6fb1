"""V-Express: a portrait photo and speech audio (and optionally face keypoints) -> talking-head video.

    python inference.py --reference_image_path face.jpg --audio_path speech.wav --output_path out.mp4

Run again with the same arguments after an interruption: generation resumes from its last saved step.
"""

import argparse
import sys
import warnings
from dataclasses import fields

CHANGES_NUMBERS = "opt-in, changes the video"


def build_parser() -> argparse.ArgumentParser:
    from pipelines.generation import PRESETS
    from pipelines.kps import RETARGET_STRATEGIES
    from pipelines.loading import SCHEDULERS, ModelPaths
    from pipelines.motion import HEAD_MOTIONS, KPS_FITS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    speed = parser.add_argument_group("speed (README, Speed)")
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


def main(argv=None) -> int:
    try:
        return run(argv)
    except KeyboardInterrupt as interruption:  # Ctrl-C: one line, like an error; generation saved what it had done
        print(str(interruption) or "interrupted; nothing was written", file=sys.stderr)
        return 130


def run(argv) -> int:
    from modules.errors import VExpressError
    from pipelines.generation import VideoGenerator, check_request

    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        inputs = check_request(args)
        report = VideoGenerator(args).generate(args, inputs)
    except VExpressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report is not None:
        print("\n".join(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
