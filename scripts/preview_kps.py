"""Check a keypoint sequence against a portrait before generating: writes a PNG with the portrait, the V-Kps
image of one frame (what the V-Kps Guider sees: left eye red, right eye green, nose blue), and the two overlaid.

    python scripts/preview_kps.py --reference_image_path test_samples/portrait.png \\
        --kps_path test_samples/kps_sequence.pth --output_path outputs/kps_preview.png
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.kps import KpsError, draw_kps_image, load_kps_sequence  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference_image_path", required=True)
    parser.add_argument("--kps_path", required=True)
    parser.add_argument("--output_path", required=True, help="PNG to write")
    parser.add_argument("--frame", type=int, default=0, help="which keypoint frame to draw")
    parser.add_argument("--image_width", type=int, default=512)
    parser.add_argument("--image_height", type=int, default=512)
    args = parser.parse_args(argv)
    try:
        kps = load_kps_sequence(args.kps_path)
        portrait = np.asarray(Image.open(args.reference_image_path).convert("RGB").resize((args.image_width, args.image_height)))
    except (KpsError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not 0 <= args.frame < len(kps):
        print(f"error: --frame {args.frame}: {args.kps_path} has frames 0..{len(kps) - 1}", file=sys.stderr)
        return 2
    drawing = draw_kps_image(args.image_height, args.image_width, kps[args.frame])
    overlay = np.where(drawing.any(axis=-1, keepdims=True), drawing, portrait // 2 + 64)
    output = Path(args.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([portrait, drawing, overlay], axis=1)).save(output)
    print(f"wrote {output}: frame {args.frame} of {len(kps)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
