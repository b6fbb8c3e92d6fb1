"""FID and FVD: how far the generated videos, as a set, lie from their ground truth in an image and a video network's
feature space.

The protocol, which papers seldom state:
- FID: every frame of every video, the whole frame, RGB, resized to 299 x 299 (bilinear, as pytorch-fid does) from
  [0, 1]; the pool3 features (2048) of pytorch-fid's Inception weights (`pt_inception-2015-12-05-6726825d.pth`);
  one Fréchet distance between all generated frames and all ground-truth frames.
- FVD: each video cut into consecutive 16-frame clips from its first frame (a tail shorter than 16 frames is left
  out); each frame's shorter side resized to 224 (bilinear) and centre-cropped to 224 x 224, scaled to [-1, 1]; the
  Kinetics-400 logits (400) of I3D as VideoGPT publishes it (`i3d_pretrained_400.pt`), as in
  common_metrics_on_video_quality's `videogpt` method; one Fréchet distance between all clips.
- Frames are decoded at the video's own rate by imageio-ffmpeg's ffmpeg, one at a time (memory does not grow with
  the length). Both need at least two frames (FID) or clips (FVD) on each side; more than the features' dimension
  (2048 frames, 400 clips) for a full-rank estimate."""

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.i3d import CLASSES, CLIP_FRAMES, CLIP_SIZE, I3D
from evaluation.inception_fid import FIDInceptionV3
from evaluation.weights import load_strict
from media.video import VideoFrames

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
I3D_FILE = "i3d_pretrained_400.pt"
WEIGHT_FILES = {"fid": INCEPTION_FILE, "fvd": I3D_FILE}
BATCH_FRAMES = 16  # Inception batch; one FVD clip is 16 frames


def load_network(metric: str, weights_dir: str | Path) -> FIDInceptionV3 | I3D:
    """"fid" -> the Inception, "fvd" -> the I3D, read weights-only and strictly. Raises MissingWeightsError /
    WeightsError naming the file and the download command."""
    network = FIDInceptionV3() if metric == "fid" else I3D()
    return load_strict(network, Path(weights_dir) / WEIGHT_FILES[metric])


class DistributionNetworks:
    """The Inception (FID) and the I3D (FVD); either may be None (that metric is skipped)."""

    def __init__(self, inception: FIDInceptionV3 | None, i3d: I3D | None, device: str = "cpu"):
        self.device = torch.device(device)
        self.inception = None if inception is None else inception.to(self.device).eval()
        self.i3d = None if i3d is None else i3d.to(self.device).eval()
        self.metrics = tuple(name for name, network in (("fid", inception), ("fvd", i3d)) if network is not None)

    @torch.no_grad()
    def video_features(self, path: str | Path) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A video file -> (Inception features (frames, 2048) or None, I3D logits (clips, 400) or None), decoding it
        once. Raises VideoError naming the file."""
        frames, clips, batch, clip = [], [], [], []
        for rgb in VideoFrames(path):
            pixels = frame_pixels(rgb)
            if self.inception is not None:
                batch.append(pixels)
                if len(batch) == BATCH_FRAMES:
                    frames.append(self._inception(batch))
                    batch = []
            if self.i3d is not None:
                clip.append(pixels)
                if len(clip) == CLIP_FRAMES:
                    clips.append(self.i3d(fvd_clip(torch.stack(clip).to(self.device))).cpu().numpy())
                    clip = []
        if batch:
            frames.append(self._inception(batch))
        fid_features = np.concatenate(frames) if frames else None
        fvd_features = None if self.i3d is None else np.concatenate(clips) if clips else np.zeros((0, CLASSES), np.float32)
        return fid_features, fvd_features

    def _inception(self, batch: list[torch.Tensor]) -> np.ndarray:
        return self.inception(torch.stack(batch).to(self.device)).cpu().numpy()


def frame_pixels(rgb: np.ndarray) -> torch.Tensor:
    """A decoded frame (H, W, 3) uint8 RGB -> (3, H, W) float in [0, 1], what both networks are handed."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div_(255)  # a copy: decoded frames are read-only


def fvd_clip(frames: torch.Tensor) -> torch.Tensor:
    """16 frames (16, 3, H, W) in [0, 1] -> the I3D's input (1, 3, 16, 224, 224) in [-1, 1]: the shorter side resized
    to 224 (bilinear), the centre cropped."""
    _, _, height, width = frames.shape
    scale = CLIP_SIZE / min(height, width)
    size = (CLIP_SIZE, math.ceil(width * scale)) if height < width else (math.ceil(height * scale), CLIP_SIZE)
    resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (resized.shape[2] - CLIP_SIZE) // 2, (resized.shape[3] - CLIP_SIZE) // 2
    return resized[:, :, top:top + CLIP_SIZE, left:left + CLIP_SIZE].transpose(0, 1)[None] * 2 - 1
