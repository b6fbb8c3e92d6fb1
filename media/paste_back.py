"""--paste_back: the face is generated from a square crop of the photo, and each generated frame is pasted back into
the photo with a feathered edge, so the video keeps the whole picture at its own size and aspect ratio.

All coordinates are in the canvas's pixels: the photo scaled to fit --max_output_side, with even sides (H.264)."""

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# The crop's side over the face box's larger side. V-Express's portraits show the head with some shoulder; the
# margin is also the room the head has to move in (driving keypoints and --head_motion move it inside the crop).
CROP_SCALE = 2.4
FEATHER = 0.1  # the blend's soft border, a fraction of the crop's side: no seam where the frame meets the photo
HAND_FACE_SIZE = 2.2  # a face box around hand-placed keypoints: this many eye distances wide and high


def canvas_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) of the video for a photo of width x height: scaled down to fit `max_side`, then even."""
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def detection_size(size: tuple[int, int], largest: int = 1280) -> tuple[int, int]:
    """The detector's input for finding the face in a whole canvas of `size`: its own size (sides rounded up to the
    detector's stride, 32), at most `largest` a side: a small face in a large photo stays large enough to find."""
    return tuple(min(largest, -(-side // 32) * 32) for side in size)


def face_box_from_kps(kps: np.ndarray) -> np.ndarray:
    """A face box (x1, y1, x2, y2) around left eye, right eye and nose (3, 2): HAND_FACE_SIZE eye distances square."""
    centre, half = kps.mean(axis=0), HAND_FACE_SIZE * float(np.linalg.norm(kps[1] - kps[0])) / 2
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


@dataclass
class PasteBack:
    canvas: np.ndarray  # (H, W, 3) uint8: the photo at the video's size
    x: int  # the square crop's left, top and side in the canvas
    y: int
    side: int

    @classmethod
    def around(cls, canvas: np.ndarray, face_box: np.ndarray) -> "PasteBack":
        """The crop centred on `face_box` (x1, y1, x2, y2 in the canvas), CROP_SCALE times its larger side, kept
        inside the canvas (smaller when the canvas is)."""
        height, width = canvas.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in face_box)
        side = int(min(round(CROP_SCALE * max(x2 - x1, y2 - y1)), width, height))
        x = int(np.clip(round((x1 + x2 - side) / 2), 0, width - side))
        y = int(np.clip(round((y1 + y2 - side) / 2), 0, height - side))
        return cls(canvas, x, y, side)

    def crop(self) -> Image.Image:
        """The square crop of the canvas: the portrait the face is generated from."""
        return Image.fromarray(self.canvas[self.y:self.y + self.side, self.x:self.x + self.side])

    def to_crop(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """Canvas points (..., 2) -> the same points in the crop resized to width x height (the model's frame)."""
        return ((np.asarray(points, np.float64) - [self.x, self.y]) * [width / self.side, height / self.side]).astype(np.float32)

    def weights(self) -> np.ndarray:
        """(side, side, 1) float32: 1 inside, falling linearly to 0 over the border, where the photo takes over."""
        border = max(2.0, FEATHER * self.side)
        ramp = np.clip((np.minimum(np.arange(self.side), np.arange(self.side)[::-1]) + 0.5) / border, 0, 1)
        return np.minimum(ramp[:, None], ramp[None, :])[..., None].astype(np.float32)

    def frames(self, frames):
        """Generated frames (h, w, 3) uint8 -> canvas frames (H, W, 3) uint8, one at a time."""
        weights = self.weights()
        region = self.canvas[self.y:self.y + self.side, self.x:self.x + self.side].astype(np.float32)
        for frame in frames:
            face = cv2.resize(frame, (self.side, self.side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            composed = self.canvas.copy()
            composed[self.y:self.y + self.side, self.x:self.x + self.side] = np.rint(weights * face + (1 - weights) * region).astype(np.uint8)
            yield composed
