"""--mouth_in_silence rest: the per-frame weights from silero-vad's silences, and the CLI that uses them."""

import re

import numpy as np
import pytest
import soundfile as sf

from helpers.cli import ROOT, SIZE, inspect_mp4, make_inputs, make_model_ckpts, run_cli, shown_lines, weight_flags
from media.voice_activity import VoiceActivity, rest_weights, speech_mask


def test_the_mouth_rests_in_long_silences_only_and_eases_in_and_out_inside_them():
    fps = 25
    # Speech 0-0.5 s, a 0.68 s silence, speech 1.2-1.3 s, a 0.16 s pause, speech at 1.5 s, then 0.48 s of silence.
    segments = [(0.0, 0.5), (1.2, 1.3), (1.5, 1.5)]
    weights = rest_weights(segments, 50, fps)
    ramp = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, 4) / 4)  # 3 frames (0.12 s at 25 fps), from 1 towards 0
    np.testing.assert_allclose(weights[13:16], ramp, atol=1e-6)  # the silence starts at frame 13 (0.5 s is frame 12)
    assert (weights[16:27] == 0).all()
    np.testing.assert_allclose(weights[27:30], ramp[::-1], atol=1e-6)  # and ends before frame 30 (1.2 s)
    speech = speech_mask(segments, 50, fps)
    assert (weights[speech] == 1).all()  # no speech frame changes
    assert (weights[33:37] == 1).all()  # the 0.16 s pause is too short to rest in
    np.testing.assert_allclose(weights[38:41], ramp, atol=1e-6)  # the silence at the end: a ramp at its start only
    assert (weights[41:] == 0).all()
    assert (rest_weights([], 10, fps) == 0).all() and (rest_weights([(0.0, 10.0)], 10, fps) == 1).all()


@pytest.fixture(scope="module")
def paused(tmp_path_factory):
    """1 s of speech, 0.8 s of digital silence, 1 s of speech; a portrait; tiny checkpoints."""
    folder = tmp_path_factory.mktemp("paused")
    inputs = make_inputs(folder, seconds=1.0)
    speech, rate = sf.read(ROOT / "test_samples" / "speech.wav", dtype="float32")
    sf.write(folder / "paused.wav", np.concatenate([speech[: rate], np.zeros(int(0.8 * rate), np.float32), speech[rate: 2 * rate]]), rate)
    return dict(folder=folder, image=inputs["image"], audio=folder / "paused.wav", ckpts=make_model_ckpts(folder / "model_ckpts"))


def test_the_cli_rests_the_mouth_in_the_silence_it_finds(paused, tmp_path):
    result = run_cli("inference.py", "--reference_image_path", paused["image"], "--audio_path", paused["audio"],
                     "--retarget_strategy", "fix_face", "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 2,
                     "--mouth_in_silence", "rest", "--output_path", tmp_path / "rest.mp4", *weight_flags(paused["ckpts"]))
    assert result.returncode == 0, result.stderr[-3000:]
    note = next(line for line in shown_lines(result.stderr) if line.startswith("note: --mouth_in_silence rest"))
    resting, frames = map(int, re.search(r"rests on (\d+) of (\d+) frames", note).groups())
    assert frames == len(inspect_mp4(tmp_path / "rest.mp4")["frames"])
    # The same weights from the same detector on the same audio (16 kHz) and frame clock.
    from media.audio import load_audio

    waveform = load_audio(paused["audio"], 16000)
    expected = rest_weights(VoiceActivity().segments(waveform.numpy()), frames, frames / (len(waveform) / 16000))
    assert resting == int((expected == 0).sum()) and 16 <= resting < frames // 2  # the 0.8 s silence, less its ramps (and any other)


def test_the_preview_says_where_the_mouth_rests_and_draws_the_audios_pull(paused, tmp_path):
    output = tmp_path / "preview.mp4"
    result = run_cli("scripts/preview_kps.py", "--reference_image_path", paused["image"], "--audio_path", paused["audio"],
                     "--retarget_strategy", "fix_face", "--image_width", SIZE, "--image_height", SIZE, "--mouth_in_silence", "rest",
                     "--insightface_model_path", paused["ckpts"] / "insightface_models", "--output_path", output)
    assert result.returncode == 0, result.stderr[-3000:]
    assert any(line.startswith("note: --mouth_in_silence rest: the mouth rests on") for line in shown_lines(result.stderr + result.stdout))
    frames = inspect_mp4(output)["frames"]
    bar = frames[:, -1, :SIZE].astype(int)  # the bottom row of the V-Kps half
    green = (bar[..., 1] > 120) & (bar[..., 0] < 80)
    assert green[0].mean() > 0.8  # speech: the whole bar
    assert green[len(frames) // 2].mean() < 0.1  # the middle of the 0.8 s silence (1.4 s of 2.8): none
