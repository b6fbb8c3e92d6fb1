"""Check the keypoints against a portrait before generating (no GPU, no diffusion weights). By --output_path:

- a PNG: the portrait, the V-Kps image of one frame (what the V-Kps Guider sees: left eye red, right eye
  green, nose blue), and the two overlaid;
- an MP4: every frame inference.py would draw, planned the same way (--retarget_strategy, --kps_fit,
  --head_motion), as the V-Kps image beside its overlay on the portrait, with the speech.

    python scripts/preview_kps.py --reference_image_path test_samples/portrait.png \\
        --kps_path test_samples/kps_sequence.pth --output_path outputs/kps_preview.png
    python scripts/preview_kps.py --reference_image_path test_samples/portrait.png --audio_path test_samples/speech.wav \\
        --retarget_strategy fix_face --head_motion natural --output_path outputs/kps_preview.mp4

Strategies other than no_retarget find the portrait's keypoints with the face detector (--insightface_model_path).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.errors import VExpressError  # noqa: E402
from pipelines.kps import RETARGET_STRATEGIES, draw_kps_image, load_kps_sequence  # noqa: E402
from pipelines.motion import HEAD_MOTIONS, KPS_FITS, MAX_HEAD_MOTION_STRENGTH, plan_keypoints  # noqa: E402

IMAGE_SUFFIXES, VIDEO_SUFFIXES = (".png", ".jpg", ".jpeg"), (".mp4",)
SAMPLING_RATE = 16000  # inference.py's --standard_audio_sampling_rate


class PreviewError(VExpressError):
    """Options that cannot make a preview."""


def overlay(portrait: np.ndarray, drawing: np.ndarray) -> np.ndarray:
    """The V-Kps drawing (H, W, 3) over the portrait (H, W, 3), dimmed so that the drawing stands out."""
    return np.where(drawing.any(axis=-1, keepdims=True), drawing, portrait // 2 + 64)


class PreviewFrames:
    """The MP4's frames, each (H, 2W, 3) uint8: the V-Kps image beside its overlay. Drawn one by one as the
    writer iterates, so that a preview of a long speech never holds every frame in memory."""

    def __init__(self, portrait: np.ndarray, kps_sequence: np.ndarray):
        self.portrait, self.kps_sequence = portrait, kps_sequence

    def __len__(self) -> int:
        return len(self.kps_sequence)

    def __getitem__(self, index: int) -> np.ndarray:
        height, width = self.portrait.shape[:2]
        drawing = draw_kps_image(height, width, self.kps_sequence[index])
        return np.concatenate([drawing, overlay(self.portrait, drawing)], axis=1)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference_image_path", required=True)
    parser.add_argument("--kps_path", default=None, help="driving keypoint sequence (not needed with fix_face)")
    parser.add_argument("--audio_path", default=None, help="speech: sets the length as in inference.py, drives --head_motion, plays in the MP4")
    parser.add_argument("--output_path", required=True, help="a PNG (one frame) or an MP4 (the whole sequence)")
    parser.add_argument("--frame", type=int, default=0, help="which frame a PNG shows")
    parser.add_argument("--image_width", type=int, default=512)
    parser.add_argument("--image_height", type=int, default=512)
    parser.add_argument("--retarget_strategy", default="no_retarget", choices=RETARGET_STRATEGIES, help="as in inference.py")
    parser.add_argument("--kps_fit", default="stretch", choices=KPS_FITS, help="as in inference.py")
    parser.add_argument("--head_motion", default="none", choices=HEAD_MOTIONS, help="as in inference.py; natural needs --audio_path")
    parser.add_argument("--head_motion_strength", type=float, default=1.0, help=f"0 to {MAX_HEAD_MOTION_STRENGTH:g} (default 1)")
    parser.add_argument("--seed", type=int, default=42, help="seeds the head motion, as inference.py's --seed")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--insightface_model_path", default="./model_ckpts/insightface_models/", help="the face detector, as in inference.py")
    return parser


def check_options(args) -> str:
    """The output's kind, "image" or "video"; PreviewError for options that cannot work together."""
    suffix = Path(args.output_path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise PreviewError(f"--output_path {args.output_path}: give a .png (one frame) or an .mp4 (the whole sequence)")
    if args.head_motion == "natural" and not args.audio_path:
        raise PreviewError("--head_motion natural follows the speech; give --audio_path")
    if not 0 <= args.head_motion_strength <= MAX_HEAD_MOTION_STRENGTH:
        raise PreviewError(f"--head_motion_strength {args.head_motion_strength}: must be between 0 and {MAX_HEAD_MOTION_STRENGTH:g}")
    if not args.kps_path and not args.audio_path:
        raise PreviewError("give --kps_path or --audio_path: one of them sets the length")
    if args.fps <= 0 or args.image_width < 1 or args.image_height < 1:
        raise PreviewError("--fps, --image_width and --image_height must be positive")
    return "image" if suffix in IMAGE_SUFFIXES else "video"


def plan(args, say):
    """(keypoints (L, 3, 2) to draw, frames per second, the strategy used): the frames inference.py would draw."""
    from pipelines.audio import load_audio
    from pipelines.context import num_frames_for_audio, video_length

    driving_kps = load_kps_sequence(args.kps_path) if args.kps_path else None
    waveform, fps = None, args.fps
    if args.audio_path:
        waveform = load_audio(args.audio_path, SAMPLING_RATE)
        duration = len(waveform) / SAMPLING_RATE
        num_frames = video_length(num_frames_for_audio(duration, args.fps))  # inference.py's default context windows
        fps = num_frames / duration  # as inference.py writes it: the frames span the speech
    else:
        num_frames = len(driving_kps)
    strategy = args.retarget_strategy
    if strategy != "fix_face" and driving_kps is None:
        say(f"note: --retarget_strategy {strategy} needs driving keypoints (--kps_path); using fix_face")
        strategy = "fix_face"
    reference_kps = None
    if strategy != "no_retarget":
        from pipelines.face import FaceDetector

        detector = FaceDetector(args.insightface_model_path, image_size=(args.image_width, args.image_height))
        reference_kps, num_faces = detector.reference_kps(args.reference_image_path, args.image_width, args.image_height)
        if num_faces > 1:
            say(f"note: {num_faces} faces in {args.reference_image_path}; using the largest")
    kps = plan_keypoints(
        reference_kps, driving_kps, num_frames, strategy=strategy, kps_fit=args.kps_fit, head_motion=args.head_motion,
        head_motion_strength=args.head_motion_strength, waveform=waveform, sampling_rate=SAMPLING_RATE, fps=fps, seed=args.seed,
    )
    return kps.numpy(), fps, strategy


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        kind = check_options(args)
        portrait = np.asarray(Image.open(args.reference_image_path).convert("RGB").resize((args.image_width, args.image_height)))
        kps, fps, strategy = plan(args, say)
        if kind == "image" and not 0 <= args.frame < len(kps):
            raise PreviewError(f"--frame {args.frame}: the sequence has frames 0..{len(kps) - 1}")
    except (VExpressError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        drawing = draw_kps_image(args.image_height, args.image_width, kps[args.frame])
        Image.fromarray(np.concatenate([portrait, drawing, overlay(portrait, drawing)], axis=1)).save(output)
        print(f"wrote {output}: frame {args.frame} of {len(kps)}")
        return 0
    from pipelines.video import write_video

    write_video(output, PreviewFrames(portrait, kps), fps, args.audio_path)
    print(f"wrote {output}: {len(kps)} frames at {fps:.3f} fps, {strategy}, fit {args.kps_fit}, head motion {args.head_motion}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
