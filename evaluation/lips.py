"""Lip-Sync, Silent-Lip-Stability and lip dynamics as THEval (arXiv 2511.04520, its released scripts) computes them,
offline: face landmarks from insightface's buffalo_l (det_10g.onnx, then 2d106det.onnx on the largest face), speech
segments from silero-vad's network as its wheel ships it (silero_vad.onnx, default thresholds), the audio of the
video itself.

- **Lip-Sync** (lower: the lips follow the loudness closer): per frame, the inner-lip gap |mean y of the upper inner
  lip - mean y of the lower inner lip| over the horizontal distance between the two eye centres (each the mean of its
  corners); the audio's RMS over 50 ms windows (hop 50 ms), interpolated at the frame times i / fps. On the speech
  frames with a face, both are min-max normalised and the score is the mean absolute difference. Not scored when
  speech covers under 10 % of the frames.
- **Silent-Lip-Stability** (lower: steadier lips in pauses): the frames outside speech in runs of 300 ms or more; per
  frame, the mean over the three upper/lower inner-lip point pairs of their vertical distance over the distance
  between the outer eye corners; the score is the median absolute deviation of these values from their mean.
  `silent_lip_opening` (not a THEval metric) is their mean: how far the mouth stays open in those pauses.
- **Lip dynamics** (closer to the ground truth is better): over the first 500 frames with a face, the 190 pairwise
  distances of the 20 mouth points over the outer eye-corner distance; the variance over time of each, averaged.

Speech frames: silero-vad's segments [start, end] (seconds, 0.1 s resolution) cover frames int(start * fps) ..
int(end * fps). Each metric, given ground truth, is also scored as THEval normalises it: 1 - |m - GT| / |GT| (empty
when GT is 0).

Deviations from THEval: landmarks are buffalo_l's 106 points, not MediaPipe FaceMesh's 478 (MediaPipe ships no
face-mesh model in its current wheel and needs opencv-contrib-python, which clashes with opencv-python): the inner
lips are 3 point pairs instead of 8, the mouth 20 points instead of 40; distances are in pixels (THEval divides
MediaPipe's width- and height-normalised coordinates, which is the same on square videos); the audio is decoded by
the project's loader and resampled to 16 kHz with librosa for the VAD (THEval: torchaudio), RMS at its own rate."""

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np

from evaluation.errors import EvaluationError, MissingWeightsError
from evaluation.face_metrics import DETECTOR_FILE, FACE_MODELS_DIR, FaceModels, model_file, require_file
from media.face import LOWER_INNER_LIP, UPPER_INNER_LIP
from media.voice_activity import MIN_SILENCE_S, VAD_FILE, VAD_RATE, VoiceActivity, VoiceActivityError, long_silences, speech_mask

LANDMARK_FILE = "2d106det.onnx"
RMS_WINDOW_S = 0.05
MIN_SPEECH_FRACTION = 0.1
DYNAMICS_MAX_FRAMES = 500

# insightface's 106-point layout, named by the 68-point scheme it maps onto (the usual 106 -> 68 table).
# UPPER_INNER_LIP: 68-point 61, 62, 63, left to right in the image; LOWER_INNER_LIP: 68-point 67, 66, 65, each below its partner
MOUTH = tuple(range(52, 72))  # outer and inner lip contours
LEFT_EYE_CORNERS = (35, 39)  # the image-left eye: outer, inner corner (68-point 36, 39)
RIGHT_EYE_CORNERS = (93, 89)  # the image-right eye: outer, inner corner (68-point 45, 42)
OUTER_EYE_CORNERS = (35, 93)
COLUMNS = ("lip_sync", "silent_lip_stability", "silent_lip_opening", "lip_dynamics")
SCORED = ("lip_sync", "silent_lip_stability", "lip_dynamics")  # the THEval metrics, normalised against ground truth


# ---- per-frame lip geometry: `landmarks` is (F, 106, 2) in pixels, NaN on frames without a face ----

def sync_gap(landmarks: np.ndarray) -> np.ndarray:
    """(F,) inner-lip gap over the horizontal eye-centre distance (Lip-Sync's measure); NaN where undefined."""
    upper = landmarks[:, UPPER_INNER_LIP, 1].mean(axis=1)
    lower = landmarks[:, LOWER_INNER_LIP, 1].mean(axis=1)
    eyes = np.abs(landmarks[:, RIGHT_EYE_CORNERS, 0].mean(axis=1) - landmarks[:, LEFT_EYE_CORNERS, 0].mean(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(eyes > 0, np.abs(upper - lower) / eyes, np.nan)


def _outer_eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """(F,) distance between the outer eye corners, NaN where it is too small to divide by (THEval: 1e-3)."""
    distance = np.linalg.norm(landmarks[:, OUTER_EYE_CORNERS[0]] - landmarks[:, OUTER_EYE_CORNERS[1]], axis=1)
    return np.where(distance >= 1e-3, distance, np.nan)


def silent_gap(landmarks: np.ndarray) -> np.ndarray:
    """(F,) mean vertical distance of the inner-lip point pairs over the outer eye-corner distance."""
    pairs = np.abs(landmarks[:, UPPER_INNER_LIP, 1] - landmarks[:, LOWER_INNER_LIP, 1]).mean(axis=1)
    return pairs / _outer_eye_distance(landmarks)


def mouth_shape(landmarks: np.ndarray) -> np.ndarray:
    """(F, 190) pairwise distances of the 20 mouth points over the outer eye-corner distance."""
    first, second = np.array(list(combinations(range(len(MOUTH)), 2))).T
    mouth = landmarks[:, MOUTH]
    return np.linalg.norm(mouth[:, first] - mouth[:, second], axis=2) / _outer_eye_distance(landmarks)[:, None]


# ---- audio and speech, on the video's frame clock ----

def rms_at_frames(mono: np.ndarray, rate: int, num_frames: int, fps: float) -> np.ndarray:
    """(F,) the RMS of 50 ms windows (hop 50 ms, librosa's centred frames), interpolated at the frame times."""
    import librosa

    window = int(rate * RMS_WINDOW_S)
    rms = librosa.feature.rms(y=mono, frame_length=window, hop_length=window)[0]
    times = librosa.frames_to_time(np.arange(len(rms)), sr=rate, hop_length=window)
    return np.interp(np.arange(num_frames) / fps, times, rms)


# ---- the metrics ----

def _min_max(values: np.ndarray) -> np.ndarray:
    return (values - values.min()) / (values.max() - values.min() + 1e-8)


def lip_sync(gap: np.ndarray, rms: np.ndarray, speech: np.ndarray) -> float | None:
    """Mean |min-max(gap) - min-max(rms)| over the speech frames with a face (all (F,)); None when speech covers
    under 10 % of the frames or fewer than two of them have a face."""
    mask = speech & ~np.isnan(gap)
    if speech.mean() < MIN_SPEECH_FRACTION or mask.sum() < 2:
        return None
    return float(np.mean(np.abs(_min_max(gap[mask]) - _min_max(rms[mask]))))


def silent_lip_stability(gap: np.ndarray, silent: np.ndarray) -> tuple[float, float] | None:
    """(median |gap - mean|, mean gap) over the long-silence frames with a face (both (F,)); None under two."""
    values = gap[silent & ~np.isnan(gap)]
    if len(values) < 2:
        return None
    return float(np.median(np.abs(values - values.mean()))), float(values.mean())


def lip_dynamics(shape: np.ndarray) -> float | None:
    """Mean over the (F, D) shape's dimensions of their variance over time, on those of the first 500 frames that
    have a face (THEval's one segment of at most 500 frames)."""
    frames = shape[:DYNAMICS_MAX_FRAMES]
    frames = frames[~np.isnan(frames).any(axis=1)]
    return float(np.var(frames, axis=0).mean()) if len(frames) else None


def relative_score(value: float | None, ground_truth: float | None) -> float | None:
    """THEval's normalisation, 1 - |value - GT| / |GT|: 1 matches the ground truth; None when GT is missing or 0."""
    if value is None or ground_truth is None or abs(ground_truth) <= 1e-9:
        return None
    return 1.0 - abs(value - ground_truth) / abs(ground_truth)


# ---- the models ----

class LipModels:
    """buffalo_l's detector with its 106-point landmark model, and the VAD. Raises MissingWeightsError / a
    VExpressError naming the file when one cannot be loaded."""

    def __init__(self, root: str | Path = FACE_MODELS_DIR):
        require_file(model_file(root, DETECTOR_FILE))  # named first: its faces are what the landmarks are taken on
        self.landmark_path = require_file(model_file(root, LANDMARK_FILE))
        self.faces = FaceModels(root, tasks=("landmark_2d_106",))
        try:
            self.vad = VoiceActivity()
        except VoiceActivityError as error:  # skipped with one line, as a metric whose weights are missing
            raise MissingWeightsError(str(error)) from None

    def weights(self) -> dict[str, Path]:
        return {LANDMARK_FILE: self.landmark_path, VAD_FILE: self.vad.path}

    def landmarks(self, video: str | Path) -> tuple[np.ndarray, float]:
        """((F, 106, 2) landmarks of each frame's largest face in pixels, NaN without a face; the video's fps)."""
        from media.video import VideoFrames

        frames = VideoFrames(video)
        found = []
        for rgb in frames:
            face = self.faces.largest_face(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            found.append(np.full((106, 2), np.nan) if face is None else np.asarray(face.landmark_2d_106, np.float64))
        return np.stack(found), frames.fps


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """The audio track of a video (or an audio file): mono float32 (samples,) and its sample rate."""
    from media.audio import decode_audio

    samples, rate = decode_audio(path)
    if samples.size == 0:
        raise EvaluationError(f"{path}: the audio track has no samples; lip metrics need the video's sound")
    return samples.mean(axis=0), rate


@dataclass
class LipScores:
    lip_sync: float | None = None
    silent_lip_stability: float | None = None
    silent_lip_opening: float | None = None
    lip_dynamics: float | None = None
    notes: list[str] = field(default_factory=list)  # a metric that could not be computed: one line each

    def columns(self) -> dict:
        values = {name: getattr(self, name) for name in COLUMNS}
        return {key: value for key, value in values.items() if value is not None}

    def against(self, ground_truth: "LipScores") -> dict:
        """{metric}_score columns: THEval's 1 - |m - GT| / |GT| for each metric both have (GT not 0)."""
        scores = {f"{name}_score": relative_score(getattr(self, name), getattr(ground_truth, name)) for name in SCORED}
        return {key: value for key, value in scores.items() if value is not None}


def score_video(models: LipModels, video: str | Path) -> LipScores:
    """The three metrics of one video from its frames and its own audio. A video or audio that cannot be read
    raises (one line naming the file); a metric without enough frames is left empty, with a note."""
    import librosa

    mono, rate = read_audio(video)  # first: a video without sound fails before its frames are decoded
    landmarks, fps = models.landmarks(video)
    speech = speech_mask(models.vad.segments(librosa.resample(mono, orig_sr=rate, target_sr=VAD_RATE)), len(landmarks), fps)
    scores = LipScores()
    if np.isnan(landmarks).all():
        scores.notes.append("lip metrics: no face in any frame")
        return scores
    scores.lip_sync = lip_sync(sync_gap(landmarks), rms_at_frames(mono, rate, len(landmarks), fps), speech)
    if scores.lip_sync is None:
        scores.notes.append(f"Lip-Sync: speech (silero-vad) in {speech.mean():.0%} of the frames, under {MIN_SPEECH_FRACTION:.0%}")
    stability = silent_lip_stability(silent_gap(landmarks), long_silences(speech, fps))
    if stability is None:
        scores.notes.append(f"Silent-Lip-Stability: no silence of {MIN_SILENCE_S * 1000:.0f} ms or more with a face")
    else:
        scores.silent_lip_stability, scores.silent_lip_opening = stability
    scores.lip_dynamics = lip_dynamics(mouth_shape(landmarks))
    return scores


def summary_scores(means: dict[str, dict], ground_truth_kind: str = "ground_truth") -> None:
    """Add THEval's set-level scores to `means` ({kind: {metric: mean or None}}) in place: each kind's mean of each
    metric against the ground-truth videos' mean, as THEval scores a method's row against its GT row."""
    reference = means.get(ground_truth_kind)
    if reference is None:
        return
    for kind, values in means.items():
        if kind != ground_truth_kind:
            for name in SCORED:
                values[f"{name}_score"] = relative_score(values.get(name), reference.get(name))


def fmt(value: float | None) -> str:
    """Four significant digits: the stability's deviations are small fractions of the eye distance."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"
