"""Face keypoints: sequence files, resampling to the video length, retargeting, and V-Kps images.

A keypoint triple is (3, 2) float pixels: left eye, right eye, nose tip, each (x, y)."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from modules.checkpoints import numpy_allowlist
from modules.errors import VExpressError, first_line
from pipelines.retarget import similarity_retarget

RETARGET_STRATEGIES = ("fix_face", "no_retarget", "offset_retarget", "naive_retarget", "similarity_retarget")
KPS_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # RGB of left eye, right eye, nose
LEFT_EYE, RIGHT_EYE, NOSE = 0, 1, 2


class KpsError(VExpressError):
    """A keypoint sequence that cannot be used, with a message for the user."""


def load_kps_sequence(path: str | Path) -> np.ndarray:
    """A keypoint sequence file -> float32 (N, 3, 2). Accepts the published format (`torch.save` of a list of
    float32 (3, 2) arrays), a tensor or array (N, 3, 2), `.npy`, `.npz` and `.json`; never unpickles other objects."""
    path = Path(path)
    if not path.is_file():
        raise KpsError(f"{path}: keypoint file not found")
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                data = archive[archive.files[0]]
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            with torch.serialization.safe_globals(numpy_allowlist()):
                data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise KpsError(
            f"{path}: not a readable keypoint sequence ({first_line(error, path)}); expected a torch.save'd list "
            "of (3, 2) float arrays, or .npy/.npz/.json; make one with scripts/extract_kps_sequence_and_audio.py"
        ) from None
    try:
        if isinstance(data, (list, tuple)):
            data = [item.numpy() if isinstance(item, torch.Tensor) else item for item in data]
        kps = np.asarray(data.numpy() if isinstance(data, torch.Tensor) else data, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise KpsError(f"{path}: keypoint frames have different shapes ({error}); each must be (3, 2)") from None
    if kps.ndim != 3 or kps.shape[1:] != (3, 2) or len(kps) == 0:
        raise KpsError(f"{path}: keypoint sequence has shape {kps.shape}; expected (frames, 3, 2): left eye, right eye, nose as (x, y)")
    if not np.isfinite(kps).all():
        raise KpsError(f"{path}: keypoint sequence contains NaN or infinite values (frames {np.flatnonzero(~np.isfinite(kps).all(axis=(1, 2)))[:5].tolist()})")
    return kps


def resample_kps_sequence(kps: np.ndarray | torch.Tensor, num_frames: int) -> torch.Tensor:
    """(N, 3, 2) -> (num_frames, 3, 2): keep the first `num_frames`, then stretch linearly along time."""
    kps = torch.as_tensor(np.asarray(kps, dtype=np.float32))[:num_frames]
    return F.interpolate(kps.permute(1, 2, 0), size=num_frames, mode="linear").permute(2, 0, 1)


def eye_nose_ratio(kps: torch.Tensor) -> torch.Tensor:
    """|left eye - nose| / |right eye - nose|: how far the face is turned. kps (..., 3, 2) -> (...)."""
    return (kps[..., LEFT_EYE, :] - kps[..., NOSE, :]).norm(dim=-1) / ((kps[..., RIGHT_EYE, :] - kps[..., NOSE, :]).norm(dim=-1) + 1e-6)


def _eye_distance(kps):
    return (kps[..., LEFT_EYE, :] - kps[..., RIGHT_EYE, :]).norm(dim=-1)


def _nose_to_eye_line(kps):
    """Distance from the nose to the segment between the eyes."""
    left, right, nose = kps[..., LEFT_EYE, :], kps[..., RIGHT_EYE, :], kps[..., NOSE, :]
    segment = right - left
    along = (((nose - left) * segment).sum(-1) / (segment * segment).sum(-1)).clamp(0, 1)
    return (nose - (left + along[..., None] * segment)).norm(dim=-1)


def closest_pose_frame(reference_kps: torch.Tensor, driving_kps: torch.Tensor) -> int:
    """The driving frame whose eye-nose ratio is closest to the reference's."""
    return int((eye_nose_ratio(driving_kps) - eye_nose_ratio(reference_kps)).abs().argmin())


def retarget_kps(reference_kps, driving_kps, strategy: str, num_frames: int | None = None) -> torch.Tensor:
    """(reference (3, 2), driving (L, 3, 2)) -> the L keypoint triples to draw, by strategy:
    fix_face: the reference, still; no_retarget: the driving sequence as it is;
    offset_retarget: the reference moved by half of the driving nose's (rescaled) displacement, inverted,
        as the published code does; naive_retarget: the rescaled driving sequence moved so that its
        first nose lands on the reference nose; similarity_retarget: the driver's roll, relative scale and
        translation (in face sizes) and its turns applied to the reference, which keeps its proportions
        (pipelines.retarget)."""
    reference_kps = torch.as_tensor(np.asarray(reference_kps, dtype=np.float32))
    if strategy == "fix_face":
        return reference_kps.expand(num_frames if num_frames is not None else len(driving_kps), 3, 2).clone()
    driving_kps = torch.as_tensor(np.asarray(driving_kps, dtype=np.float32))
    if strategy == "no_retarget":
        return driving_kps.clone()
    if strategy == "similarity_retarget":
        return similarity_retarget(reference_kps, driving_kps)
    if strategy not in RETARGET_STRATEGIES:
        raise ValueError(f"unknown retarget strategy {strategy!r}; choose one of {', '.join(RETARGET_STRATEGIES)}")
    anchor = driving_kps[closest_pose_frame(reference_kps, driving_kps)]
    scale = torch.stack([_eye_distance(reference_kps) / _eye_distance(anchor), _nose_to_eye_line(reference_kps) / _nose_to_eye_line(anchor)])
    scaled = driving_kps * scale
    if strategy == "offset_retarget":
        nose_motion = scaled[:, NOSE] - scaled[0, NOSE]
        return reference_kps - nose_motion[:, None, :] / 2
    return scaled - scaled[0, NOSE] + reference_kps[NOSE]


def draw_kps_image(height: int, width: int, kps) -> np.ndarray:
    """One V-Kps image (height, width, 3) uint8 RGB: a limb from each eye to the nose (a filled ellipse in
    0.6 x the eye's colour), then a dot of radius 4 on each point."""
    kps = np.asarray(kps, dtype=np.float32)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for eye in (LEFT_EYE, RIGHT_EYE):
        x, y = kps[[eye, NOSE], 0], kps[[eye, NOSE], 1]
        length = ((x[0] - x[1]) ** 2 + (y[0] - y[1]) ** 2) ** 0.5
        angle = int(math.degrees(math.atan2(y[0] - y[1], x[0] - x[1])))
        polygon = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), 4), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(channel * 0.6) for channel in KPS_COLOURS[eye]])
    for point, colour in zip(kps, KPS_COLOURS):
        cv2.circle(canvas, (int(point[0]), int(point[1])), 4, colour, -1)
    return canvas


class KpsImages:
    """The V-Kps images of a keypoint sequence (L, 3, 2), drawn when asked for: `images[i]` is frame i's
    (height, width, 3) uint8 image. The pipeline reads one context window at a time, so the images of a long
    video never exist all at once."""

    def __init__(self, kps_sequence, height: int, width: int):
        self.kps_sequence = np.asarray(kps_sequence, dtype=np.float32)
        self.height, self.width = height, width

    def __len__(self) -> int:
        return len(self.kps_sequence)

    def __getitem__(self, index: int) -> np.ndarray:
        return draw_kps_image(self.height, self.width, self.kps_sequence[index])
