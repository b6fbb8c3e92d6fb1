"""Face keypoints: sequence files, resampling to the video length, and V-Kps images (retargeting: motion/retarget.py).

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


def hand_placed_kps(value: str, portrait_size: tuple[int, int]) -> np.ndarray:
    """--reference_kps -> float32 (3, 2) in the portrait's own pixels (checked to lie in the portrait of
    `portrait_size` (width, height)). `value` is "x1,y1,x2,y2,x3,y3" (left eye, right eye, nose) or a JSON file holding
    [[x, y], [x, y], [x, y]] or {"left_eye": [x, y], "right_eye": [x, y], "nose": [x, y]}."""
    source = f"--reference_kps {value}"
    try:
        if value.strip().lower().endswith(".json"):
            source = value
            data = json.loads(Path(value).read_text())
            if isinstance(data, dict):
                data = [data["left_eye"], data["right_eye"], data["nose"]]
        else:
            data = [float(number) for number in value.replace(" ", "").split(",")]
        kps = np.asarray(data, dtype=np.float64).reshape(3, 2)
    except FileNotFoundError:
        raise KpsError(f"{value}: keypoint file not found") from None
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise KpsError(f"{source}: not three points ({first_line(error)}); give \"x1,y1,x2,y2,x3,y3\" (left eye, right eye, "
                       "nose in the portrait's pixels) or a JSON file of [[x, y], [x, y], [x, y]]") from None
    inside = np.isfinite(kps).all() and (kps >= 0).all() and (kps < np.asarray(portrait_size)).all()
    if not inside:
        raise KpsError(f"{source}: a point lies outside the {portrait_size[0]}x{portrait_size[1]} portrait; give its pixels, "
                       "(0, 0) at the top left")
    return kps.astype(np.float32)


def resample_kps_sequence(kps: np.ndarray | torch.Tensor, num_frames: int) -> torch.Tensor:
    """(N, 3, 2) -> (num_frames, 3, 2): keep the first `num_frames`, then stretch linearly along time."""
    kps = torch.as_tensor(np.asarray(kps, dtype=np.float32))[:num_frames]
    return F.interpolate(kps.permute(1, 2, 0), size=num_frames, mode="linear").permute(2, 0, 1)


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
