"""A folder of talking-head videos -> V-Express training data (training.md): for each clip a face-info file
and an audio-embedding file, and the meta JSON that training_configs/*.yaml list under data.meta_paths.

    python scripts/prepare_dataset/prepare_dataset.py --videos_dir my_clips/ --output_dir data/my_clips/
    python scripts/prepare_dataset/prepare_dataset.py --check --meta_path data/my_clips/meta.json

Run it again after an interruption: finished clips are not redone. Clips without exactly one face in every
frame, or without sound, are skipped with the reason (kept in OUTPUT_DIR/skipped.json).
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.prepare_dataset.data_preparation import check_dataset, format_check_table, prepare_dataset  # noqa: E402
from modules.errors import VExpressError, first_line  # noqa: E402
from training.dataset_files import DatasetError  # noqa: E402
from media.face import FaceDetector, FaceError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos_dir", help="folder of clips (.mp4, .mov, .mkv, .avi, .webm), one speaker each")
    parser.add_argument("--output_dir", help="where face_info/, audio_embeds/ and meta.json go")
    parser.add_argument("--meta_path", help="the meta JSON (default OUTPUT_DIR/meta.json)")
    parser.add_argument("--check", action="store_true", help="only verify the dataset listed in --meta_path and print a table")
    parser.add_argument("--insightface_model_path", default="./model_ckpts/insightface_models/")
    parser.add_argument("--audio_encoder_path", default="./model_ckpts/wav2vec2-base-960h/")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gpu_id", type=int, default=0)
    parser.add_argument("--det_size", type=int, default=512, help="face-detector input size in pixels (the published 512)")
    args = parser.parse_args(argv)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    if args.check:
        if not args.meta_path:
            parser.error("--check needs --meta_path")
        try:
            checks = check_dataset(args.meta_path)
        except VExpressError as error:
            say(f"error: {error}")
            return 2
        print(format_check_table(checks))
        bad = sum(bool(c.problems) for c in checks)
        print(f"{len(checks) - bad} of {len(checks)} clips ok")
        return 1 if bad else 0
    if not (args.videos_dir and args.output_dir):
        parser.error("give --videos_dir and --output_dir (or --check --meta_path)")
    if not Path(args.videos_dir).is_dir():
        say(f"error: {args.videos_dir}: no such folder")
        return 2
    meta_path = Path(args.meta_path or Path(args.output_dir) / "meta.json")
    device = torch.device(f"cuda:{args.gpu_id}" if args.device.startswith("cuda") else args.device)
    try:
        detector = FaceDetector(
            args.insightface_model_path, image_size=(args.det_size, args.det_size), device=args.device, gpu_id=args.gpu_id,
            tasks=None,
        )
        if "landmark_2d_106" not in detector.tasks:
            raise FaceError(f"{args.insightface_model_path}: no landmark_2d_106 model (buffalo_l's 2d106det.onnx); training needs it for lip masks")
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        try:
            audio_processor = Wav2Vec2FeatureExtractor.from_pretrained(args.audio_encoder_path)
            audio_encoder = Wav2Vec2Model.from_pretrained(args.audio_encoder_path).to(device).eval()
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"{args.audio_encoder_path}: cannot load wav2vec2 ({first_line(error)}); "
                "download it with: python scripts/download_models.py --include wav2vec2-base-960h"
            ) from None
        result = prepare_dataset(args.videos_dir, args.output_dir, meta_path, detector, audio_processor, audio_encoder, report=say)
    except VExpressError as error:
        say(f"error: {error}")
        return 2
    print(
        f"{len(result.prepared)} clips prepared, {len(result.already_done)} already done, {len(result.skipped)} skipped; "
        f"meta: {meta_path}"
    )
    for name, reason in result.skipped.items():
        print(f"  skipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
