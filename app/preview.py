"""The keypoint preview (scripts/preview_kps.py, and the web UI's): the frames inference.py would draw, planned
by the same `plan_video_keypoints`, drawn over the portrait."""

import functools
from pathlib import Path

import numpy as np
from PIL import Image

from modules.errors import VExpressError

from media.audio import load_audio
from pipelines.speech import SAMPLING_RATE
from pipelines.context import num_frames_for_audio, video_length
from media.face import FaceDetector, portrait_check_tasks
from media.voice_activity import mouth_rest_weights
from app.generation import plan_video_keypoints, prepare_portrait
from motion.keypoints import draw_kps_image, hand_placed_kps, load_kps_sequence
from motion.plan import MAX_HEAD_MOTION_STRENGTH

IMAGE_SUFFIXES, VIDEO_SUFFIXES = (".png", ".jpg", ".jpeg"), (".mp4",)


class PreviewError(VExpressError):
    """Options that cannot make a preview."""


def overlay(portrait: np.ndarray, drawing: np.ndarray) -> np.ndarray:
    """The V-Kps drawing (H, W, 3) over the portrait (H, W, 3), dimmed so that the drawing stands out."""
    return np.where(drawing.any(axis=-1, keepdims=True), drawing, portrait // 2 + 64)


def preview_picture(portrait: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """One frame's preview (H, 3W, 3) uint8: the portrait, the V-Kps image of `kps` (3, 2), and the two overlaid."""
    drawing = draw_kps_image(portrait.shape[0], portrait.shape[1], kps)
    return np.concatenate([portrait, drawing, overlay(portrait, drawing)], axis=1)


class PreviewFrames:
    """The MP4's frames, each (H, 2W, 3) uint8: the V-Kps image beside its overlay (with --mouth_in_silence rest, a
    green bar under the V-Kps image as long as the audio's pull on the mouth). Drawn one by one as the
    writer iterates, so that a preview of a long speech never holds every frame in memory."""

    def __init__(self, portrait: np.ndarray, kps_sequence: np.ndarray, mouth_weights: np.ndarray | None = None):
        self.portrait, self.kps_sequence, self.mouth_weights = portrait, kps_sequence, mouth_weights

    def __len__(self) -> int:
        return len(self.kps_sequence)

    def __getitem__(self, index: int) -> np.ndarray:
        height, width = self.portrait.shape[:2]
        drawing = draw_kps_image(height, width, self.kps_sequence[index])
        if self.mouth_weights is not None:  # --mouth_in_silence rest: a bar along the bottom, as long as the audio's pull
            drawing[-max(height // 64, 2):, :int(round(width * float(self.mouth_weights[index])))] = (0, 200, 0)
        return np.concatenate([drawing, overlay(self.portrait, drawing)], axis=1)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def check_preview_options(args) -> str:
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


def plan_preview(args, say, face_model_path):
    """(keypoints (L, 3, 2) to draw, frames per second, the strategy used, the portrait (H, W, 3) uint8 they are drawn
    over, the audio's pull on the mouth per frame (L,) or None): the frames inference.py would draw for the same
    settings (`args`: preview_kps.py's flags, or a request; with --paste_back the portrait is the crop the face is
    generated from); `face_model_path` the detector's folder. With --mouth_in_silence rest the weights come from
    the same voice-activity detection as generation's."""
    driving_kps = load_kps_sequence(args.kps_path) if args.kps_path else None
    waveform, fps = None, args.fps
    if args.audio_path:
        waveform = load_audio(args.audio_path, SAMPLING_RATE)
        duration = len(waveform) / SAMPLING_RATE
        windows = {name: getattr(args, name) for name in ("context_frames", "context_overlap") if hasattr(args, name)}  # inference.py's
        num_frames = video_length(num_frames_for_audio(duration, args.fps), **windows)
        fps = num_frames / duration  # as inference.py writes it: the frames span the speech
    else:
        num_frames = len(driving_kps)
    hand_kps = None
    if args.reference_kps:
        with Image.open(args.reference_image_path) as photo:
            hand_kps = hand_placed_kps(args.reference_kps, photo.size)
    size = (args.image_width, args.image_height)
    detector = functools.cache(lambda detect_size=None: FaceDetector(face_model_path, image_size=detect_size or size,
                                                                      tasks=portrait_check_tasks(face_model_path)))
    portrait, hand_kps, _ = prepare_portrait(args, hand_kps, detector)
    kps, strategy = plan_video_keypoints(args, portrait, driving_kps, waveform, num_frames, fps, detector, say, hand_kps)
    mouth_weights = None
    if getattr(args, "mouth_in_silence", "published") == "rest" and waveform is not None:
        mouth_weights = mouth_rest_weights(waveform.numpy(), num_frames, fps, say)
    return kps.numpy(), fps, strategy, np.asarray(portrait.resize(size)), mouth_weights
