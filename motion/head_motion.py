"""A living head for a still portrait: small nods, turns, tilts and sways that follow the speech.

The speech gives two per-frame signals, computed with librosa: its activity (loudness: 0 in pauses, 1 in loud
speech) and its pitch contour (semitones about the speaker's median, -1..1). Each motion is a slow random wave,
seeded, scaled by the activity: the head moves more on stressed, loud phrases and settles back to its own pose
in pauses, so it cannot drift. The nod also follows the pitch: the head rises with the voice. Every motion is
bounded by its amplitude (degrees, or face sizes) times the strength, and changes by at most MAX_OFFSET_SPEED
amplitudes per second. The offsets apply to any keypoint sequence: the portrait held still (fix_face) or a
retargeted one.
"""

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from motion.retarget import FacePose, face_pose, pose_kps

NOSE_DEPTH = 0.6  # how far the nose tip stands in front of the eyes, in eye distances, to turn a flat face in 3D
ANALYSIS_HOP_S, LOUDNESS_WINDOW_S = 0.01, 0.025
PITCH_HOP_S, PITCH_WINDOW_S, PITCH_RANGE_HZ = 0.02, 0.05, (70.0, 400.0)  # librosa.yin: fast, unlike pyin, on long audio
LOUDNESS_RANGE_DB = (-30.0, 0.0)  # activity 0..1 between these, relative to the loud level (95th percentile)
LOUD_LEVEL_FLOOR_DB = -60.0  # the loud level is never below this (dB full scale): silence stays silence
PITCH_RANGE_SEMITONES = 6.0  # pitch this far above or below the median is +-1
SMOOTHING_S = 0.2  # gaussian sigma over activity and pitch: syllables merge into phrases, pauses settle
SWAY_FREQUENCIES_HZ, SWAY_COMPONENTS = (0.15, 0.6), 4  # slow sways, not jitter
NOD_PITCH_SHARE = 0.5  # the nod: this share follows the pitch, the rest is a random wave like the others
# A bound on how fast any offset changes, in its amplitudes per second: the activity's slope (a [0, 1] signal
# smoothed by a gaussian: at most 1 / (sigma sqrt(2 pi)) = 2.0) plus the waves' (2 pi f_max = 3.8). The nod's pitch
# half is slower still ([-1, 1] smoothed: at most 4.0).
MAX_OFFSET_SPEED = 1 / (SMOOTHING_S * math.sqrt(2 * math.pi)) + 2 * math.pi * SWAY_FREQUENCIES_HZ[1]


class HeadOffsets(NamedTuple):
    """Per-frame head motion, each (L,) but shift (L, 2). Angles in degrees: roll (positive turns the eye line
    clockwise on screen), turn (positive moves the nose towards the right eye: image right for an upright face),
    nod (positive raises the nose); shift (x, y) in face sizes (eye distances)."""

    roll: np.ndarray
    turn: np.ndarray
    nod: np.ndarray
    shift: np.ndarray


# The largest offsets at strength 1 (degrees; shift in face sizes).
AMPLITUDES = HeadOffsets(roll=4.0, turn=8.0, nod=6.0, shift=np.array([0.06, 0.04]))


def _gaussian_smooth(values: np.ndarray, hop_s: float) -> np.ndarray:
    """Smooth a signal sampled every `hop_s` seconds by SMOOTHING_S; outside the audio counts as silence."""
    return gaussian_filter1d(values, SMOOTHING_S / hop_s, mode="constant")


def speech_drive(waveform, sampling_rate: int, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mono waveform (samples,) -> (activity, pitch), each (num_frames,) float64, at frame k's time k / fps:
    activity in [0, 1] from the loudness, pitch in [-1, 1] (0 where silent), both smoothed by SMOOTHING_S."""
    import librosa  # imported here: only head motion pays for its start-up

    audio = np.asarray(waveform, dtype=np.float32).reshape(-1)
    hop, window = round(ANALYSIS_HOP_S * sampling_rate), round(LOUDNESS_WINDOW_S * sampling_rate)
    rms = librosa.feature.rms(y=audio, frame_length=window, hop_length=hop, center=True, pad_mode="constant")[0]
    loudness = 20 * np.log10(np.maximum(rms, 1e-10))
    loud_level = max(np.percentile(loudness, 95), LOUD_LEVEL_FLOOR_DB)
    low, high = LOUDNESS_RANGE_DB
    activity = np.clip((loudness - loud_level - low) / (high - low), 0, 1)

    pitch_hop, pitch_window = round(PITCH_HOP_S * sampling_rate), round(PITCH_WINDOW_S * sampling_rate)
    pitch_times = np.arange(len(audio) // pitch_hop + 1) * PITCH_HOP_S
    voiced = np.interp(pitch_times, np.arange(len(activity)) * ANALYSIS_HOP_S, activity)  # yin has no voicing: loudness gates it
    pitch = np.zeros_like(pitch_times)
    if len(audio) >= pitch_window and (voiced > 0.5).any():
        f0 = librosa.yin(audio, fmin=PITCH_RANGE_HZ[0], fmax=PITCH_RANGE_HZ[1], sr=sampling_rate, frame_length=pitch_window,
                         hop_length=pitch_hop, center=True, pad_mode="constant")[: len(pitch_times)]
        semitones = 12 * np.log2(f0 / np.median(f0[voiced[: len(f0)] > 0.5]))
        pitch[: len(f0)] = np.clip(semitones / PITCH_RANGE_SEMITONES, -1, 1) * voiced[: len(f0)]

    frame_times = np.arange(num_frames) / fps
    activity = np.interp(frame_times, np.arange(len(activity)) * ANALYSIS_HOP_S, _gaussian_smooth(activity, ANALYSIS_HOP_S))
    pitch = np.interp(frame_times, pitch_times, _gaussian_smooth(pitch, PITCH_HOP_S))
    return activity, pitch


def sway(num_frames: int, fps: float, generator: np.random.Generator) -> np.ndarray:
    """A slow random wave (num_frames,) in [-1, 1]: SWAY_COMPONENTS sines of random frequency and phase whose
    weights sum to 1. Frame k's value depends only on k / fps and the generator, not on the video's length."""
    frequencies = generator.uniform(*SWAY_FREQUENCIES_HZ, SWAY_COMPONENTS)
    phases = generator.uniform(0, 2 * np.pi, SWAY_COMPONENTS)
    weights = generator.uniform(0.5, 1.0, SWAY_COMPONENTS)
    times = np.arange(num_frames)[:, None] / fps
    return np.sin(2 * np.pi * frequencies * times + phases) @ (weights / weights.sum())


def head_offsets(waveform, sampling_rate: int, num_frames: int, fps: float, strength: float = 1.0, seed: int = 42) -> HeadOffsets:
    """The head motion for a video of `num_frames` frames at `fps` showing `waveform` (mono, at `sampling_rate`):
    |offset| <= AMPLITUDES x strength, each a random wave (the same for the same seed) scaled by the activity."""
    activity, pitch = speech_drive(waveform, sampling_rate, num_frames, fps)
    generator = np.random.default_rng(seed)
    waves = [sway(num_frames, fps, generator) for _ in range(5)]
    moving = activity * strength
    return HeadOffsets(
        roll=AMPLITUDES.roll * moving * waves[0],
        turn=AMPLITUDES.turn * moving * waves[1],
        nod=AMPLITUDES.nod * strength * ((1 - NOD_PITCH_SHARE) * activity * waves[2] + NOD_PITCH_SHARE * pitch),
        shift=AMPLITUDES.shift * moving[:, None] * np.stack(waves[3:], axis=1),
    )


def turn_and_nod(pose: FacePose, turn: torch.Tensor, nod: torch.Tensor) -> FacePose:
    """The face nodded by `nod` about the eye line (positive raises the nose), then turned by `turn` about the
    face's vertical axis through the eye midpoint (positive moves the nose along the eye line, towards the right
    eye), radians (L,): a head whose eyes lie on both axes and whose nose tip stands NOSE_DEPTH eye distances in
    front of them, seen without perspective. The eye midpoint stays; the eye distance shrinks by cos(turn)."""
    along, across = pose.nose[..., 0], pose.nose[..., 1]
    across, depth = across * torch.cos(nod) - NOSE_DEPTH * torch.sin(nod), across * torch.sin(nod) + NOSE_DEPTH * torch.cos(nod)
    along = along * torch.cos(turn) + depth * torch.sin(turn)
    foreshortening = torch.cos(turn)
    return pose._replace(eye_distance=pose.eye_distance * foreshortening, nose=torch.stack([along, across], dim=-1) / foreshortening[..., None])


def apply_head_offsets(kps, offsets: HeadOffsets, face_size: float) -> torch.Tensor:
    """Keypoints (L, 3, 2) pixels + offsets (shift in face sizes of `face_size` pixels) -> (L, 3, 2) float32."""
    pose = face_pose(kps)
    radians = lambda degrees: torch.as_tensor(np.radians(degrees), dtype=torch.float64)  # noqa: E731
    pose = turn_and_nod(pose, radians(offsets.turn), radians(offsets.nod))
    shift = torch.as_tensor(offsets.shift, dtype=torch.float64) * face_size
    return pose_kps(pose._replace(centre=pose.centre + shift, angle=pose.angle + radians(offsets.roll)))


def add_head_motion(kps, waveform, sampling_rate: int, fps: float, strength: float = 1.0, seed: int = 42) -> torch.Tensor:
    """(L, 3, 2) keypoints of a video at `fps` showing `waveform` -> the same with the speech-driven head motion;
    the face size is the sequence's median eye distance."""
    kps = torch.as_tensor(np.asarray(kps, dtype=np.float32))
    face_size = float(face_pose(kps).eye_distance.median())
    return apply_head_offsets(kps, head_offsets(waveform, sampling_rate, len(kps), fps, strength, seed), face_size)
