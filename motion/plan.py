"""The keypoints a video is drawn from: the driving sequence fitted to the video's length, retargeted onto the
portrait, with an optional speech-driven head motion on top. inference.py and scripts/preview_kps.py both call
`plan_keypoints`, so the preview shows exactly what will be generated."""

import math

import numpy as np
import torch

from pipelines.speech import SAMPLING_RATE
from motion.head_motion import add_head_motion
from motion.keypoints import resample_kps_sequence
from motion.retarget import RETARGET_STRATEGIES, retarget_kps

KPS_FITS = ("stretch", "loop", "pingpong", "cut")
HEAD_MOTIONS = ("none", "natural")
LOOP_CROSSFADE_FRAMES = 6  # a loop's end blends into its start over this many frames (0.2 s at 30 fps)
MAX_HEAD_MOTION_STRENGTH = 3.0  # beyond this the small-turn head model stops looking like a head


def loop_kps_sequence(kps: torch.Tensor, num_frames: int, crossfade: int = LOOP_CROSSFADE_FRAMES) -> torch.Tensor:
    """(N, 3, 2) -> (num_frames, 3, 2): the driver played at its own speed, over and over. The first pass plays
    frames 0 .. N-c-1; every later pass starts with c frames that cross-fade the driver's last c frames into its
    first c (weights 1/(c+1) .. c/(c+1) on the first), then plays frames c .. N-c-1. So no frame jumps by more than a
    driving step plus 1/(c+1) of the gap between the driver's end and start. c is at most (N - 1) // 2."""
    crossfade = min(crossfade, (len(kps) - 1) // 2)
    head, tail = kps[:crossfade], kps[len(kps) - crossfade:]
    weights = (torch.arange(1, crossfade + 1, dtype=kps.dtype) / (crossfade + 1))[:, None, None]
    period = torch.cat([tail + weights * (head - tail), kps[crossfade: len(kps) - crossfade]])
    repeats = math.ceil(max(num_frames - len(period), 0) / len(period))
    return torch.cat([kps[: len(kps) - crossfade], period.repeat(repeats, 1, 1)])[:num_frames]


def pingpong_kps_sequence(kps: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(N, 3, 2) -> (num_frames, 3, 2): the driver played forwards, then backwards, and so on: 0 .. N-1 .. 0 .. N-1."""
    if len(kps) == 1:
        return kps.expand(num_frames, 3, 2).clone()
    position = torch.arange(num_frames) % (2 * (len(kps) - 1))
    return kps[torch.where(position < len(kps), position, 2 * (len(kps) - 1) - position)]


def fit_kps_sequence(kps, num_frames: int, fit: str = "stretch") -> torch.Tensor:
    """A driving sequence (N, 3, 2) -> (num_frames, 3, 2) float32. A driver at least num_frames long gives its first
    num_frames in every fit. A shorter one is, by fit: stretch, slowed down linearly to the length (the published
    behaviour); loop, repeated at its own speed with a cross-faded seam; pingpong, played back and forth; cut,
    its frames as they are and then, when they run out, the same as loop."""
    if fit not in KPS_FITS:
        raise ValueError(f"unknown keypoint fit {fit!r}; choose one of {', '.join(KPS_FITS)}")
    if fit == "stretch":
        return resample_kps_sequence(kps, num_frames)
    kps = torch.as_tensor(np.asarray(kps, dtype=np.float32))
    if len(kps) >= num_frames:
        return kps[:num_frames].clone()
    return pingpong_kps_sequence(kps, num_frames) if fit == "pingpong" else loop_kps_sequence(kps, num_frames)


def _check_plan_arguments(reference_kps, driving_kps, num_frames, strategy, kps_fit, head_motion, strength, waveform, sampling_rate, fps):
    """ValueError naming the first argument plan_keypoints cannot use."""
    for value, choices, what in ((strategy, RETARGET_STRATEGIES, "retarget strategy"), (kps_fit, KPS_FITS, "keypoint fit"),
                                 (head_motion, HEAD_MOTIONS, "head motion")):
        if value not in choices:
            raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, not {num_frames!r}")
    if strategy != "fix_face" and driving_kps is None:
        raise ValueError(f"retarget strategy {strategy} needs driving keypoints")
    if driving_kps is not None and (np.ndim(driving_kps) != 3 or tuple(np.shape(driving_kps)[1:]) != (3, 2) or len(driving_kps) == 0):
        raise ValueError(f"driving keypoints must be (frames, 3, 2), not {tuple(np.shape(driving_kps))}")
    if strategy != "no_retarget" and (reference_kps is None or tuple(np.shape(reference_kps)) != (3, 2)):
        shape = None if reference_kps is None else tuple(np.shape(reference_kps))
        raise ValueError(f"retarget strategy {strategy} needs the reference keypoints (3, 2), not {shape}")
    if head_motion == "natural":
        if waveform is None or len(waveform) == 0:
            raise ValueError("head motion 'natural' needs the waveform of the speech")
        if not 0 <= strength <= MAX_HEAD_MOTION_STRENGTH:  # also refuses NaN
            raise ValueError(f"head motion strength must be between 0 and {MAX_HEAD_MOTION_STRENGTH:g}, not {strength}")
        if not (sampling_rate > 0 and fps > 0):
            raise ValueError(f"sampling_rate ({sampling_rate}) and fps ({fps}) must be positive")


def plan_keypoints(
    reference_kps, driving_kps, num_frames: int, *, strategy: str, kps_fit: str = "stretch", head_motion: str = "none",
    head_motion_strength: float = 1.0, waveform=None, sampling_rate: int = SAMPLING_RATE, fps: float = 30.0, seed: int = 42,
) -> torch.Tensor:
    """-> (num_frames, 3, 2) float32 keypoints (pixels) to draw, frame k at time k / fps of `waveform`.

    reference_kps: (3, 2), the portrait's; only no_retarget may go without. driving_kps: (N, 3, 2) or None (fix_face).
    The driver is fitted to num_frames by `kps_fit` (fit_kps_sequence), retargeted by `strategy` (retarget_kps),
    then, with head_motion "natural", moved by the head motion of `waveform` (mono, `sampling_rate`), scaled by
    `head_motion_strength` and seeded by `seed` (motion.head_motion). With the defaults this is exactly what the
    published pipeline draws. Raises ValueError for arguments it cannot use."""
    _check_plan_arguments(
        reference_kps, driving_kps, num_frames, strategy, kps_fit, head_motion, head_motion_strength, waveform, sampling_rate, fps)
    fitted = fit_kps_sequence(driving_kps, num_frames, kps_fit) if driving_kps is not None else None
    kps = retarget_kps(reference_kps, fitted, strategy, num_frames=num_frames)
    if head_motion == "natural":
        kps = add_head_motion(kps, waveform, sampling_rate, fps, head_motion_strength, seed)
    return kps
