"""wav2vec2 and the Audio Projection on long audio: chunked against one pass."""

import json
import sys
import time

from scripts.benchmarks.common import build_pipeline, memory_now, reset_peak_memory


def run(args) -> dict:
    """wav2vec2-base (random weights) and the Audio Projection on `--seconds` of audio: seconds and peak host memory of
    the audio phase, chunked (what generation does) and, for audio short enough, in one pass for comparison."""
    import torch

    from pipelines.speech import SAMPLING_RATE, encode_speech

    device = torch.device(args.device)
    pipeline = build_pipeline("full", device, torch.float32)
    rows = []
    for seconds in args.seconds:
        waveform = torch.randn(int(seconds * SAMPLING_RATE), generator=torch.Generator().manual_seed(0)) * 0.1
        for mode in ("chunked", "single pass") if seconds <= 120 else ("chunked",):
            before = memory_now()["VmRSS"]
            reset_peak_memory(device)
            started = time.perf_counter()
            with torch.no_grad():
                if mode == "chunked":
                    tokens = pipeline.encode_audio(waveform, int(seconds * 30), 2)
                else:
                    inputs = pipeline.audio_processor(waveform.numpy(), sampling_rate=SAMPLING_RATE, return_tensors="pt").input_values.to(device)
                    states = pipeline.audio_encoder(inputs).last_hidden_state
            row = dict(seconds_of_audio=seconds, mode=mode, seconds=round(time.perf_counter() - started, 1),
                       extra_peak_host_memory_mib=round((memory_now()["VmHWM"] - before) / 2**20))
            if mode == "chunked":
                row["tokens_shape"] = list(tokens.shape)
            else:  # checked after the measurement: the chunked encoder gives the single pass's states
                with torch.no_grad():
                    check = encode_speech(pipeline.audio_encoder, inputs, chunk_seconds=seconds / 4)
                row["chunked_vs_single_pass_relative_error"] = float((check - states).norm() / states.norm())
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return dict(report="audio", runs=rows)
