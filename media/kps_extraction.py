"""Keypoint sequences from driving videos: one (3, 2) triple per frame, gaps filled."""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from media.face import FaceDetector, FaceError
from media.video import VideoError, VideoFrames


@dataclass
class KpsExtraction:
    kps: np.ndarray  # (frames, 3, 2) float32: left eye, right eye, nose
    missing_frames: list[int] = field(default_factory=list)  # no face found: filled by interpolation
    multi_face_frames: list[int] = field(default_factory=list)  # several faces: the one that continues the track kept


def _pick_face(faces, previous_centre):
    """The face closest to the previous frame's, or the largest (faces come largest first)."""
    if previous_centre is None:
        return faces[0]
    centres = [np.array([(f.bbox[0] + f.bbox[2]) / 2, (f.bbox[1] + f.bbox[3]) / 2]) for f in faces]
    return faces[int(np.argmin([np.linalg.norm(c - previous_centre) for c in centres]))]


def fill_missing(kps: list, video_path) -> np.ndarray:
    """Frames without keypoints (None) take values interpolated linearly from their neighbours in time."""
    found = [i for i, k in enumerate(kps) if k is not None]
    if not found:
        raise FaceError(f"{video_path}: no face found in any frame")
    known = np.stack([kps[i] for i in found]).reshape(len(found), -1)
    frames = np.arange(len(kps))
    filled = np.stack([np.interp(frames, found, known[:, j]) for j in range(known.shape[1])], axis=1)
    return filled.reshape(len(kps), 3, 2).astype(np.float32)


def extract_kps_sequence(video_path, detector: FaceDetector, width: int, height: int, max_missing_fraction: float = 0.2, report=print) -> KpsExtraction:
    """Every frame resized to width x height; the first three detector keypoints of the tracked face."""
    video_path = Path(video_path)
    if not video_path.is_file():
        raise FaceError(f"{video_path}: video not found")
    kps, missing, multi, previous_centre = [], [], [], None
    try:
        video = VideoFrames(video_path)
        for index, rgb in enumerate(tqdm(video, total=video.expected_frames, desc="keypoints", unit="frame", leave=False)):
            faces = detector.faces(cv2.cvtColor(cv2.resize(rgb, (width, height)), cv2.COLOR_RGB2BGR))
            if not faces:
                kps.append(None)
                missing.append(index)
                continue
            if len(faces) > 1:
                multi.append(index)
            face = _pick_face(faces, previous_centre)
            previous_centre = np.array([(face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2])
            kps.append(face.kps[:3].astype(np.float32))
    except VideoError as error:
        raise FaceError(str(error)) from None
    if len(missing) > max_missing_fraction * len(kps):
        raise FaceError(
            f"{video_path}: no face in {len(missing)} of {len(kps)} frames (more than {max_missing_fraction:.0%}); "
            "use a video where the face stays visible, or raise the threshold"
        )
    if missing:
        report(f"note: {video_path}: no face in {len(missing)} of {len(kps)} frames (e.g. {missing[:5]}); filled by interpolation")
    if multi:
        report(f"note: {video_path}: several faces in {len(multi)} frames; kept the one that continues the track")
    return KpsExtraction(fill_missing(kps, video_path), missing, multi)
