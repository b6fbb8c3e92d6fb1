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

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.errors import VExpressError  # noqa: E402
from motion.retarget import RETARGET_STRATEGIES  # noqa: E402
from motion.plan import HEAD_MOTIONS, KPS_FITS, MAX_HEAD_MOTION_STRENGTH  # noqa: E402
from media.voice_activity import MOUTHS_IN_SILENCE  # noqa: E402
from app.preview import PreviewError, PreviewFrames, check_preview_options, plan_preview, preview_picture  # noqa: E402

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference_image_path", required=True)
    parser.add_argument("--kps_path", default=None, help="driving keypoint sequence (not needed with fix_face)")
    parser.add_argument("--audio_path", default=None, help="speech: sets the length as in inference.py, drives --head_motion, plays in the MP4")
    parser.add_argument("--output_path", required=True, help="a PNG (one frame) or an MP4 (the whole sequence)")
    parser.add_argument("--frame", type=int, default=0, help="which frame a PNG shows")
    parser.add_argument("--image_width", type=int, default=512)
    parser.add_argument("--image_height", type=int, default=512)
    parser.add_argument("--reference_kps", default=None, help='the portrait\'s keypoints placed by hand, as in inference.py: "x1,y1,x2,y2,x3,y3" or a JSON file')
    parser.add_argument("--paste_back", action="store_true", help="show the crop --paste_back generates the face from, as in inference.py")
    parser.add_argument("--max_output_side", type=int, default=None, help="as in inference.py")
    parser.add_argument("--face_index", type=int, default=0, help="which face of a photo with several, as in inference.py (0: the largest)")
    parser.add_argument("--retarget_strategy", default="no_retarget", choices=RETARGET_STRATEGIES, help="as in inference.py")
    parser.add_argument("--kps_fit", default="stretch", choices=KPS_FITS, help="as in inference.py")
    parser.add_argument("--head_motion", default="none", choices=HEAD_MOTIONS, help="as in inference.py; natural needs --audio_path")
    parser.add_argument("--head_motion_strength", type=float, default=1.0, help=f"0 to {MAX_HEAD_MOTION_STRENGTH:g} (default 1)")
    parser.add_argument("--mouth_in_silence", default="published", choices=MOUTHS_IN_SILENCE,
                        help="as in inference.py: rest says where the mouth rests and draws the audio's pull under each frame of an MP4")
    parser.add_argument("--seed", type=int, default=42, help="seeds the head motion, as inference.py's --seed")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--insightface_model_path", default="./model_ckpts/insightface_models/", help="the face detector, as in inference.py")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        kind = check_preview_options(args)
        kps, fps, strategy, portrait, mouth_weights = plan_preview(args, say, args.insightface_model_path)
        if kind == "image" and not 0 <= args.frame < len(kps):
            raise PreviewError(f"--frame {args.frame}: the sequence has frames 0..{len(kps) - 1}")
    except (VExpressError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        Image.fromarray(preview_picture(portrait, kps[args.frame])).save(output)
        print(f"wrote {output}: frame {args.frame} of {len(kps)}")
        return 0
    from media.video import write_video

    write_video(output, PreviewFrames(portrait, kps, mouth_weights), fps, args.audio_path)
    print(f"wrote {output}: {len(kps)} frames at {fps:.3f} fps, {strategy}, fit {args.kps_fit}, head motion {args.head_motion}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
