"""scripts/learning_check.py: its scores tell a clip that follows the audio and keypoints from a still face, and a
short run trains, scores, draws the README's figure and re-measures without training again."""

import numpy as np
from PIL import Image

from helpers.cli import run_cli
from media.video import read_video
from scripts.learning_check import SIZE, follow_scores, lip_pose_identity
from scripts.make_synthetic_dataset import synthetic_clip


def test_scores_tell_a_following_clip_from_a_still_face():
    frames, _, face_info, opening = synthetic_clip(48, 25, SIZE, seed=3)
    driving_kps = np.stack([faces[0]["kps"][:3] for faces in face_info])

    truth = follow_scores(frames, driving_kps, opening)
    still = follow_scores(np.repeat(frames[:1], len(frames), axis=0), driving_kps, opening)

    assert truth["lip_sync_correlation"] > 0.9 and still["lip_sync_correlation"] < 0.5
    assert truth["face_centre_error_px"] < 0.5 < 1.0 < still["face_centre_error_px"]
    assert truth["eye_error_px"] < 0.5 < 1.0 < still["eye_error_px"]
    assert truth["frames_without_face"] == truth["frames_without_eyes"] == 0


def test_lip_pose_and_identity_scores_of_the_truth_and_of_a_still_face():
    frames, audio, face_info, opening = synthetic_clip(60, 25, SIZE, seed=108)  # the learning check's held-out clip
    kps = np.stack([faces[0]["kps"][:3] for faces in face_info])
    truth = lip_pose_identity(frames, kps, opening, audio, frames[0], kps[0])
    still = lip_pose_identity(np.repeat(frames[:1], len(frames), axis=0), kps, opening, audio, frames[0], kps[0])
    assert truth["lip_sync_correlation"] > 0.9 and still["lip_sync_correlation"] < 0.5
    assert truth["silent_lip_stability"] is not None and truth["silent_lip_opening"] < still["silent_lip_opening"] + 0.05
    assert truth["eye_error_px"] < 0.5 < 1.0 < still["eye_error_px"]
    assert truth["identity"] > 0.9 and truth["lip_sync"] < still["lip_sync"]


def test_short_run_trains_scores_and_draws_the_figure(tmp_path):
    work = tmp_path / "check"
    args = ("--work_dir", work, "--steps", 2, "--clips", 1, "--frames", 24, "--vae_steps", 2, "--inference_steps", 2)

    first = run_cli("scripts/learning_check.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "trained 2 steps on 1 clips in" in first.stdout
    for row in ("lip_sync_correlation", "face_centre_error_px", "eye_error_px"):
        assert row in first.stdout
    trained = sorted((work / "run").glob("*-2.pth"))
    assert [path.name for path in trained] == [
        "audio_projection-2.pth", "denoising_unet-2.pth", "motion_module-2.pth", "reference_net-2.pth", "v_kps_guider-2.pth",
    ]

    # Two rows of five 64x64 tiles enlarged 3x; the top-left tile is the portrait.
    figure = np.asarray(Image.open(work / "inputs_and_outputs.png").convert("RGB"))
    assert figure.shape == (2 * SIZE * 3, 5 * SIZE * 3, 3)
    # The portrait: the held-out clip's frame with the mouth most closed.
    opening = np.load(work / "data" / "videos" / "clip_001_mouth_opening.npy")
    reference = read_video(work / "data" / "videos" / "clip_001.mp4")[0][int(np.argmin(opening))]
    np.testing.assert_array_equal(figure[:SIZE * 3:3, :SIZE * 3:3], reference)
    assert (figure[SIZE * 3:, :SIZE * 3] == 255).all()

    modified = {path: path.stat().st_mtime_ns for path in trained}
    second = run_cli("scripts/learning_check.py", *args, "--lip_modes")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(trained before)" in second.stdout
    table = (work / "lip_modes.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| published (ddim, 25 steps)", "| --preset balanced", "| --preset fast", "| --head_motion natural (a still portrait)",
        "| similarity_retarget (another clip's motion)", "| --mouth_in_silence rest"]
    assert table[2].split(" | ")[1] == "1.00×" and "\n".join(table) in second.stdout
    assert {path: path.stat().st_mtime_ns for path in trained} == modified
