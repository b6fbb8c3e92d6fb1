"""Speech to audio vectors: wav2vec2 in exact chunks, and the vectors each video frame gets. (Decoding audio
files is media/audio.py's.)"""

import math

import torch
import torch.nn.functional as F

SAMPLING_RATE = 16000  # wav2vec2's, and inference.py's default --standard_audio_sampling_rate


def receptive_field(kernels, strides) -> int:
    """Input samples one output frame of a stack of 1-D convolutions sees."""
    field, step = 1, 1
    for kernel, stride in zip(kernels, strides):
        field, step = field + (kernel - 1) * step, step * stride
    return field


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
    field = receptive_field([conv.kernel_size[0] for conv in convs], [conv.stride[0] for conv in convs])  # samples one output frame sees
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
