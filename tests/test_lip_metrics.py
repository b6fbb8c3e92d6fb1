"""The lip metrics (evaluation/lips.py), THEval's definitions, on real files: talking videos whose mouth opening is
drawn from real speech, read back by insightface's own code running a tiny model in 2d106det.onnx's layout (the
lower lip follows the drawn mouth), silero-vad's real network for the pauses; scripts/evaluate.py end to end."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from evaluation import lips
from helpers.cli import ROOT, write_lossless_video
from helpers.marker_detector import draw_marker, write_marker_detector

pytest.importorskip("silero_vad", reason="silero-vad is installed from requirements-eval.txt")

FPS, SIZE, RATE = 25, 128, 16000
MARKER = (56, 40)  # the marker detector's face box is then (32, 16)-(88, 72): centre (60, 44), 56 px
CENTRE, HALF = np.array([60.0, 44.0]), 42.0  # insightface's landmark crop: 1.5 x the box, so 1 crop unit = 42 px
MOUTH_TOP, MOUTH_LEFT, MOUTH_WIDTH = 62, 44, 32  # the drawn mouth: rows MOUTH_TOP .. MOUTH_TOP + opening
MOUTH_COLOUR = (160, 160, 40)  # on a (160, 160, 160) background: only blue drops, so red - blue counts mouth pixels
MAX_OPENING = 14  # pixels


def landmark_points() -> np.ndarray:
    """(106, 2) pixels of a closed mouth and level eyes (the indices evaluation/lips.py reads)."""
    points = np.tile(CENTRE, (106, 1))
    for index, x in zip((35, 39, 89, 93), (36, 52, 68, 84)):  # eye corners: 48 px apart outside, centres 32 px
        points[index] = (x, 32)
    points[list(lips.MOUTH)] = (60, MOUTH_TOP)
    for upper, lower, x in zip(lips.UPPER_INNER_LIP, lips.LOWER_INNER_LIP, (52, 60, 68)):
        points[upper] = points[lower] = (x, MOUTH_TOP)
    points[[52, 61]] = (44, MOUTH_TOP), (76, MOUTH_TOP)  # mouth corners
    return points


def write_mouth_reader(model_root):
    """`model_root/models/buffalo_l/2d106det.onnx`: input (1, 3, 192, 192), output (1, 212) landmarks in crop units, as
    buffalo_l's. It answers `landmark_points()` with the lower lip lowered by the drawn mouth's height: the crop's mean
    red minus mean blue (the mouth's pixels over the crop's, times 120/128), scaled to pixels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    base = (landmark_points() - CENTRE) / HALF
    gain = (1 / HALF) / (MOUTH_WIDTH / (2 * HALF) ** 2 * 120 / 128)  # crop units per unit of (red - blue)
    weight = np.zeros((3, 106, 2), np.float32)
    for index in (*lips.LOWER_INNER_LIP, 58, 59, 53, 56, 55):  # inner and outer lower lip (68-point 65..67, 55..59)
        weight[0, index, 1], weight[2, index, 1] = gain, -gain
    nodes = [helper.make_node("GlobalAveragePool", ["data"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "weight", "base"], ["fc1"])]
    inits = [numpy_helper.from_array(weight.reshape(3, 212), "weight"), numpy_helper.from_array(base.reshape(-1).astype(np.float32), "base")]
    graph = helper.make_graph(nodes, "mouth_reader", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
                              [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 212])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, model_root / "models" / "buffalo_l" / "2d106det.onnx")
    return model_root


def talking_audio() -> np.ndarray:
    """6.3 s at 16 kHz: 2.3 s of test_samples/speech.wav, a 1.2 s pause, 2 s more speech, a 0.8 s pause."""
    speech, rate = sf.read(ROOT / "test_samples" / "speech.wav", dtype="float32")
    assert rate == RATE
    pause = lambda seconds: np.zeros(int(seconds * RATE), np.float32)  # noqa: E731
    return np.concatenate([speech[RATE:int(3.3 * RATE)], pause(1.2), speech[int(3.6 * RATE):int(5.6 * RATE)], pause(0.8)])


def loudness_openings(audio: np.ndarray) -> np.ndarray:
    """Mouth height (pixels) per 40 ms frame following the frame's RMS: 0 where the audio is silent."""
    frames = audio[: len(audio) // (RATE // FPS) * (RATE // FPS)].reshape(-1, RATE // FPS)
    rms = np.sqrt((frames**2).mean(axis=1))
    return np.round(MAX_OPENING * rms / rms.max()).astype(int)


def mouth_frames(openings) -> np.ndarray:
    frames = np.full((len(openings), SIZE, SIZE, 3), 160, np.uint8)
    for frame, opening in zip(frames, openings):
        draw_marker(frame, *MARKER)
        frame[MOUTH_TOP:MOUTH_TOP + int(opening), MOUTH_LEFT:MOUTH_LEFT + MOUTH_WIDTH] = MOUTH_COLOUR
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Model folder and videos: the ground truth (mouth with the loudness, a 1 px rest motion in pauses), `synced` (the
    same frames), `restless` (with the loudness, but chattering in the pauses) and `random` (any height any time)."""
    root = tmp_path_factory.mktemp("lips")
    models = write_mouth_reader(write_marker_detector(root / "insightface"))
    audio = talking_audio()
    sf.write(root / "speech.wav", audio, RATE)
    follow = loudness_openings(audio)
    pauses = follow == 0
    rng = np.random.default_rng(0)
    truth = follow + (pauses & (np.arange(len(follow)) % 4 == 0))
    restless = np.where(pauses, rng.integers(0, MAX_OPENING + 1, len(follow)), follow)
    videos = {"synced": truth, "restless": restless, "random": rng.integers(0, MAX_OPENING + 1, len(follow))}
    for folder in ("gen", "gt"):
        (root / folder).mkdir()
    for name, openings in videos.items():
        write_lossless_video(root / "gen" / f"{name}.mp4", mouth_frames(openings), FPS, root / "speech.wav")
        write_lossless_video(root / "gt" / f"{name}.mp4", mouth_frames(truth), FPS, root / "speech.wav")
    return root, models, videos


def test_definitions_on_arrays():
    speech = lips.speech_mask([(0.0, 1.0), (1.62, 2.0)], 60, 25)
    assert speech[:26].all() and not speech[26:40].any() and speech[40:51].all() and not speech[51:].any()
    silences = lips.long_silences(speech, 25)  # 14 frames (0.56 s) and 9 frames (0.36 s): both; 7 frames would not be
    assert silences[26:40].all() and silences[51:].all() and not silences[:26].any()
    assert not lips.long_silences(np.r_[np.ones(5), np.zeros(7), np.ones(5)].astype(bool), 25).any()
    loudness = np.abs(np.sin(np.arange(60) / 5))
    assert lips.lip_sync(3 * loudness + 1, loudness, np.ones(60, bool)) == pytest.approx(0, abs=1e-6)  # min-max: scale-free
    assert lips.lip_sync(loudness, loudness, np.arange(60) < 5) is None  # speech in under 10 % of the frames
    mad, opening = lips.silent_lip_stability(np.array([0.1, 0.1, 0.3, np.nan]), np.ones(4, bool))
    assert opening == pytest.approx(1 / 6) and mad == pytest.approx(1 / 15)  # median |x - mean| of 0.1, 0.1, 0.3
    assert lips.relative_score(0.9, 1.0) == pytest.approx(0.9) and lips.relative_score(1.5, 1.0) == pytest.approx(0.5)
    assert lips.relative_score(0.3, 0.0) is None


def test_landmarks_follow_the_drawn_mouth(clips):
    root, models, openings = clips
    landmarks, fps = lips.LipModels(models).landmarks(root / "gen" / "random.mp4")
    assert fps == FPS and landmarks.shape[1:] == (106, 2) and not np.isnan(landmarks).any()
    # The model reads the mouth's height back, in pixels, through insightface's crop and its inverse.
    gap = landmarks[:, lips.LOWER_INNER_LIP, 1].mean(axis=1) - landmarks[:, lips.UPPER_INNER_LIP, 1].mean(axis=1)
    assert np.corrcoef(gap, openings["random"])[0, 1] > 0.99 and np.abs(gap - openings["random"]).max() < 1.0


def test_evaluate_script_scores_lips_against_the_ground_truth(clips):
    root, models, _ = clips
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(root / "gen"), "--ground_truth", str(root / "gt"),
         "--out", str(root / "out"), "--weights_dir", str(root / "none"), "--insightface_model_path", str(models)],
        capture_output=True, text=True, cwd=root, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipping lip metrics" not in result.stderr
    rows = {(row["video"], row["kind"]): row for row in csv.DictReader(open(root / "out" / "scores.csv"))}
    value = lambda name, column: float(rows[name, "generated"][column])  # noqa: E731
    for name in ("synced", "restless", "random"):
        assert rows[name, "ground_truth"]["status"] == "ok" and rows[name, "ground_truth"]["lip_sync"]
    # The ground truth's own frames score it exactly.
    for metric in lips.SCORED:
        assert value("synced", f"{metric}_score") == pytest.approx(1.0)
    # A mouth that opens with the loudness follows the audio far closer than a random one.
    assert value("synced", "lip_sync") < 0.12 and value("restless", "lip_sync") < 0.2 and value("random", "lip_sync") > 0.3
    assert value("synced", "lip_sync_score") > value("random", "lip_sync_score")
    # Lips that rest in the pauses are steadier there than lips that keep moving.
    assert value("synced", "silent_lip_stability") < 0.01 and value("restless", "silent_lip_stability") > 5 * value("synced", "silent_lip_stability")
    assert value("synced", "silent_lip_opening") < 0.01 < 0.05 < value("restless", "silent_lip_opening")
    assert value("synced", "silent_lip_stability_score") > value("restless", "silent_lip_stability_score")
    assert value("random", "lip_dynamics") > value("synced", "lip_dynamics")
    summary = json.loads((root / "out" / "summary.json").read_text())
    generated, truth = summary["metrics"]["generated"], summary["metrics"]["ground_truth"]
    assert generated["lip_sync"] == pytest.approx(np.mean([value(name, "lip_sync") for name in ("synced", "restless", "random")]))
    assert generated["lip_sync_score"] == pytest.approx(1 - abs(generated["lip_sync"] - truth["lip_sync"]) / truth["lip_sync"])
    assert len(summary["weights"]["2d106det.onnx"]) == 64 and len(summary["weights"]["silero_vad.onnx"]) == 64
    assert summary["versions"]["silero-vad"] != "not installed" and "THEval" in summary["lip_protocol"]
    assert "| generated | " in (root / "out" / "summary.md").read_text().split("Lip-Sync ↓")[1]


def test_bad_inputs_are_one_line(clips, tmp_path):
    from evaluation.runner import evaluate_videos
    from helpers.marker_detector import write_marker_detector as detector_only

    root, models, _ = clips
    (tmp_path / "gen").mkdir()
    write_lossless_video(tmp_path / "gen" / "mute.mp4", mouth_frames([3] * 10), FPS)  # no audio track
    report = evaluate_videos(tmp_path / "gen", tmp_path / "out", weights_dir=tmp_path / "none", face_models_dir=models,
                             lip_metrics=True, say=lambda line: None)
    (row,) = report.rows
    assert row["status"] == "error" and "mute.mp4: cannot read audio from this file" in row["message"] and "\n" not in row["message"]

    said = []
    report = evaluate_videos(root / "gen", tmp_path / "out2", weights_dir=tmp_path / "none", face_models_dir=detector_only(tmp_path / "if"),
                             lip_metrics=True, say=said.append)
    landmark_file = tmp_path / "if" / "models" / "buffalo_l" / "2d106det.onnx"
    assert f"skipping lip metrics: {landmark_file}: missing; get it with: python scripts/download_models.py --include insightface_models" in said
    assert all("lip_sync" not in row for row in report.rows)
