"""Where speech is: silero-vad's network as its wheel ships it (no download), and the per-frame weights that let the
mouth rest in the silences it finds (--mouth_in_silence rest)."""

from pathlib import Path

import numpy as np

from modules.errors import VExpressError

VAD_FILE = "silero_vad.onnx"  # in the silero_vad package's data folder
VAD_RATE = 16000
MIN_SILENCE_S = 0.3  # THEval's Silent-Lip-Stability counts silences this long or longer
MOUTHS_IN_SILENCE = ("published", "rest")  # --mouth_in_silence
REST_RAMP_S = 0.12  # the mouth eases into and out of rest over this long, inside the silence


class VoiceActivityError(VExpressError):
    """silero-vad is missing or broken."""


class VoiceActivity:
    """silero-vad's network from its installed wheel, on onnxruntime's CPU."""

    def __init__(self):
        try:
            import torch

            threads = torch.get_num_threads()
            import silero_vad  # its import sets torch to one thread for the whole process: put it back
            from silero_vad.utils_vad import OnnxWrapper

            torch.set_num_threads(threads)
        except ImportError:
            raise VoiceActivityError("silero-vad is not installed; install it with: pip install -c constraints.txt -r requirements.txt") from None
        from importlib import resources

        self.path = Path(str(resources.files("silero_vad.data").joinpath(VAD_FILE)))
        if not self.path.is_file():
            raise VoiceActivityError(f"{self.path}: missing from the silero-vad package; reinstall it: pip install --force-reinstall silero-vad")
        self.version = getattr(silero_vad, "__version__", "unknown")
        self.model = OnnxWrapper(str(self.path), force_onnx_cpu=True)

    def segments(self, audio_16k: np.ndarray) -> list[tuple[float, float]]:
        """Speech segments (start, end) in seconds of a mono 16 kHz waveform (samples,), silero's defaults."""
        import torch
        from silero_vad import get_speech_timestamps

        found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio_16k, dtype=np.float32)), self.model,
                                      sampling_rate=VAD_RATE, return_seconds=True)
        return [(float(s["start"]), float(s["end"])) for s in found]


def speech_mask(segments: list[tuple[float, float]], num_frames: int, fps: float) -> np.ndarray:
    """(F,) bool: frames int(start * fps) .. int(end * fps) of each speech segment (seconds)."""
    mask = np.zeros(num_frames, dtype=bool)
    for start, end in segments:
        mask[int(start * fps):min(int(end * fps) + 1, num_frames)] = True
    return mask


def silent_runs(speech: np.ndarray, fps: float, min_seconds: float = MIN_SILENCE_S) -> list[tuple[int, int]]:
    """(first, stop) frame indices of the runs outside speech at least `min_seconds` long (THEval counts frames:
    >= 0.3 * fps)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (~speech).astype(np.int8), [0]])))
    return [(int(start), int(stop)) for start, stop in zip(edges[::2], edges[1::2]) if stop - start >= min_seconds * fps]


def long_silences(speech: np.ndarray, fps: float, min_seconds: float = MIN_SILENCE_S) -> np.ndarray:
    """(F,) bool: the frames of `silent_runs`."""
    keep = np.zeros_like(speech)
    for start, stop in silent_runs(speech, fps, min_seconds):
        keep[start:stop] = True
    return keep


def rest_weights(segments: list[tuple[float, float]], num_frames: int, fps: float, ramp_seconds: float = REST_RAMP_S) -> np.ndarray:
    """(num_frames,) float32 in [0, 1]: how much of the audio's pull on the mouth each frame keeps. 1 in speech and in
    short pauses; 0 in the silences of MIN_SILENCE_S or more, reached by a raised-cosine ramp of `ramp_seconds`
    inside the silence at each end (a silence at the clip's start or end has no ramp on that side), so that no
    speech frame changes."""
    weights = np.ones(num_frames, np.float32)
    ramp = max(int(round(ramp_seconds * fps)), 1)
    for first, stop in silent_runs(speech_mask(segments, num_frames, fps), fps):
        weights[first:stop] = 0.0
        length = stop - first
        side = min(ramp, length // 2)
        shape = 0.5 + 0.5 * np.cos(np.pi * (np.arange(1, side + 1) / (side + 1)))  # from 1 towards 0
        if first > 0:
            weights[first:first + side] = shape
        if stop < num_frames:
            weights[stop - side:stop] = shape[::-1]
    return weights


def mouth_rest_weights(waveform_16k: np.ndarray, num_frames: int, fps: float, say) -> np.ndarray:
    """--mouth_in_silence rest's weights for a video of `num_frames` at `fps` over the speech (mono, 16 kHz), from
    silero-vad's segments; says how many frames rest."""
    weights = rest_weights(VoiceActivity().segments(waveform_16k), num_frames, fps)
    resting = int((weights == 0).sum())
    say(f"note: --mouth_in_silence rest: the mouth rests on {resting} of {num_frames} frames ({resting / fps:.1f} s of silence)")
    return weights
