"""Audio in: decoding any common format, resampling as the published code did, and per-frame audio vectors."""

import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F

from modules.errors import VExpressError


SAMPLING_RATE = 16000  # wav2vec2's, and inference.py's default --standard_audio_sampling_rate


class AudioError(VExpressError):
    """Audio that cannot be used, with a message for the user."""


def decode_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any audio file, or the audio track of a video -> (channels, samples) float32 in [-1, 1], sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
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
            detail = "empty file" if path.stat().st_size == 0 else (result.stderr.strip().splitlines() or ["no audio stream"])[-1]
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


@torch.no_grad()
def encode_speech(audio_encoder, input_values: torch.Tensor, chunk_seconds: float = 30.0, sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """Normalised waveform (1, samples) -> wav2vec2 `last_hidden_state` (1, T, dim), the states
    `audio_encoder(input_values)` gives. Audio longer than `chunk_seconds` goes through the convolutional feature
    encoder in chunks, whose activations would otherwise be the largest thing in a long run (512 channels at a
    fifth of the sample rate: 4 GB for 10 minutes). The chunks are exact: each layer is a convolution without
    padding, so a chunk of output frames needs a known span of samples; and the first layer's GroupNorm, which
    normalises each channel over the whole recording, gets its statistics from a first pass over the chunks."""
    layers = audio_encoder.feature_extractor.conv_layers
    if input_values.shape[-1] <= chunk_seconds * sampling_rate or not isinstance(getattr(layers[0], "layer_norm", None), torch.nn.GroupNorm):
        return audio_encoder(input_values).last_hidden_state
    convs = [layer.conv for layer in layers]
    stride = math.prod(conv.stride[0] for conv in convs)  # samples per output frame
    field, step = 1, 1  # samples one output frame sees
    for conv in convs:
        field, step = field + (conv.kernel_size[0] - 1) * step, step * conv.stride[0]
    first = layers[0].conv
    samples = input_values.shape[-1]
    num_frames = _conv_output_length(samples, convs)
    frames_per_chunk = max(int(chunk_seconds * sampling_rate) // stride, 1)

    # Pass 1: per-channel mean and variance of the first convolution's output over the whole recording.
    first_outputs = _conv_output_length(samples, convs[:1])
    per_chunk = frames_per_chunk * stride // first.stride[0]
    total = torch.zeros(first.out_channels, dtype=torch.float64, device=input_values.device)
    squares = torch.zeros_like(total)
    for start in range(0, first_outputs, per_chunk):
        stop = min(start + per_chunk, first_outputs)
        out = first(input_values[:, None, start * first.stride[0]:(stop - 1) * first.stride[0] + first.kernel_size[0]])[0].double()
        total += out.sum(dim=1)
        squares += (out * out).sum(dim=1)
    mean = total / first_outputs
    variance = (squares / first_outputs - mean * mean).clamp(min=0)
    norm = layers[0].layer_norm
    scale = (norm.weight.double() / torch.sqrt(variance + norm.eps)).to(input_values.dtype)
    shift = (norm.bias.double() - mean * norm.weight.double() / torch.sqrt(variance + norm.eps)).to(input_values.dtype)

    # Pass 2: each chunk of output frames from exactly the samples it sees.
    features = []
    for start in range(0, num_frames, frames_per_chunk):
        stop = min(start + frames_per_chunk, num_frames)
        hidden = first(input_values[:, None, start * stride:(stop - 1) * stride + field])
        hidden = layers[0].activation(hidden * scale[:, None] + shift[:, None])
        for layer in layers[1:]:
            hidden = layer(hidden)
        features.append(hidden)
    extract_features = torch.cat(features, dim=2).transpose(1, 2)
    hidden_states, _ = audio_encoder.feature_projection(extract_features)
    hidden_states = audio_encoder.encoder(hidden_states).last_hidden_state
    return hidden_states if audio_encoder.adapter is None else audio_encoder.adapter(hidden_states)


def _conv_output_length(samples: int, convs) -> int:
    for conv in convs:
        samples = (samples - conv.kernel_size[0]) // conv.stride[0] + 1
    return samples


def audio_vectors_per_frame(hidden_states: torch.Tensor, num_frames: int, num_pad_audio_frames: int = 2) -> torch.Tensor:
    """wav2vec2 states (T, dim) -> (num_frames, 2 * (2P + 1), dim): the states are stretched to two per
    video frame, padded with 2P zero rows at both ends, and frame i takes rows [2i, 2i + 2(2P + 1))."""
    pad, window = 2 * num_pad_audio_frames, 2 * (2 * num_pad_audio_frames + 1)
    stretched = F.interpolate(hidden_states.float().T[None], size=2 * num_frames, mode="linear", align_corners=False)[0].T
    padded = F.pad(stretched, (0, 0, pad, pad))
    return padded.unfold(0, window, 2)[:num_frames].permute(0, 2, 1)
