"""inference.py as users run it, with tiny checkpoints: every strategy and option writes a correct MP4 holding
every frame its summary reports; a run stopped with Ctrl-C says so in one line and resumes to the identical video;
several processes give the same video as one."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from helpers.cli import MARKER, ROOT, SIZE, free_port, inspect_mp4, make_inputs, make_model_ckpts, run_cli, shown_lines, weight_flags
from helpers.marker_detector import draw_marker
from pipelines.context import num_frames_for_audio, video_length
from app.resume import load_state, state_path
from media.video import write_video

SECONDS = 1.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    ckpts = make_model_ckpts(folder / "model_ckpts")
    return dict(make_inputs(folder, SECONDS), ckpts=ckpts, folder=folder)


def command(setup, output, *extra):
    return [
        "--reference_image_path", setup["image"], "--audio_path", setup["audio"], "--output_path", output,
        "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 2, *weight_flags(setup["ckpts"]), *extra,
    ]


def generate(setup, name, *extra, env=None):
    output = setup["folder"] / f"{name}.mp4"
    result = run_cli("inference.py", *command(setup, output, *extra), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def assert_video_matches_audio(output, result, seconds=SECONDS):
    """The file holds the frames the summary reports, as many as the audio asks for, and lasts as long."""
    video = inspect_mp4(output)
    frames = video_length(num_frames_for_audio(seconds, 30))
    assert video["codec"] == "h264" and video["audio_codec"] == "aac"
    assert video["size"] == (SIZE, SIZE)
    assert video["num_frames"] == frames
    assert re.search(rf"wrote .*: {frames} frames \(counted in the file\)", result.stdout), result.stdout
    assert video["fps"] == pytest.approx(frames / seconds, abs=0.01)
    assert video["duration"] == pytest.approx(seconds, abs=0.05)
    assert video["frames"].std() > 1  # not a blank video
    assert "frames/s" in result.stdout and "peak memory" in result.stdout and "UNet calls" in result.stdout
    return video


@pytest.mark.parametrize("strategy", ["no_retarget", "offset_retarget", "naive_retarget"])
def test_strategies_with_driving_keypoints(setup, strategy):
    output, result = generate(setup, strategy, "--kps_path", setup["kps"], "--retarget_strategy", strategy)
    assert_video_matches_audio(output, result)
    assert f"strategy {strategy}" in result.stdout


def test_new_motion_options(setup):
    output, result = generate(
        setup, "motion", "--kps_path", setup["kps"], "--retarget_strategy", "similarity_retarget", "--kps_fit", "pingpong",
        "--head_motion", "natural", "--head_motion_strength", 1.5,
    )
    assert_video_matches_audio(output, result)
    assert "strategy similarity_retarget" in result.stdout


def test_hand_placed_keypoints_replace_the_detector(setup):
    """A drawing the detector finds no face in (no marker), of another size and shape than the video, generates with
    its keypoints placed by hand in its own pixels (a JSON file here; the flag's text form is tested in test_motion)."""
    drawing = setup["folder"] / "drawing.png"
    Image.fromarray(np.full((96, 128, 3), 200, np.uint8)).save(drawing)
    points = setup["folder"] / "drawing_kps.json"
    points.write_text(json.dumps({"left_eye": [48, 40], "right_eye": [80, 40], "nose": [64, 60]}))
    output = setup["folder"] / "drawing.mp4"
    result = run_cli("inference.py", *command({**setup, "image": drawing}, output, "--kps_path", setup["kps"],
                                              "--retarget_strategy", "similarity_retarget", "--reference_kps", points))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_video_matches_audio(output, result)
    assert "strategy similarity_retarget" in result.stdout


def test_paste_back_keeps_the_whole_photo(setup):
    """A 160x96 photo gives a 160x96 video: the face is generated from a 96x96 crop around it (the marker's face box
    x 2.4, kept inside the photo: from about x 52) and pasted back; the columns left of the crop are the photo's own,
    within codec error."""
    photo = np.asarray(Image.open(ROOT / "test_samples" / "portrait.png").convert("RGB").resize((160, 96))).copy()
    draw_marker(photo, 100, 40)
    Image.fromarray(photo).save(setup["folder"] / "wide.png")
    output, result = generate({**setup, "image": setup["folder"] / "wide.png"}, "wide", "--paste_back", "--retarget_strategy", "fix_face")
    video = inspect_mp4(output)
    assert video["size"] == (160, 96) and "160x96" in result.stdout
    write_video(setup["folder"] / "still.mp4", np.stack([photo] * 4), 30)  # the photo alone through the same codec
    codec_error = np.abs(inspect_mp4(setup["folder"] / "still.mp4")["frames"][:, :, :48].astype(int) - photo[None, :, :48]).mean()
    away = video["frames"][:, :, :48].astype(int)  # left of the crop
    assert np.abs(away - photo[None, :, :48]).mean() < codec_error + 0.5
    inside = video["frames"][:, 20:76, 80:136].astype(int)  # the generated face
    assert np.abs(inside - photo[None, 20:76, 80:136]).mean() > 10.0


def test_faq_three_argument_command_falls_back_to_fix_face(setup):
    output = setup["folder"] / "faq.mp4"
    result = run_cli(
        "inference.py", "--reference_image", setup["image"], "--audio", setup["audio"], "--output", output,
        "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 1, *weight_flags(setup["ckpts"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using fix_face" in result.stderr
    assert_video_matches_audio(output, result)


def test_odd_length_mp3_keeps_every_frame_with_custom_weights_memory_saving_and_fast_preset(setup):
    """44.1 kHz stereo MP3 of 4.574 s: 124 frames, all in the file (muxing used to cut the last one)."""
    seconds = 4.574
    t = np.arange(int(44100 * seconds)) / 44100
    sf.write(setup["folder"] / "stereo.wav", np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3, 44100)
    mp3 = setup["folder"] / "speech.mp3"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", setup["folder"] / "stereo.wav", "-c:a", "libmp3lame", mp3], check=True)
    output = setup["folder"] / "mp3.mp4"
    result = run_cli("inference.py", *command(
        {**setup, "audio": mp3}, output, "--retarget_strategy", "fix_face", "--reference_attention_weight", 0.95,
        "--audio_attention_weight", 3.0, "--expression_strength", 1.2, "--save_gpu_memory", "--preset", "fast",
    ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert inspect_mp4(output)["num_frames"] == 124
    assert_video_matches_audio(output, result, seconds)


def test_reference_video_drives_the_keypoints(setup):
    """The driver's face reaches the video: a marker that jumps 8 px every other frame gives another video than the
    same run driven by a still marker (the tiny networks' frames carry no visible face to track)."""
    videos = {}
    for name, step in (("moving", 8), ("still", 0)):
        frames = [draw_marker(np.full((SIZE, SIZE, 3), 60, np.uint8), MARKER[0] + step * (i % 2), MARKER[1]) for i in range(40)]
        driving = write_video(setup["folder"] / f"driving_{name}.mp4", np.stack(frames), 30, setup["audio"])
        output, result = generate(setup, f"driven_{name}", "--reference_video", driving, "--retarget_strategy", "no_retarget")
        videos[name] = assert_video_matches_audio(output, result)["frames"].astype(float)
    assert np.abs(videos["moving"] - videos["still"]).mean() > 1  # levels of 255: more than the codec's rounding


def test_ctrl_c_and_kill_9_both_resume_to_the_identical_video(setup):
    """Ctrl-C saves the state and says so in one line; kill -9 resumes from the periodic saves."""
    steps = ("--kps_path", setup["kps"], "--num_inference_steps", 12)
    reference, _ = generate(setup, "uninterrupted", *steps)

    # Ctrl-C once the first step is done. Periodic saves are off (--resume_interval): any state is the one Ctrl-C saved.
    output, log = setup["folder"] / "interrupted.mp4", setup["folder"] / "interrupted.stderr"
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "inference.py"), *map(str, command(setup, output, *steps, "--resume_interval", 1e9))],
            stdout=subprocess.DEVNULL, stderr=stderr, env=environment, cwd=ROOT,
        )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        bars = re.findall(r"denoising:[^\r\n]*?(\d+)/(\d+) \[", log.read_text(errors="replace"))
        if bars and int(bars[-1][0]) > int(bars[-1][1]) // 12:  # a window of step 2 done: step 1 is complete
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    process.wait()
    stderr = log.read_text()
    assert process.returncode == 130, "the run finished before it could be interrupted" if process.returncode == 0 else stderr[-3000:]
    lines = [line for line in shown_lines(stderr) if not line.startswith(("note: ", "warning: "))]  # the photo checks' advice aside
    match = re.fullmatch(r"interrupted at step (\d+) of 12; run the same command again to continue", lines[-1])
    assert match and 1 <= int(match[1]) < 12 and len(lines) == 1, lines
    state = state_path(output)
    assert not output.exists() and sorted(output.parent.glob(f".{output.stem}*")) == [state]  # no temporary file, no lock left

    notes = []
    assert load_state(state, "another run", report=notes.append) is None
    assert notes == [f"note: {state} is from a run with other inputs or settings; starting from the first step"]

    # Restarted with --device spelt out (as accelerate launch passes it): the same run, so it resumes.
    output, result = generate(setup, "interrupted", *steps, "--device", "cpu")
    assert f"resuming from {state}: denoising step {match[1]} of 12 done" in result.stderr, result.stderr[-2000:]
    assert (inspect_mp4(output)["frames"] == inspect_mp4(reference)["frames"]).all()
    assert not state.exists()  # removed on success

    # kill -9 gives no chance to save: the periodic saves (--resume_interval 0, every step) are what it resumes from,
    # and the lock file the dead run left is no obstacle.
    output = setup["folder"] / "killed.mp4"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "inference.py"), *map(str, command(setup, output, *steps, "--resume_interval", 0))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment, cwd=ROOT,
    )
    state, deadline = state_path(output), time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if state.is_file():  # written atomically: complete once it is there
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    output, result = generate(setup, "killed", *steps, "--resume_interval", 0)
    assert re.search(r"resuming from .*: denoising step (\d+) of 12 done", result.stderr), result.stderr[-2000:]
    assert (inspect_mp4(output)["frames"] == inspect_mp4(reference)["frames"]).all()


def test_multi_process_inference_gives_the_same_video(setup):
    # One thread per process in both runs: the thread count, not the split, is all that could change a rounding.
    single, single_result = generate(setup, "single", "--kps_path", setup["kps"], "--num_inference_steps", 1, env={"OMP_NUM_THREADS": "1"})
    output = setup["folder"] / "multi.mp4"
    accelerate = Path(sys.executable).with_name("accelerate")
    launch = [
        # --multi_gpu goes through torchrun, so two processes start even on a CPU (--cpu would start one).
        accelerate, "launch", "--multi_gpu", "--main_process_port", str(free_port()), "--num_processes", "2", "--num_machines", "1", "--num_cpu_threads_per_process", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "inference.py", "--do_multi_devices_inference",
        *command(setup, output, "--kps_path", setup["kps"], "--num_inference_steps", 1),
    ]
    result = subprocess.run(list(map(str, launch)), capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # only the main process writes
    assert "; 2 UNet calls" in single_result.stdout and "; 1 UNet calls" in result.stdout  # each process did one of the two windows
    assert (inspect_mp4(output)["frames"] == inspect_mp4(single)["frames"]).all()
