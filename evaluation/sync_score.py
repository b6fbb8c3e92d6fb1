"""Sync-C / Sync-D (LSE-C / LSE-D) of a face-crop video, as SyncNetInstance.evaluate computes them.

A video feature per 5-frame window and an audio feature per 0.2 s of MFCC are compared at shifts of
-vshift..vshift frames; the shift with the smallest mean distance is the AV offset, that distance the min dist
(Sync-D, lower is better) and its margin below the median distance the confidence (Sync-C, higher is better)."""

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal

from evaluation import ffmpeg, tracking
from evaluation.syncnet import SyncNet
from evaluation.errors import EvaluationError

SAMPLE_RATE = 16000
FPS = 25
WINDOW_FRAMES = 5  # video frames a lip feature sees
MFCC_STEPS_PER_FRAME = 4  # MFCC runs at 100 Hz, video at 25 fps
WINDOW_MFCC_STEPS = 20  # MFCC steps an audio feature sees (0.2 s, the same span as 5 frames)


def mfcc(audio_int16: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features' MFCC with its defaults (13 cepstra, 25 ms windows every 10 ms): (13, steps) float64."""
    import python_speech_features

    return python_speech_features.mfcc(audio_int16, sample_rate).T


def calc_pdist(video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """(T, D) video and (T, D) audio features -> (T, 2 * vshift + 1) distances: row t holds frame t's video
    feature against the audio features of frames t - vshift .. t + vshift (zero vectors past either end)."""
    padded = F.pad(audio_feat, (0, 0, vshift, vshift))
    windows = torch.arange(len(video_feat))[:, None] + torch.arange(2 * vshift + 1)[None]
    return F.pairwise_distance(video_feat[:, None, :].expand(-1, windows.shape[1], -1), padded[windows])


@dataclass
class SyncScores:
    """One face track's scores. `dists` (frames, 2 * vshift + 1) and `framewise_confidence` (frames,) are per
    5-frame window; `mean_dists` (2 * vshift + 1,) per shift."""

    offset: int
    confidence: float
    min_dist: float
    mean_dists: np.ndarray
    framewise_confidence: np.ndarray
    dists: np.ndarray


def score_features(video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int = 15) -> SyncScores:
    """The scoring of SyncNetInstance.evaluate on given (T, D) features."""
    dists = calc_pdist(video_feat, audio_feat, vshift)
    mean_dists = dists.t().contiguous().mean(1)  # shift-major, as the official stacks them
    min_dist, best = torch.min(mean_dists, 0)
    median = torch.median(mean_dists)  # the lower median for an even count, as torch.median gives
    framewise = median.numpy() - dists[:, best].numpy()
    return SyncScores(
        offset=int(vshift - best), confidence=float(median - min_dist), min_dist=float(min_dist),
        mean_dists=mean_dists.numpy(), framewise_confidence=signal.medfilt(framewise, kernel_size=9), dists=dists.numpy(),
    )


@torch.no_grad()
def sync_features(
    net: SyncNet, frames_bgr: np.ndarray, audio_int16: np.ndarray, batch_size: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, 224, 224, 3) uint8 BGR frames at 25 fps and their 16 kHz audio -> video and audio features
    (W, 1024) each, one per 5-frame window that both streams cover."""
    cepstra = torch.from_numpy(mfcc(audio_int16, SAMPLE_RATE).astype(np.float32))[None, None]  # (1, 1, 13, steps)
    usable = min(len(frames_bgr), math.floor(len(audio_int16) / (SAMPLE_RATE // FPS)))
    windows = usable - WINDOW_FRAMES  # the official range leaves the last full window out; kept
    if windows <= 0:
        raise EvaluationError(f"too short to score: {usable} frames with audio, at least {WINDOW_FRAMES + 1} needed")
    video_feat, audio_feat = [], []
    for start in range(0, windows, batch_size):
        starts = range(start, min(windows, start + batch_size))
        # (N, 5, H, W, 3) -> (N, 3, 5, H, W): channels first, frames as the depth axis
        lips = np.stack([frames_bgr[s:s + WINDOW_FRAMES] for s in starts]).transpose(0, 4, 1, 2, 3)
        video_feat.append(net.forward_lip(torch.from_numpy(lips.astype(np.float32))))
        blocks = [cepstra[..., s * MFCC_STEPS_PER_FRAME:s * MFCC_STEPS_PER_FRAME + WINDOW_MFCC_STEPS] for s in starts]
        audio_feat.append(net.forward_aud(torch.cat(blocks)))
    return torch.cat(video_feat), torch.cat(audio_feat)


def evaluate(net: SyncNet, video: str | Path, batch_size: int = 20, vshift: int = 15, work_dir: str | Path | None = None) -> SyncScores:
    """SyncNetInstance.evaluate on a 224x224 face-crop video with audio: frames through ffmpeg to JPEG and read
    with OpenCV, the audio through ffmpeg to 16 kHz mono PCM, features, scores."""
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="syncnet-") as tmp:
        paths = ffmpeg.extract_frames(video, Path(tmp) / "frames")
        ffmpeg.extract_audio(video, Path(tmp) / "audio.wav")
        _, audio = ffmpeg.read_wav(Path(tmp) / "audio.wav")
        frames = np.stack(list(tracking.ImageFiles(paths)))
    return score_features(*sync_features(net, frames, audio, batch_size), vshift=vshift)

