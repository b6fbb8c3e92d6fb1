"""Every bad input: one clear line on stderr, exit status 2, no output file, before any network loads."""

import pickle
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import inference
from cli_helpers import SIZE, make_inputs, make_model_ckpts, run_cli, weight_flags
from pipelines.generation import InputError, check_output_location


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
    (dict(image="no_face.png", args=("--retarget_strategy", "fix_face")), r"no_face\.png: no face found in the reference image"),
])
def test_bad_input(setup, capsys, overrides, message):
    folder = setup["folder"]
    image = folder / overrides["image"] if "image" in overrides else None
    audio = folder / overrides["audio"] if "audio" in overrides else None
    output = folder / overrides["output"] if "output" in overrides else None
    args = [folder / a if a.endswith((".pth", ".mp4")) else a for a in overrides.get("args", ())]
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
