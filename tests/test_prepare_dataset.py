"""scripts/prepare_dataset/prepare_dataset.py on generated clips: a face (marker) on a known path with speech,
a clip with a frame without a face, one with two faces, one without sound; then --check."""

import json

import numpy as np
import pytest
import torch

from helpers.cli import ROOT, run_cli, write_lossless_video
from helpers.marker_detector import draw_marker, expected_kps, expected_landmarks, write_landmark_model, write_marker_detector
from training.dataset_files import load_audio_embeddings, load_face_info, read_meta
from modules.checkpoints import numpy_allowlist
from training.dataset import TalkingHeadDataset
from scripts.make_tiny_checkpoints import write_tiny_checkpoints

SIZE, FPS, FRAMES = 64, 25, 50
SPEECH = ROOT / "test_samples" / "speech.wav"


def marker_path(num_frames=FRAMES):
    return [(16 + 8 * ((i // 10) % 3), 24 + 8 * ((i // 25) % 2)) for i in range(num_frames)]


def clip_frames(path, skip_frame=None, second_face_frame=None):
    frames = np.full((len(path), SIZE, SIZE, 3), 60, np.uint8)
    for i, (x, y) in enumerate(path):
        if i != skip_frame:
            draw_marker(frames[i], x, y)
        if i == second_face_frame:
            draw_marker(frames[i], 48, 48)
    return frames


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_ckpts")
    write_tiny_checkpoints(root)
    write_marker_detector(root / "insightface_models")
    write_landmark_model(root / "insightface_models")
    return root


def prepare(videos, out, models, *extra):
    return run_cli(
        "scripts/prepare_dataset/prepare_dataset.py", "--videos_dir", videos, "--output_dir", out, "--device", "cpu",
        "--insightface_model_path", models / "insightface_models", "--audio_encoder_path", models / "wav2vec2-base-960h",
        "--det_size", SIZE, *extra,
    )


def test_prepares_good_clips_skips_bad_ones_resumes_and_checks(tmp_path, models):
    videos = tmp_path / "videos"
    videos.mkdir()
    path = marker_path()
    write_lossless_video(videos / "a_good.mp4", clip_frames(path), FPS, SPEECH)
    write_lossless_video(videos / "b_missing.mp4", clip_frames(path, skip_frame=7), FPS, SPEECH)
    write_lossless_video(videos / "c_two_faces.mp4", clip_frames(path, second_face_frame=3), FPS, SPEECH)
    write_lossless_video(videos / "d_mute.mp4", clip_frames(path), FPS)
    out = tmp_path / "data"

    result = prepare(videos, out, models)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 clips prepared, 0 already done, 3 skipped" in result.stdout
    assert "b_missing.mp4: frame 7 has 0 faces" in result.stderr
    assert "c_two_faces.mp4: frame 3 has 2 faces" in result.stderr
    assert "d_mute.mp4: no usable audio track" in result.stderr

    clips = read_meta(out / "meta.json")
    assert [c["video"] for c in clips] == [str((videos / "a_good.mp4").resolve())]
    assert not json.loads((out / "meta.json").read_text())[0]["video"].startswith("/")  # portable: relative paths
    face_info = load_face_info(clips[0]["face_info"])
    assert len(face_info) == FRAMES
    for record, (x, y) in zip(face_info, path):
        np.testing.assert_allclose(record["kps"][:3], expected_kps(x, y))
        np.testing.assert_allclose(record["landmark_2d_106"], expected_landmarks(x, y), atol=1e-3)
        assert record["bbox"].shape == (4,) and 0.5 < record["det_score"] <= 1
    with torch.serialization.safe_globals(numpy_allowlist()):  # a plain weights-only load reads it too
        assert len(torch.load(clips[0]["face_info"], weights_only=True)[0]) == 1
    embeds = torch.load(clips[0]["audio_embeds"], weights_only=True)["global_embeds"]
    assert embeds.shape[1] == 1 and abs(embeds.shape[0] - 50 * FRAMES / FPS) <= 2
    assert load_audio_embeddings(clips[0]["audio_embeds"]).shape == (embeds.shape[0], embeds.shape[2])

    # The training dataset reads what was prepared: its lip mask sits on the detected mouth.
    sample = TalkingHeadDataset([out / "meta.json"], width=SIZE, height=SIZE, num_frames=4, reference_margin=5, flip_rate=0.0, crop_ratio=(1.0, 1.0))[0]
    assert sample["targets"].shape == (3, 4, SIZE, SIZE) and sample["audio"].shape == (4, 10, embeds.shape[2])
    mouths = [expected_landmarks(x, y)[52:72].mean(axis=0) / 8 for x, y in path]
    first_mask = sample["lip_masks"][0, 0]
    assert any(first_mask[int(cy), int(cx)] == first_mask.max() > 0 for cx, cy in mouths)

    # Resumable: nothing is redone, skipped clips are remembered.
    mtime = (out / "face_info" / "a_good.pt").stat().st_mtime_ns
    again = prepare(videos, out, models)
    assert again.returncode == 0 and "0 clips prepared, 1 already done, 3 skipped" in again.stdout
    assert (out / "face_info" / "a_good.pt").stat().st_mtime_ns == mtime

    check = run_cli("scripts/prepare_dataset/prepare_dataset.py", "--check", "--meta_path", out / "meta.json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "a_good.mp4" in check.stdout and "ok" in check.stdout and "1 of 1 clips ok" in check.stdout

    # A face-info file that no longer matches its video is reported.
    with torch.serialization.safe_globals(numpy_allowlist()):
        torch.save(torch.load(clips[0]["face_info"], weights_only=True)[:-3], clips[0]["face_info"])
    check = run_cli("scripts/prepare_dataset/prepare_dataset.py", "--check", "--meta_path", out / "meta.json")
    assert check.returncode == 1 and f"{FRAMES - 3} face records for {FRAMES} video frames" in check.stdout


def test_missing_models_give_clear_messages(tmp_path, models):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_lossless_video(videos / "clip.mp4", clip_frames(marker_path(5)), FPS, SPEECH)
    detector_only = write_marker_detector(tmp_path / "detector_only")
    result = run_cli(
        "scripts/prepare_dataset/prepare_dataset.py", "--videos_dir", videos, "--output_dir", tmp_path / "out",
        "--insightface_model_path", detector_only, "--audio_encoder_path", models / "wav2vec2-base-960h",
    )
    assert result.returncode == 2 and "no landmark_2d_106 model" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(
        "scripts/prepare_dataset/prepare_dataset.py", "--videos_dir", videos, "--output_dir", tmp_path / "out",
        "--insightface_model_path", tmp_path / "nowhere",
    )
    assert result.returncode == 2 and "download_models.py --include insightface_models" in result.stderr
    assert not (tmp_path / "out" / "meta.json").exists()
