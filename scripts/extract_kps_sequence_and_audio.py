"""A driving video -> its face-keypoint sequence (the published format) and its audio track.

    python scripts/extract_kps_sequence_and_audio.py --video_path talk.mp4 \\
        --kps_sequence_save_path talk_kps.pth --audio_save_path talk_audio.mp3
"""

import argparse
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.checkpoints import atomic_path, save_file  # noqa: E402
from modules.errors import VExpressError  # noqa: E402
from media.face import FaceDetector  # noqa: E402
from media.kps_extraction import extract_kps_sequence  # noqa: E402


class NoAudioTrack(Exception):
    """ffmpeg found no audio stream to copy."""


def extract_audio(video_path: Path, audio_path: Path) -> bool:
    """The video's audio track -> `audio_path` (format from its suffix). False when the video has no sound."""
    try:
        with atomic_path(audio_path) as partial:
            command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(video_path), "-vn", "-map", "0:a:0", str(partial)]
            if subprocess.run(command, capture_output=True, text=True).returncode != 0:
                raise NoAudioTrack
    except NoAudioTrack:
        return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video_path", required=True)
    parser.add_argument("--kps_sequence_save_path", required=True)
    parser.add_argument("--audio_save_path", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--gpu_id", type=int, default=0)
    parser.add_argument("--insightface_model_path", default="./model_ckpts/insightface_models/")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--max_missing_fraction", type=float, default=0.2, help="abort when more frames than this have no face")
    args = parser.parse_args(argv)
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        detector = FaceDetector(args.insightface_model_path, image_size=(args.width, args.height), device=args.device, gpu_id=args.gpu_id)
        extraction = extract_kps_sequence(args.video_path, detector, args.width, args.height, args.max_missing_fraction, report=say)
    except VExpressError as error:
        say(f"error: {error}")
        return 2
    kps_path = save_file(list(extraction.kps), args.kps_sequence_save_path)  # the published format: a list of float32 (3, 2) arrays
    print(f"wrote {kps_path}: {len(extraction.kps)} frames ({len(extraction.missing_frames)} filled)")
    if args.audio_save_path:
        if extract_audio(Path(args.video_path), Path(args.audio_save_path)):
            print(f"wrote {args.audio_save_path}")
        else:
            say(f"note: {args.video_path} has no audio track; keypoints saved, no audio written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
