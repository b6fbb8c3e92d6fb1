"""Every bad input: one clear line on stderr, exit status 2, no output file, before any network loads. And what
stops a run on the way (an empty or truncated weight file, another run on the output, a full disk, Ctrl-C while
loading): one line too, nothing half-written left behind."""

import dataclasses
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from safetensors import safe_open

import inference
from helpers.cli import SIZE, make_inputs, make_model_ckpts, run_cli, weight_flags
from modules.checkpoints import atomic_path, leftover_partials
from modules.errors import VExpressError, first_line, out_of_space
from media.face import FaceDetector
from app.generation import InputError, VideoGenerator, check_output_location, check_request, output_lock
from app.requests import parse_request
from pipelines.loading import ModelPaths, load_pipeline
from app.resume import state_path


class CreatesFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    ckpts = make_model_ckpts(folder / "model_ckpts")
    files = make_inputs(folder)
    (folder / "not_an_image.png").write_text("hello")
    (folder / "a_folder.png").mkdir()
    (folder / "noise.wav").write_bytes(b"RIFF....garbage")
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(folder / "blip.wav", np.full(100, 0.1, np.float32), 16000)  # 6 ms
    sf.write(folder / "nan.wav", np.array([0.1, np.nan] * 8000, np.float32), 16000, subtype="FLOAT")
    torch.save([np.zeros((4, 2), np.float32)] * 3, folder / "wrong_shape.pth")
    torch.save([np.full((3, 2), np.nan, np.float32)] * 3, folder / "nan.pth")
    with open(folder / "payload.pth", "wb") as f:
        pickle.dump([CreatesFileWhenUnpickled(folder / "unpickled")], f)
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(folder / "no_face.png")
    shutil.copy(files["audio"], folder / "talk.mp4")
    for suffix in (".png", ".wav", ".pth", ".npy", ".mp4"):
        (folder / f"zero_bytes{suffix}").touch()  # a copy or download that stopped before its first byte
    return dict(files, ckpts=ckpts, folder=folder)


def call(setup, capsys, *overrides, image=None, audio=None, output=None, weights=None):
    output = output or setup["folder"] / "out.mp4"
    argv = [
        "--reference_image_path", str(image or setup["image"]), "--audio_path", str(audio or setup["audio"]),
        "--output_path", str(output), "--image_width", str(SIZE), "--image_height", str(SIZE), "--num_inference_steps", "1",
        *(weights if weights is not None else weight_flags(setup["ckpts"])), *map(str, overrides),
    ]
    status = inference.main(argv)
    captured = capsys.readouterr()
    assert not (setup["folder"] / "out.mp4").exists()
    assert not (setup["folder"] / "unpickled").exists() and "Traceback" not in captured.err
    return status, captured.err.strip().splitlines()


@pytest.mark.parametrize("overrides, message", [
    (dict(image="missing.png"), r"missing\.png: reference image not found"),
    (dict(image="a_folder.png"), r"a_folder\.png: is a folder; give the reference image file"),
    (dict(image="not_an_image.png"), r"not_an_image\.png: cannot open the reference image"),
    (dict(audio="missing.wav"), r"missing\.wav: audio file not found"),
    (dict(audio="noise.wav"), r"noise\.wav: cannot read audio from this file"),
    (dict(audio="empty.wav"), r"empty\.wav: the audio has no samples"),
    (dict(audio="blip.wav"), r"blip\.wav: the audio lasts 6 ms; give at least 34 ms \(one video frame at 30 fps"),
    (dict(audio="nan.wav"), r"nan\.wav: the audio holds NaN or infinite samples"),
    (dict(args=("--kps_path", "wrong_shape.pth")), r"wrong_shape\.pth: keypoint sequence has shape \(3, 4, 2\)"),
    (dict(args=("--kps_path", "nan.pth")), r"nan\.pth: keypoint sequence contains NaN"),
    (dict(args=("--kps_path", "payload.pth")), r"payload\.pth: not a readable keypoint sequence"),
    (dict(args=("--kps_path", "missing.pth")), r"missing\.pth: keypoint file not found"),
    (dict(image="zero_bytes.png"), r"zero_bytes\.png: cannot open the reference image \(empty file\); use a JPG, PNG"),
    (dict(audio="zero_bytes.wav"), r"zero_bytes\.wav: cannot read audio from this file \(empty file\); use WAV, MP3"),
    (dict(args=("--kps_path", "zero_bytes.pth")), r"zero_bytes\.pth: not a readable keypoint sequence \(empty file\); expected a torch"),
    (dict(args=("--kps_path", "zero_bytes.npy")), r"zero_bytes\.npy: not a readable keypoint sequence \(empty file\); expected a torch"),
    (dict(args=("--reference_video", "zero_bytes.mp4")), r"zero_bytes\.mp4: cannot read this video \(empty file\); give a video ffmpeg decodes"),
    (dict(args=("--retarget_strategy", "mirror")), r"--retarget_strategy 'mirror' is unknown; choose one of fix_face, no_retarget"),
    (dict(args=("--kps_fit", "spiral")), r"--kps_fit 'spiral' is unknown; choose one of stretch, loop, pingpong, cut"),
    (dict(args=("--image_width", "0")), r"--image_width 0: must be between 64 and 4096"),
    (dict(args=("--image_height", "100")), r"--image_height 100: must be a multiple of 8"),
    (dict(args=("--context_frames", "40")), r"--context_frames 40: must be between 1 and 32"),
    (dict(args=("--context_overlap", "24")), r"--context_overlap 24: must be at least 0 and smaller than --context_frames \(24\)"),
    (dict(args=("--guidance_scale", "nan")), r"--guidance_scale nan: must be between 0.0 and 30.0"),
    (dict(args=("--fps", "inf")), r"--fps inf: must be between 1.0 and 120.0"),
    (dict(args=("--num_inference_steps", "0")), r"--num_inference_steps 0: must be between 1 and 1000"),
    (dict(args=("--seed", "-1")), r"--seed -1: must be between 0 and"),
    (dict(args=("--audio_attention_weight", "-2")), r"--audio_attention_weight -2.0: must be between 0.0 and 10.0"),
    (dict(args=("--num_pad_audio_frames", "3")), r"--num_pad_audio_frames 3: must be between 0 and 2"),
    (dict(args=("--guidance_interval", "0.6", "0.2")), r"--guidance_interval 0.6 0.2: needs 0 <= START < END <= 1"),
    (dict(args=("--head_motion_strength", "nan")), r"--head_motion_strength nan: must be between 0.0 and 3.0"),
    (dict(args=("--standard_audio_sampling_rate", "22050")),
     r"--standard_audio_sampling_rate 22050: the audio encoder \(.*\) takes 16000 Hz audio; leave the flag at 16000"),
    (dict(args=("--reference_video", "talk.mp4"), output="talk.mp4"), r"talk\.mp4 is also an input; choose another output file"),
    (dict(output="not_an_image.png/out.mp4"), r"not_an_image\.png: is a file, not a folder; choose another --output_path"),
    (dict(output="out.mov"), r"--output_path .*out\.mov: the output is an MP4 video"),
    (dict(image="no_face.png", args=("--retarget_strategy", "fix_face")), r"no_face\.png: no face found in the reference image; .* --reference_kps"),
    (dict(args=("--retarget_strategy", "fix_face", "--reference_kps", "10,10,50,10,30,90")), r"--reference_kps 10,10,50,10,30,90: a point lies outside the 64x64 portrait"),
])
def test_bad_input(setup, capsys, overrides, message):
    folder = setup["folder"]
    image = folder / overrides["image"] if "image" in overrides else None
    audio = folder / overrides["audio"] if "audio" in overrides else None
    output = folder / overrides["output"] if "output" in overrides else None
    args = [folder / a if a.endswith((".pth", ".npy", ".mp4")) else a for a in overrides.get("args", ())]
    status, err = call(setup, capsys, *args, image=image, audio=audio, output=output)
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(message, err[0]), err[0]


def test_missing_weight_file_names_it_and_the_download_command(setup, capsys):
    weights = weight_flags(setup["ckpts"])
    weights[weights.index("--motion_module_path") + 1] = str(setup["folder"] / "nowhere" / "motion_module.bin")
    status, err = call(setup, capsys, weights=weights)
    assert status == 2 and len(err) == 1
    assert "nowhere/motion_module.bin (motion-module weights)" in err[0]
    assert "python scripts/download_models.py" in err[0]


def test_missing_face_detector_names_the_download(setup, capsys):
    weights = weight_flags(setup["ckpts"])
    weights[weights.index("--insightface_model_path") + 1] = str(setup["folder"] / "no_insightface")
    status, err = call(setup, capsys, "--retarget_strategy", "fix_face", weights=weights)
    assert status == 2 and len(err) == 1 and "no insightface detector (.onnx) found; download it with" in err[0]


def test_a_full_disk_is_named_before_generating(tmp_path):
    with pytest.raises(InputError, match=r"MiB free, but this video needs about .* MiB; free some space or choose another --output_path"):
        check_output_location(tmp_path / "out.mp4", shutil.disk_usage(tmp_path).free * 2)
    check_output_location(tmp_path / "out.mp4", 1)  # room for a byte: fine


def test_cli_exit_status_and_silent_audio_warning(setup):
    output = setup["folder"] / "silent.mp4"
    result = run_cli("inference.py", "--reference_image_path", setup["folder"] / "missing.png", "--audio_path", setup["audio"], "--output_path", output)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {setup['folder'] / 'missing.png'}: reference image not found"]
    sf.write(setup["folder"] / "silence.wav", np.zeros(8000, np.float32), 16000)
    result = run_cli(
        "inference.py", "--reference_image_path", setup["image"], "--audio_path", setup["folder"] / "silence.wav",
        "--output_path", output, "--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 1, *weight_flags(setup["ckpts"]),
    )
    assert result.returncode == 0 and "the audio is silent" in result.stderr and output.is_file()


def layout_files() -> list[tuple[str, str]]:
    """(ModelPaths field, the file it must hold, "" for the field's own file, "a|b" for either) for every file of
    the model folder layout."""
    return [(f.name, names) for f in dataclasses.fields(ModelPaths) for names in f.metadata["required"]]


@pytest.mark.parametrize("spoilt", ["empty", "truncated"])
@pytest.mark.parametrize("field_name, names", layout_files())
def test_an_empty_or_truncated_model_file_is_named_in_one_line(setup, tmp_path, field_name, names, spoilt):
    paths = ModelPaths.under(setup["ckpts"])
    original = Path(getattr(paths, field_name))
    if names:  # a folder: a copy of it holding the spoilt file
        copy = shutil.copytree(original, tmp_path / original.name)
        target = next(copy / name for name in names.split("|") if (copy / name).is_file())
    else:
        copy = target = Path(shutil.copy(original, tmp_path / original.name))
    data = target.read_bytes()
    target.write_bytes(b"" if spoilt == "empty" else data[: len(data) // 2])
    with pytest.raises(VExpressError) as raised:
        if field_name == "insightface_model_path":
            FaceDetector(copy, image_size=(SIZE, SIZE))
        else:
            load_pipeline(dataclasses.replace(paths, **{field_name: str(copy)}))
    message = str(raised.value)
    assert "\n" not in message and str(copy) in message and "download" in message, message
    assert spoilt != "empty" or f"{target}: empty file" in message or f"empty model file {target}" in message, message


def test_cli_names_an_empty_weight_file_in_one_line(setup, tmp_path):
    empty = tmp_path / "motion_module.bin"
    empty.touch()
    weights = weight_flags(setup["ckpts"])
    weights[weights.index("--motion_module_path") + 1] = str(empty)
    result = run_cli("inference.py", "--reference_image_path", setup["image"], "--audio_path", setup["audio"], "--output_path", tmp_path / "out.mp4", *weights)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: empty model file {empty} (motion-module weights, 0 bytes); download the weights with: python scripts/download_models.py"
    ]


def test_first_line_of_a_message_less_error():
    assert first_line(EOFError()) == "EOFError"
    assert first_line(ValueError("\n  \nsecond line\nthird")) == "second line"
    assert first_line(ValueError("x" * 500), limit=10) == "x" * 10


def test_an_output_another_run_writes_is_refused_in_one_line(setup, capsys):
    output = setup["folder"] / "out.mp4"
    with output_lock(output):  # this process holds it, as another run would
        status, err = call(setup, capsys)
    assert status == 2 and err == [
        f"error: {output} is being written by another run (pid {os.getpid()}); wait for it or choose another --output_path"
    ]
    assert not list(setup["folder"].glob(".out.*"))  # the lock went with its holder


def test_two_writers_of_one_file_never_touch_each_other(tmp_path):
    target = tmp_path / "out.mp4"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("first")
        second.write_text("second")
        assert leftover_partials(target) == sorted([first, second])
    assert target.read_text() == "first" and not leftover_partials(target)  # the outer block finished last
    (tmp_path / ".out.partial-x.partial-1-0123abcd.mp4").touch()  # another output's ("out.partial-x.mp4")
    assert not leftover_partials(target)


def test_ctrl_c_while_loading_is_one_line(setup, capsys, monkeypatch):
    import app.generation

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C as the networks load
        return load_pipeline(*args, **kwargs)

    monkeypatch.setattr(app.generation, "load_pipeline", interrupted)
    leftovers = [setup["folder"] / ".out.partial-1-0123abcd.mp4", setup["folder"] / "..out.mp4.resume.partial-1-0123abcd.safetensors"]
    for leftover in leftovers:
        leftover.touch()  # of a run killed while writing: the next run on the output clears them
    status, err = call(setup, capsys, "--kps_path", setup["kps"])
    assert status == 130 and err == ["interrupted; nothing was written"]
    assert not list(setup["folder"].glob(".out.*")) and not any(leftover.exists() for leftover in leftovers)


def test_ffmpeg_running_out_of_space_is_recognised(tmp_path):
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=30", "-t", "1", "-f", "mp4", "-y", "/dev/full"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0
    assert out_of_space(tmp_path, result.stderr) and not out_of_space(tmp_path, "Invalid data found when processing input")


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (mounting one needs root), unmounted afterwards."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_while_writing_the_video_is_one_line_and_keeps_the_denoising(setup, small_disk, capsys):
    output = small_disk / "out.mp4"
    argv = [
        "--reference_image_path", str(setup["image"]), "--audio_path", str(setup["audio"]), "--output_path", str(output),
        "--image_width", str(SIZE), "--image_height", str(SIZE), "--num_inference_steps", "2", *weight_flags(setup["ckpts"]),
    ]
    request = parse_request(argv)  # the request inference.py makes of these flags (run again below to resume)
    inputs = check_request(request)  # room enough for it; then the disk fills up
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 64 * 1024))  # the resume state fits, the video not
    with pytest.raises(VExpressError, match=rf"^no space left on device while writing {re.escape(str(output))} \(\d+ MB needed\)$"):
        VideoGenerator(request).generate(request, inputs)
    state = state_path(output)
    assert sorted(small_disk.iterdir()) == sorted([filler, state])  # no video, no temporary file, no lock
    with safe_open(state, framework="pt") as saved:
        assert json.loads(saved.metadata()["resume"])["step"] == 2  # saved as the run stopped

    filler.unlink()
    assert inference.main(argv) == 0
    assert f"resuming from {state}: denoising step 2 of 2 done" in capsys.readouterr().err
    assert output.is_file() and not state.exists()
