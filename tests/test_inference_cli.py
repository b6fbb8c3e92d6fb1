"""inference.py as users run it, with tiny checkpoints: every strategy writes a correct MP4."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import MARKER, ROOT, SIZE, expected_length, inspect_mp4, make_inputs, make_model_ckpts, run_cli, weight_flags
from marker_detector import draw_marker
from pipelines.video import write_video

SECONDS = 1.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    ckpts = make_model_ckpts(folder / "model_ckpts")
    return dict(make_inputs(folder, SECONDS), ckpts=ckpts, folder=folder)


def generate(setup, name, *extra, env=None):
    output = setup["folder"] / f"{name}.mp4"
    result = run_cli(
        "inference.py", "--reference_image_path", setup["image"], "--audio_path", setup["audio"], "--output_path", output,
        "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 2, *weight_flags(setup["ckpts"]), *extra, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def assert_video_matches_audio(output):
    video = inspect_mp4(output)
    frames = expected_length(SECONDS)
    assert video["codec"] == "h264" and video["audio_codec"] == "aac"
    assert video["size"] == (SIZE, SIZE)
    assert video["num_frames"] == frames
    assert video["fps"] == pytest.approx(frames / SECONDS, abs=0.01)
    assert video["duration"] == pytest.approx(SECONDS, abs=0.05)
    assert video["frames"].std() > 1  # not a blank video
    return video


@pytest.mark.parametrize("strategy", ["no_retarget", "offset_retarget", "naive_retarget"])
def test_strategies_with_driving_keypoints(setup, strategy):
    output, result = generate(setup, strategy, "--kps_path", setup["kps"], "--retarget_strategy", strategy)
    assert_video_matches_audio(output)
    assert f"strategy {strategy}" in result.stdout
    assert "frames/s" in result.stdout and "peak memory" in result.stdout


def test_faq_three_argument_command_falls_back_to_fix_face(setup):
    output = setup["folder"] / "faq.mp4"
    result = run_cli(
        "inference.py", "--reference_image", setup["image"], "--audio", setup["audio"], "--output", output,
        "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 1, *weight_flags(setup["ckpts"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using fix_face" in result.stderr
    assert_video_matches_audio(output)


def test_fix_face_with_custom_weights_and_memory_saving(setup):
    output, result = generate(
        setup, "fix_face", "--retarget_strategy", "fix_face", "--reference_attention_weight", 0.95,
        "--audio_attention_weight", 3.0, "--expression_strength", 1.2, "--save_gpu_memory", "--no_median_filter",
    )
    assert_video_matches_audio(output)


def test_reference_video_drives_the_keypoints(setup):
    frames = [draw_marker(np.full((SIZE, SIZE, 3), 60, np.uint8), MARKER[0] + 8 * (i % 2), MARKER[1]) for i in range(40)]
    driving = write_video(setup["folder"] / "driving.mp4", np.stack(frames), 30, setup["audio"])
    output, result = generate(setup, "driven", "--reference_video", driving, "--retarget_strategy", "naive_retarget")
    assert_video_matches_audio(output)


def test_same_seed_same_video(setup):
    first, _ = generate(setup, "seed_a", "--kps_path", setup["kps"], "--seed", 7, "--num_inference_steps", 1)
    second, _ = generate(setup, "seed_b", "--kps_path", setup["kps"], "--seed", 7, "--num_inference_steps", 1)
    assert (inspect_mp4(first)["frames"] == inspect_mp4(second)["frames"]).all()


def test_multi_process_inference_gives_the_same_video(setup):
    # One thread per process in both runs: the thread count, not the split, is all that could change a rounding.
    single, _ = generate(setup, "single", "--kps_path", setup["kps"], "--num_inference_steps", 1, env={"OMP_NUM_THREADS": "1"})
    output = setup["folder"] / "multi.mp4"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--num_cpu_threads_per_process", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "inference.py", "--do_multi_devices_inference",
        "--reference_image_path", setup["image"], "--audio_path", setup["audio"], "--output_path", output,
        "--kps_path", setup["kps"], "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 1,
        *weight_flags(setup["ckpts"]),
    ]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # only the main process writes
    assert (inspect_mp4(output)["frames"] == inspect_mp4(single)["frames"]).all()
