"""scripts/extract_kps_sequence_and_audio.py on a generated video whose face (a marker) moves along a known path."""

import numpy as np
import torch

from helpers.cli import ROOT, run_cli, write_lossless_video
from helpers.marker_detector import draw_marker, expected_kps, write_marker_detector
from media.audio import load_audio
from motion.keypoints import load_kps_sequence


def test_keypoints_follow_the_face_and_gaps_are_filled(tmp_path):
    detector_root = write_marker_detector(tmp_path / "insightface")
    path = [(16 + 8 * (i // 6), 32) for i in range(24)]
    frames = [np.full((64, 64, 3), 60, np.uint8) for _ in path]
    for i, (x, y) in enumerate(path):
        if i != 10:  # frame 10: no face
            draw_marker(frames[i], x, y)
    video = write_lossless_video(tmp_path / "talk.mp4", np.stack(frames), 24, ROOT / "test_samples" / "speech.wav")
    result = run_cli(
        "scripts/extract_kps_sequence_and_audio.py", "--video_path", video, "--kps_sequence_save_path", tmp_path / "kps.pth",
        "--audio_save_path", tmp_path / "audio.wav", "--insightface_model_path", detector_root, "--width", 64, "--height", 64, "--device", "cpu",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no face in 1 of 24 frames" in result.stderr
    kps = load_kps_sequence(tmp_path / "kps.pth")
    numpy_types = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType]
    with torch.serialization.safe_globals(numpy_types):  # how the published code's users read it, weights-only
        plain = torch.load(tmp_path / "kps.pth", weights_only=True)
    assert isinstance(plain, list) and plain[0].dtype == np.float32 and plain[0].shape == (3, 2)
    for i, (x, y) in enumerate(path):
        if i != 10:
            np.testing.assert_allclose(kps[i], expected_kps(x, y))
    np.testing.assert_allclose(kps[10], (expected_kps(*path[9]) + expected_kps(*path[11])) / 2)
    assert abs(len(load_audio(tmp_path / "audio.wav")) / 16000 - 1.0) < 0.06  # the video lasts 1 s; audio cut to it


def test_video_without_audio_still_gives_keypoints(tmp_path):
    detector_root = write_marker_detector(tmp_path / "insightface")
    video = write_lossless_video(tmp_path / "mute.mp4", np.stack([draw_marker(np.full((64, 64, 3), 60, np.uint8), 24, 32)] * 5), 25)
    result = run_cli(
        "scripts/extract_kps_sequence_and_audio.py", "--video_path", video, "--kps_sequence_save_path", tmp_path / "kps.pth",
        "--audio_save_path", tmp_path / "audio.wav", "--insightface_model_path", detector_root, "--width", 64, "--height", 64,
    )
    assert result.returncode == 0 and "has no audio track" in result.stderr
    assert load_kps_sequence(tmp_path / "kps.pth").shape == (5, 3, 2) and not (tmp_path / "audio.wav").exists()
