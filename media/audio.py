"""Audio in: decoding any common format, and resampling as the published code did."""

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

from modules.errors import VExpressError
from pipelines.speech import SAMPLING_RATE


class AudioError(VExpressError):
    """Audio that cannot be used, with a message for the user."""


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any audio file, or the audio track of a video -> (channels, samples) float32 in [-1, 1], sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: cannot read audio from this file (empty file); use WAV, MP3, FLAC, M4A, OGG or a video with sound")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError:  # not a format libsndfile reads (M4A/AAC, a video's audio track): ffmpeg decodes it
        samples, rate = _decode_with_ffmpeg(path)
    return np.ascontiguousarray(samples.T), int(rate)


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    import imageio_ffmpeg  # here: the networks and the pipeline run without it (on a GPU machine that lacks it, say)

    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "audio.wav"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-acodec", "pcm_f32le", str(wav)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav.is_file():
            detail = (result.stderr.strip().splitlines() or ["no audio stream"])[-1]
            raise AudioError(f"{path}: cannot read audio from this file ({detail}); use WAV, MP3, FLAC, M4A, OGG or a video with sound")
        return soundfile.read(wav, dtype="float32", always_2d=True)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int, zero_crossings: int = 6, rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling along the last axis with a Hann-windowed sinc filter: the algorithm of
    `torchaudio.functional.resample`'s default, which the published code used (librosa's soxr differs slightly)."""
    if orig_rate == new_rate:
        return waveform
    common = math.gcd(orig_rate, new_rate)
    step_in, step_out = orig_rate // common, new_rate // common  # each block of step_in inputs gives step_out outputs
    cutoff = min(step_in, step_out) * rolloff
    half_width = math.ceil(zero_crossings * step_in / cutoff)
    # Filter taps: for output phase p, input offsets -half_width .. half_width + step_in - 1.
    offsets = torch.arange(-half_width, half_width + step_in, dtype=waveform.dtype) / step_in
    phases = -torch.arange(step_out, dtype=waveform.dtype)[:, None] / step_out
    t = ((phases + offsets) * cutoff).clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    t = t * math.pi
    taps = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (cutoff / step_in)

    shape = waveform.shape
    signal = F.pad(waveform.reshape(-1, 1, shape[-1]), (half_width, half_width + step_in))
    out = F.conv1d(signal, taps[:, None].to(waveform.device), stride=step_in)  # (n, step_out, blocks)
    out = out.transpose(1, 2).reshape(signal.shape[0], -1)
    return out[:, : math.ceil(step_out * shape[-1] / step_in)].reshape(*shape[:-1], -1)


def load_audio(path: str | Path, sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """An audio file -> mono float32 waveform (samples,) at `sampling_rate`: resampled per channel, then averaged."""
    samples, rate = decode_audio(path)
    if samples.size == 0:
        raise AudioError(f"{path}: the audio has no samples; give a file with speech in it")
    return resample(torch.from_numpy(samples), rate, sampling_rate).mean(dim=0)


