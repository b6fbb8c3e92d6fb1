"""Motion beyond the published strategies, against synthetic faces of known geometry: similarity_retarget,
the speech-driven head motion, and the driving-sequence fits; and the MP4 preview that plans the same frames.

`python tests/test_motion.py` prints the table of retargeting errors that docs/motion.md shows."""

import functools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `python tests/test_motion.py`

from motion.head_motion import AMPLITUDES, MAX_OFFSET_SPEED, head_offsets, sway  # noqa: E402
from motion.keypoints import KpsError, draw_kps_image, hand_placed_kps, load_kps_sequence, resample_kps_sequence
from motion.retarget import RETARGET_STRATEGIES, retarget_kps  # noqa: E402
from motion.plan import LOOP_CROSSFADE_FRAMES, fit_kps_sequence, plan_keypoints  # noqa: E402
from motion.retarget import face_pose, pose_kps  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("fix_face", "no_retarget", "offset_retarget", "naive_retarget")
FPS, RATE = 30.0, 16000


# ---- synthetic faces: eyes on the x axis, the nose tip below and in front of them, seen without perspective ----

def project_head(eye_distance, nose_drop, nose_depth, roll=0.0, turn=0.0, nod=0.0, scale=1.0, centre=(0.0, 0.0)):
    """Left eye, right eye, nose (3, 2) image pixels of a head with eyes at (-+eye_distance / 2, 0, 0) and the nose
    at (0, nose_drop, nose_depth) (x right, y down, z to the camera), nodded about the eye line (degrees, positive
    raises the nose), turned about the vertical (positive: nose to the right), then rolled on screen, scaled and
    moved so that the eye midpoint lands on `centre`."""
    points = np.array([[-eye_distance / 2, 0, 0], [eye_distance / 2, 0, 0], [0, nose_drop, nose_depth]], dtype=np.float64)
    n, t, r = np.radians([nod, turn, roll])
    nod_matrix = np.array([[1, 0, 0], [0, np.cos(n), -np.sin(n)], [0, np.sin(n), np.cos(n)]])
    turn_matrix = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    roll_matrix = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    on_screen = (points @ (turn_matrix @ nod_matrix).T)[:, :2]
    return on_screen @ roll_matrix.T * scale + np.asarray(centre)


# The driver and the portrait differ in proportions (nose drop / eye distance 0.83 and 0.60) but not in how far the
# nose stands out (0.6 eye distances): the one thing three 2D points cannot tell.
DRIVER = dict(eye_distance=60.0, nose_drop=50.0, nose_depth=36.0)
PORTRAIT = dict(eye_distance=90.0, nose_drop=54.0, nose_depth=54.0)
PORTRAIT_ROLL, PORTRAIT_CENTRE, DRIVER_CENTRE = 4.0, np.array([250.0, 230.0]), np.array([300.0, 260.0])
REST, RIGID, TURNING = slice(0, 40), slice(0, 100), slice(100, 160)


def driver_path(num_frames: int = 160) -> dict:
    """Frames 0-39 at rest; from 40 on, roll +-12 deg, scale +-15 %, translation (+-0.4, +-0.25) face sizes, in
    whole periods; from 100 on also turns of +-20 deg and nods of +-10 deg."""
    t = np.arange(num_frames, dtype=np.float64)
    wave = lambda period: np.where(t >= 40, np.sin(2 * np.pi * (t - 40) / period), 0.0)  # noqa: E731
    turning = np.where(t >= 100, 1.0, 0.0)
    return dict(
        roll=12 * wave(60), scale=1 + 0.15 * wave(30), shift=np.stack([0.4 * wave(60), 0.25 * wave(20)], axis=1),
        turn=20 * turning * np.sin(2 * np.pi * (t - 100) / 60), nod=10 * turning * np.sin(2 * np.pi * (t - 100) / 30),
    )


def faces_along(path: dict, face: dict, roll: float, centre: np.ndarray) -> np.ndarray:
    """(L, 3, 2) float32: `face` at rest at (roll, centre), moved along `path` (translation in its own face sizes)."""
    return np.stack([
        project_head(**face, roll=roll + path["roll"][i], turn=path["turn"][i], nod=path["nod"][i], scale=path["scale"][i],
                     centre=centre + path["shift"][i] * face["eye_distance"])
        for i in range(len(path["roll"]))
    ]).astype(np.float32)


def measures(kps) -> dict:
    """Roll (deg), eye midpoint, eye distance and nose-to-eye-line distance / eye distance, per frame."""
    kps = np.asarray(kps, dtype=np.float64)
    left, right, nose = kps[:, 0], kps[:, 1], kps[:, 2]
    line, to_nose = right - left, nose - left
    eye_distance = np.linalg.norm(line, axis=1)
    nose_offset = np.abs(line[:, 0] * to_nose[:, 1] - line[:, 1] * to_nose[:, 0]) / eye_distance
    return dict(roll=np.degrees(np.arctan2(line[:, 1], line[:, 0])), centre=(left + right) / 2, eye_distance=eye_distance,
                proportion=nose_offset / eye_distance)


@functools.cache
def retarget_errors() -> dict:
    """{strategy: {check: largest error}} on the synthetic driver, against the portrait moved the same way."""
    path = driver_path()
    driving = faces_along(path, DRIVER, 0.0, DRIVER_CENTRE)
    reference = project_head(**PORTRAIT, roll=PORTRAIT_ROLL, centre=PORTRAIT_CENTRE).astype(np.float32)
    truth = faces_along(path, PORTRAIT, PORTRAIT_ROLL, PORTRAIT_CENTRE)
    expected, face_size = measures(truth), PORTRAIT["eye_distance"]
    table = {}
    for strategy in RETARGET_STRATEGIES:
        kps = retarget_kps(reference, driving, strategy, num_frames=len(driving)).numpy()
        got = measures(kps)
        table[strategy] = {
            "roll (deg)": np.abs((got["roll"] - expected["roll"] + 180) % 360 - 180).max(),
            "translation (% face)": 100 * np.linalg.norm(got["centre"] - expected["centre"], axis=1).max() / face_size,
            "eye distance (%)": 100 * np.abs(got["eye_distance"] / expected["eye_distance"] - 1)[RIGID].max(),
            "nose offset / eye distance (%)": 100 * np.abs(got["proportion"] / expected["proportion"] - 1)[RIGID].max(),
            "keypoints in turns and nods (% face)": 100 * np.linalg.norm(kps - truth, axis=2)[TURNING].max() / face_size,
        }
    return table


BOUNDS = {"roll (deg)": 1.0, "translation (% face)": 2.0, "eye distance (%)": 2.0, "nose offset / eye distance (%)": 2.0,
          "keypoints in turns and nods (% face)": 2.0}


def test_similarity_retarget_follows_the_driver_and_keeps_the_portrait():
    errors = retarget_errors()["similarity_retarget"]
    assert all(errors[check] < bound for check, bound in BOUNDS.items()), errors


@pytest.mark.parametrize("strategy", PUBLISHED)
def test_published_strategies_fail_the_same_checks(strategy):
    """Roll, translation and turns are where similarity_retarget claims better: every published strategy fails them;
    no_retarget also keeps the driver's proportions, fix_face and offset_retarget ignore its scale."""
    errors = retarget_errors()[strategy]
    failing = {check for check, bound in BOUNDS.items() if errors[check] >= bound}
    assert {"roll (deg)", "translation (% face)", "keypoints in turns and nods (% face)"} <= failing, errors
    if strategy != "naive_retarget":
        assert failing & {"eye distance (%)", "nose offset / eye distance (%)"}, errors


def test_pose_round_trip_and_own_neutral_face():
    kps = load_kps_sequence(ROOT / "test_samples" / "kps_sequence.pth")
    assert np.abs(pose_kps(face_pose(kps)).numpy() - kps).max() < 1e-3
    driving = faces_along(driver_path(), DRIVER, 0.0, DRIVER_CENTRE)
    # the portrait is the driver's own resting face: its motion comes back unchanged
    assert np.abs(retarget_kps(driving[0], driving, "similarity_retarget").numpy() - driving).max() < 1e-3


def test_neutral_pose_ignores_glitched_frames():
    """Three frames where the detector caught a small frontal face elsewhere: naive_retarget takes one of them as
    its anchor (the closest head turn) and every frame moves; similarity_retarget's median pose does not."""
    path = driver_path()
    path["turn"][:100] = 3.0  # the driver rests slightly turned, so the frontal glitches are the closest turn
    driving = faces_along(path, DRIVER, 0.0, DRIVER_CENTRE)
    glitched = driving.copy()
    glitched[[50, 70, 90]] = project_head(eye_distance=25, nose_drop=30, nose_depth=15, centre=(60, 400))
    reference = project_head(**PORTRAIT, centre=PORTRAIT_CENTRE).astype(np.float32)
    kept = np.setdiff1d(np.arange(len(driving)), [50, 70, 90])
    moved = lambda strategy: np.abs(  # noqa: E731
        retarget_kps(reference, glitched, strategy).numpy()[kept] - retarget_kps(reference, driving, strategy).numpy()[kept]).max()
    assert moved("similarity_retarget") < 0.5
    assert moved("naive_retarget") > 10


# ---- fitting a driving sequence to the video's length ----

def short_driver(num_frames: int = 50) -> torch.Tensor:
    """(N, 3, 2): a drifting, wobbling face whose last frame is far from its first (a hard loop would jump)."""
    t = torch.arange(num_frames, dtype=torch.float32)[:, None, None]
    base = torch.tensor([[220.0, 173.0], [294.0, 175.0], [255.0, 211.0]])
    return base + t * torch.tensor([0.8, 0.3]) + 3 * torch.sin(t / 4) * torch.tensor([1.0, -0.5])


def steps(kps) -> torch.Tensor:
    """(L, 3, 2) -> (L - 1,) the largest keypoint move from each frame to the next, pixels."""
    return (kps[1:] - kps[:-1]).norm(dim=-1).amax(dim=-1)


def test_loop_and_cut_keep_the_driver_speed_and_cross_fade_the_seam():
    driver, length = short_driver(), 170
    period = len(driver) - LOOP_CROSSFADE_FRAMES  # each pass after the first: 6 cross-faded frames, then 6 .. 43
    looped = fit_kps_sequence(driver, length, "loop")
    assert looped.shape == (length, 3, 2) and torch.equal(fit_kps_sequence(driver, length, "cut"), looped)
    assert torch.equal(looped[:period], driver[:period])
    for start in range(period, length, period):  # away from the seams, each step is the driver's own step
        plain = slice(start + LOOP_CROSSFADE_FRAMES, min(start + period, length))
        assert torch.equal(looped[plain], driver[LOOP_CROSSFADE_FRAMES: LOOP_CROSSFADE_FRAMES + plain.stop - plain.start])
    gap = (driver[:LOOP_CROSSFADE_FRAMES] - driver[-LOOP_CROSSFADE_FRAMES:]).norm(dim=-1).max()
    seam_limit = steps(driver).max() + gap / (LOOP_CROSSFADE_FRAMES + 1) + 1e-4
    assert steps(looped).max() <= seam_limit
    assert steps(torch.cat([driver, driver])).max() > 2 * seam_limit  # a loop without the cross-fade jumps
    assert steps(fit_kps_sequence(driver, length, "stretch")).max() < 0.5 * steps(driver).max()  # stretch slows it down


def test_pingpong_keeps_the_speed_without_a_jump():
    driver, length = short_driver(), 170
    bounced = fit_kps_sequence(driver, length, "pingpong")
    driver_steps = steps(driver)
    expected = torch.cat([driver_steps, driver_steps.flip(0)]).repeat(3)[: length - 1]  # forwards, backwards, ...
    assert torch.allclose(steps(bounced), expected, atol=1e-4)
    assert torch.equal(bounced[49], driver[49]) and torch.equal(bounced[50], driver[48]) and torch.equal(bounced[98], driver[0])


def test_every_fit_takes_the_first_frames_of_a_long_driver():
    driver = short_driver(80)
    for fit in ("stretch", "loop", "pingpong", "cut"):
        assert torch.equal(fit_kps_sequence(driver, 30, fit), driver[:30]), fit
    assert torch.equal(fit_kps_sequence(driver[:1], 5, "loop"), driver[:1].expand(5, 3, 2))
    assert torch.equal(fit_kps_sequence(driver[:1], 5, "pingpong"), driver[:1].expand(5, 3, 2))


# ---- plan_keypoints: the defaults are today's keypoints ----

def test_plan_defaults_are_todays_keypoints():
    driving = load_kps_sequence(ROOT / "test_samples" / "kps_sequence.pth")
    reference = driving[0] * np.float32(0.9) + np.float32(12)
    for length in (100, 400):  # the driver cut, and the driver stretched
        for strategy in RETARGET_STRATEGIES:
            planned = plan_keypoints(reference, driving, length, strategy=strategy)
            today = retarget_kps(reference, resample_kps_sequence(driving, length), strategy, num_frames=length)
            assert planned.dtype == torch.float32 and torch.equal(planned, today), (strategy, length)
    assert torch.equal(plan_keypoints(reference, None, 7, strategy="fix_face"), retarget_kps(reference, None, "fix_face", num_frames=7))
    assert torch.equal(plan_keypoints(None, driving, 50, strategy="no_retarget"), torch.as_tensor(driving[:50]))


@pytest.mark.parametrize("change, message", [
    (dict(strategy="mirror"), "unknown retarget strategy"), (dict(kps_fit="bounce"), "unknown keypoint fit"),
    (dict(head_motion="wild"), "unknown head motion"), (dict(num_frames=0), "num_frames"),
    (dict(driving_kps=None), "needs driving keypoints"), (dict(reference_kps=None), "needs the reference keypoints"),
    (dict(head_motion="natural"), "needs the waveform"),
    (dict(head_motion="natural", waveform=np.zeros(RATE), head_motion_strength=float("nan")), "strength"),
    (dict(driving_kps=np.zeros((4, 2, 2))), r"\(frames, 3, 2\)"),
])
def test_plan_rejects_bad_arguments(change, message):
    arguments = dict(reference_kps=np.ones((3, 2)), driving_kps=np.ones((4, 3, 2)), num_frames=8, strategy="similarity_retarget") | change
    with pytest.raises(ValueError, match=message):
        plan_keypoints(arguments.pop("reference_kps"), arguments.pop("driving_kps"), arguments.pop("num_frames"), **arguments)


# ---- head motion ----

REFERENCE = np.array([[220.0, 173.0], [294.0, 175.0], [255.0, 211.0]], dtype=np.float32)  # the sample's first frame, rounded
QUIET, SILENT, LOUD = (0.0, 3.5), (3.5, 6.0), (6.0, 11.4)  # seconds of the test speech


@functools.cache
def speech_sample() -> np.ndarray:
    """31 s at 16 kHz cut from the sample speech: its first 3.5 s at -14 dB, 2.5 s of silence, the rest at full
    level; then pieces of it at other levels between pauses, so that the envelope rises and falls often."""
    speech, rate = sf.read(ROOT / "test_samples" / "speech.wav", dtype="float32")
    assert rate == RATE
    piece = lambda start, stop, gain=1.0: speech[int(start * RATE): int(stop * RATE)] * np.float32(gain)  # noqa: E731
    pause = lambda seconds: np.zeros(int(seconds * RATE), np.float32)  # noqa: E731
    return np.concatenate([piece(0, 3.5, 0.2), pause(2.5), piece(3.5, 8.9), pause(3), piece(0, 3), pause(2), piece(3, 6, 0.3),
                           piece(6, 8.9), pause(3), piece(0, 3, 0.5)])


def frames_of(seconds) -> slice:
    return slice(round(seconds[0] * FPS), round(seconds[1] * FPS))


def natural_head(strategy="fix_face", driving=None, strength=1.0, seed=42) -> torch.Tensor:
    speech = speech_sample()
    return plan_keypoints(REFERENCE, driving, int(len(speech) / RATE * FPS), strategy=strategy, head_motion="natural",
                          head_motion_strength=strength, waveform=speech, fps=FPS, seed=seed)


def test_head_motion_is_seeded():
    assert torch.equal(natural_head(seed=7), natural_head(seed=7))
    assert not torch.allclose(natural_head(seed=7), natural_head(seed=8), atol=0.5)


def test_head_motion_stays_within_its_amplitudes_and_speed():
    speech, strength = speech_sample(), 2.0
    offsets = head_offsets(speech, RATE, int(len(speech) / RATE * FPS), FPS, strength)
    for name, amplitude in zip(offsets._fields, AMPLITUDES):
        values, bound = getattr(offsets, name), np.asarray(amplitude) * strength
        assert (np.abs(values) <= bound).all() and (np.abs(values).max(axis=0) > 0.25 * bound).all(), name
        assert (np.abs(np.diff(values, axis=0)) <= MAX_OFFSET_SPEED * bound / FPS).all(), name
    face_size = float(np.linalg.norm(REFERENCE[1] - REFERENCE[0]))
    assert steps(natural_head()).max() < 0.02 * face_size  # keypoints: under 2 % of the face size per frame


def test_head_motion_follows_the_speech():
    """The motion's energy (mean squared keypoint displacement from the portrait over 1 s) rises and falls with the
    speech envelope (mean RMS over the same 1 s), which the same random waves alone do not; the loud phrase moves
    the head more than the quiet one."""
    speech, kps = speech_sample(), natural_head().numpy()
    hop = RATE / FPS
    envelope = np.array([np.sqrt(np.mean(speech[round(i * hop): round((i + 1) * hop)] ** 2)) for i in range(len(kps))])
    one_second = lambda signal: np.convolve(signal, np.ones(int(FPS)) / FPS, mode="same")  # noqa: E731
    follows = lambda displacement: np.corrcoef(one_second(displacement ** 2), one_second(envelope))[0, 1]  # noqa: E731
    displacement = np.linalg.norm(kps - REFERENCE, axis=-1).max(axis=-1)
    generator = np.random.default_rng(42)
    waves_alone = np.abs([sway(len(kps), FPS, generator) for _ in range(3)]).max(axis=0)
    assert follows(displacement) > 0.5 > follows(waves_alone)
    rms_motion = lambda seconds: np.sqrt(np.mean(displacement[frames_of(seconds)] ** 2))  # noqa: E731
    assert rms_motion(LOUD) > 1.5 * rms_motion(QUIET)


def test_head_settles_back_in_a_silence():
    kps = natural_head().numpy()
    settled = frames_of((SILENT[0] + 0.6, SILENT[1] - 0.6))  # the motion fades over about 0.6 s
    assert np.abs(kps[settled] - REFERENCE).max() < 1.0
    assert np.abs(kps - REFERENCE).max() > 2.0  # and it did move while speaking
    assert np.abs(natural_head(strength=0.0).numpy() - REFERENCE).max() < 1e-3


def test_head_motion_on_top_of_a_retarget():
    driving = load_kps_sequence(ROOT / "test_samples" / "kps_sequence.pth")
    moving = natural_head("similarity_retarget", driving).numpy()
    still = plan_keypoints(REFERENCE, driving, len(moving), strategy="similarity_retarget").numpy()
    settled = frames_of((SILENT[0] + 0.6, SILENT[1] - 0.6))
    assert np.abs(moving[settled] - still[settled]).max() < 1.0 < np.abs(moving - still).max()


# ---- the preview ----

def test_preview_mp4_draws_the_planned_sequence(tmp_path):
    """One run of the script: similarity_retarget on the marker face, pingpong, natural head motion."""
    from helpers.cli import SIZE, inspect_mp4, make_inputs, run_cli
    from helpers.marker_detector import expected_kps, write_marker_detector
    from media.audio import load_audio
    from pipelines.context import num_frames_for_audio, video_length

    inputs, detector = make_inputs(tmp_path), write_marker_detector(tmp_path / "insightface")
    flags = ["--retarget_strategy", "similarity_retarget", "--kps_fit", "pingpong", "--head_motion", "natural", "--seed", 3]
    result = run_cli("scripts/preview_kps.py", "--reference_image_path", inputs["image"], "--kps_path", inputs["kps"],
                     "--audio_path", inputs["audio"], "--output_path", tmp_path / "preview.mp4", "--image_width", SIZE,
                     "--image_height", SIZE, "--insightface_model_path", detector, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    video, length = inspect_mp4(tmp_path / "preview.mp4"), video_length(num_frames_for_audio(1.5, 30))
    assert video["num_frames"] == length and video["size"] == (2 * SIZE, SIZE) and video["audio_codec"] == "aac"
    planned = plan_keypoints(
        expected_kps(24, 32), load_kps_sequence(inputs["kps"]), length, strategy="similarity_retarget", kps_fit="pingpong",
        head_motion="natural", waveform=load_audio(inputs["audio"]), fps=length / 1.5, seed=3).numpy()
    for i in (0, length // 2, length - 1):  # the left panel is the V-Kps image: its dots are where the plan puts them
        drawn, decoded = draw_kps_image(SIZE, SIZE, planned[i]), video["frames"][i][:, :SIZE]
        assert np.abs(dot_centres(decoded) - dot_centres(drawn)).max() < 1.0, i


def dot_centres(image: np.ndarray) -> np.ndarray:
    """(3, 2) centroids (x, y) of the pure red, green and blue dots of a V-Kps image (the limbs are darker)."""
    centres = []
    for channel in range(3):
        others = np.delete(image, channel, axis=-1).astype(int)
        ys, xs = np.nonzero((image[..., channel] > 200) & (others < 100).all(axis=-1))
        centres.append([xs.mean(), ys.mean()])
    return np.array(centres)


def test_preview_png_as_before_and_one_line_errors(tmp_path, capsys):
    from PIL import Image

    from scripts.preview_kps import main

    kps = load_kps_sequence(ROOT / "test_samples" / "kps_sequence.pth")
    portrait = ROOT / "test_samples" / "portrait.png"
    assert main(["--reference_image_path", str(portrait), "--kps_path", str(ROOT / "test_samples" / "kps_sequence.pth"),
                 "--output_path", str(tmp_path / "frame.png"), "--frame", "5"]) == 0
    image = np.asarray(Image.open(portrait).convert("RGB").resize((512, 512)))
    drawing = draw_kps_image(512, 512, kps[5])
    expected = np.concatenate([image, drawing, np.where(drawing.any(-1, keepdims=True), drawing, image // 2 + 64)], axis=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "frame.png")), expected)
    # fix_face with the portrait's keypoints placed by hand (its 512x512 pixels, drawn at 256x256): no detector needed.
    assert main(["--reference_image_path", str(portrait), "--reference_kps", "200,220,312,220,256,300", "--retarget_strategy", "fix_face",
                 "--kps_path", str(ROOT / "test_samples" / "kps_sequence.pth"), "--image_width", "256", "--image_height", "256",
                 "--output_path", str(tmp_path / "hand.png"), "--insightface_model_path", str(tmp_path / "no_detector")]) == 0
    drawn = np.asarray(Image.open(tmp_path / "hand.png").convert("RGB"))[:, 256:512]
    assert np.abs(dot_centres(drawn) - np.array([[100, 110], [156, 110], [128, 150]])).max() < 1.0
    capsys.readouterr()
    for flags, message in [
        (["--output_path", "out.gif"], "give a .png"), (["--head_motion", "natural", "--output_path", "o.mp4"], "give --audio_path"),
        (["--frame", "999", "--output_path", str(tmp_path / "o.png")], "--frame 999"),
        (["--kps_path", str(tmp_path / "missing.pth"), "--output_path", "o.png"], "keypoint file not found"),
    ]:
        args = ["--reference_image_path", str(portrait), "--kps_path", str(ROOT / "test_samples" / "kps_sequence.pth"), *flags]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description="Print README's table: each retarget strategy's largest errors on the synthetic driver.").parse_args()
    table = retarget_errors()
    checks = list(BOUNDS)
    print("| strategy | " + " | ".join(checks) + " |")
    print("|---|" + "---:|" * len(checks))
    for strategy, errors in table.items():
        print(f"| `{strategy}` | " + " | ".join(f"{errors[check]:.1f}" for check in checks) + " |")
    print("| bound for similarity_retarget | " + " | ".join(f"< {BOUNDS[check]:g}" for check in checks) + " |")


def test_hand_placed_keypoints_are_read_scaled_and_replace_the_detector(tmp_path):
    from PIL import Image

    from app.generation import plan_video_keypoints, prepare_portrait
    from app.requests import GenerationRequest

    placed = np.array([[50, 40], [150, 40], [100, 70]], np.float32)  # in a 200x100 portrait's pixels
    assert np.array_equal(hand_placed_kps("50,40, 150,40, 100,70", (200, 100)), placed)
    (tmp_path / "list.json").write_text("[[50, 40], [150, 40], [100, 70]]")
    (tmp_path / "named.json").write_text('{"left_eye": [50, 40], "right_eye": [150, 40], "nose": [100, 70]}')
    for file in ("list.json", "named.json"):
        assert np.array_equal(hand_placed_kps(str(tmp_path / file), (200, 100)), placed)
    for value, message in (("1,2,3", "not three points"), ("50,40,150,40,100,170", "a point lies outside the 200x100 portrait"),
                           (str(tmp_path / "missing.json"), "keypoint file not found"), ("a,b,c,d,e,f", "not three points")):
        with pytest.raises(KpsError, match=message):
            hand_placed_kps(value, (200, 100))

    def no_detector():
        raise AssertionError("the detector was asked although the keypoints were placed by hand")

    Image.new("RGB", (200, 100)).save(tmp_path / "portrait.png")
    request = GenerationRequest(reference_image_path=str(tmp_path / "portrait.png"), retarget_strategy="fix_face", image_width=64, image_height=64)
    portrait, hand_kps, paste = prepare_portrait(request, placed, no_detector)
    assert paste is None and portrait.size == (200, 100)
    assert np.allclose(hand_kps, placed * [64 / 200, 64 / 100])  # the portrait is resized to the video's 64x64
    kps, strategy = plan_video_keypoints(request, portrait, None, None, 5, 25.0, no_detector, print, hand_kps)
    assert strategy == "fix_face" and np.allclose(kps.numpy(), np.broadcast_to(hand_kps, (5, 3, 2)))

    # With --paste_back: a square crop around the placed face, the points in the crop's frame.
    portrait, hand_kps, paste = prepare_portrait(request.replace(paste_back=True), placed, no_detector)
    assert portrait.size == (paste.side, paste.side) == (100, 100) and (paste.x, paste.y) == (50, 0)  # kept inside the photo
    assert np.allclose(hand_kps, (placed - [50, 0]) * 64 / 100)
    from media.paste_back import canvas_size

    assert canvas_size(1920, 1080, 1280) == (1280, 720) and canvas_size(1281, 721, None) == (1280, 720)  # fitted, then even
