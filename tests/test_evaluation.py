"""The evaluation layer against the official SyncNet code's outputs (../shared/golden/evaluation/, made on seeded
random weights by its README's recipe), strict weight loading, and scripts/evaluate.py end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evaluation import distributions, ffmpeg, sync_score, tracking
from evaluation.i3d import I3D
from evaluation.inception_fid import FIDInceptionV3
from evaluation.s3fd import S3FD, detect_faces, preprocess
from evaluation.syncnet import SyncNet
from evaluation.errors import MissingWeightsError, WeightsError
from evaluation.weights import load_strict
from scripts.benchmarks.scoring import firing_detector  # random S3FD that finds the whole 128x128 frame
from tests.helpers.seeded_weights import draw_weights, relative_l2, signal_keeping_weights

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden" / "evaluation"
pytestmark = [pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden fixtures not found at {GOLDEN}"), pytest.mark.usefixtures("one_torch_thread")]


def cases() -> dict:
    return json.loads((GOLDEN / "cases.json").read_text())["cases"]


@pytest.fixture(scope="module")
def syncnet() -> SyncNet:
    return draw_weights(SyncNet(), json.loads((GOLDEN / "cases.json").read_text())["seeds"]["syncnet"])


@pytest.fixture(scope="module")
def s3fd() -> S3FD:
    return draw_weights(S3FD(), json.loads((GOLDEN / "cases.json").read_text())["seeds"]["s3fd"])


@pytest.mark.parametrize("network, manifest", [(SyncNet, "syncnet_manifest.json"), (S3FD, "s3fd_manifest.json")])
def test_state_dict_is_the_published_layout(network, manifest):
    expected = json.loads((GOLDEN / manifest).read_text())
    state = network().state_dict()
    assert [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()] == [tuple(e) for e in expected]


def test_syncnet_networks(syncnet):
    golden = np.load(GOLDEN / "syncnet_networks.npz")
    lips = torch.from_numpy(golden["lips_uint8"].astype(np.float32))
    with torch.no_grad():
        outputs = {"lip_embedding": syncnet.forward_lip(lips), "lip_features": syncnet.forward_lipfeat(lips),
                   "audio_embedding": syncnet.forward_aud(torch.from_numpy(golden["mfcc"]))}
    for name, output in outputs.items():
        assert relative_l2(output, golden[name]) <= 1e-4, name


def test_mfcc():
    golden = np.load(GOLDEN / "mfcc.npz")
    assert relative_l2(sync_score.mfcc(golden["audio_int16"], 16000), golden["mfcc"]) <= 1e-6


def test_syncnet_scoring():
    golden, expect = np.load(GOLDEN / "syncnet_scoring.npz"), cases()["syncnet_scoring"]["expect"]
    scores = sync_score.score_features(torch.from_numpy(golden["im_feat"]), torch.from_numpy(golden["cc_feat"]), vshift=15)
    assert scores.offset == expect["offset"]
    assert scores.confidence == pytest.approx(expect["confidence"], rel=1e-5)
    assert scores.min_dist == pytest.approx(expect["min_dist"], rel=1e-5)
    assert relative_l2(scores.mean_dists, golden["mean_dists"]) <= 1e-5
    assert relative_l2(scores.framewise_confidence, golden["framewise_confidence"]) <= 1e-5


def check_score(scores: sync_score.SyncScores, expect: dict) -> None:
    assert scores.offset == expect["offset"]
    assert abs(scores.confidence - expect["confidence"]) <= 0.01
    assert abs(scores.min_dist - expect["min_dist"]) <= 0.01


def test_syncnet_score_of_a_crop_video(syncnet, tmp_path):
    scores = sync_score.evaluate(syncnet, GOLDEN / "crop_track.avi", batch_size=20, vshift=15, work_dir=tmp_path)
    assert relative_l2(scores.dists, np.load(GOLDEN / "syncnet_score.npz")["dists"]) <= 1e-5
    check_score(scores, cases()["syncnet_score"]["expect"])


def test_s3fd(s3fd):
    golden = np.load(GOLDEN / "s3fd.npz")
    image_rgb = cv2.cvtColor(golden["image_bgr"], cv2.COLOR_BGR2RGB)
    net_input = preprocess(image_rgb, 0.25)
    np.testing.assert_array_equal(net_input.numpy(), golden["net_input"])
    with torch.no_grad():
        assert relative_l2(s3fd(net_input), golden["detections"]) <= 1e-4
    boxes = detect_faces(s3fd, image_rgb, conf_th=float(golden["conf_th"]), scales=(0.25,))
    assert boxes.shape == golden["bboxes"].shape
    assert np.abs(boxes[:, :4] - golden["bboxes"][:, :4]).max() <= 1e-3
    assert np.abs(boxes[:, 4] - golden["bboxes"][:, 4]).max() <= 1e-5


def test_track_crop_and_score(syncnet, tmp_path):
    golden = np.load(GOLDEN / "track.npz")
    detections = [np.empty((0, 4)) if np.isnan(box).any() else box[None] for box in golden["detections"]]  # frame 50 missed
    tracks = tracking.track_shot(detections, iou_threshold=0.5, num_failed_det=25, min_track=100, min_face_size=100)
    assert len(tracks) == 1
    np.testing.assert_array_equal(tracks[0].frames, golden["track_frames"])
    np.testing.assert_allclose(tracks[0].boxes, golden["track_bboxes"], rtol=1e-9)
    crops, smoothed = tracking.crop_track(golden["frames_bgr"], tracks[0], crop_scale=0.4)
    for key in "xys":
        np.testing.assert_allclose(smoothed[key], golden[f"smoothed_{key}"], rtol=1e-9)
    assert np.abs(crops.astype(np.int16) - golden["crops_bgr"]).mean() <= 0.5  # exact here; other OpenCV builds may round
    ffmpeg.write_wav(tmp_path / "audio.wav", golden["audio_int16"])
    tracking.write_crop_video(crops, tracks[0], tmp_path / "audio.wav", tmp_path / "00000.avi")
    check_score(sync_score.evaluate(syncnet, tmp_path / "00000.avi", work_dir=tmp_path), cases()["track"]["expect"])


def test_track_shot_drops_short_and_small_tracks():
    box = np.array([[0.0, 0.0, 150.0, 150.0]])
    assert tracking.track_shot([box] * 100) == []  # not more than 100 frames
    assert tracking.track_shot([box * 0.5] * 120) == []  # 75 px faces
    assert len(tracking.track_shot([box] * 101)) == 1


def test_weights_load_strictly_and_name_the_file(syncnet, tmp_path):
    path = tmp_path / "syncnet_v2.model"
    state = syncnet.state_dict()
    torch.save(state, path)
    loaded = load_strict(SyncNet(), path)
    assert torch.equal(loaded.state_dict()["netfclip.3.weight"], state["netfclip.3.weight"])
    torch.save({k: v for k, v in state.items() if k != "netcnnlip.0.weight"}, path)
    with pytest.raises(WeightsError, match=r"syncnet_v2\.model: does not fit SyncNet \(missing keys: netcnnlip\.0\.weight\)") as error:
        load_strict(SyncNet(), path)
    assert "\n" not in str(error.value)
    with pytest.raises(MissingWeightsError, match=r"sfd_face\.pth: missing; get it with: python scripts/download_models\.py --include evaluation"):
        load_strict(S3FD(), tmp_path / "sfd_face.pth")
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"syncnet_v2\.model: not a readable weights file \(empty file\)"):
        load_strict(SyncNet(), path)


def test_missing_weights_skip_the_metric(tmp_path):
    from evaluation.runner import evaluate_videos

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"not a video")
    said = []
    weights = tmp_path / "model_ckpts" / "evaluation"
    report = evaluate_videos(tmp_path / "videos", tmp_path / "out", weights_dir=weights, face_models_dir=tmp_path / "none", say=said.append)
    assert [line.split(":")[0] for line in said] == ["skipping Sync-C/Sync-D", "skipping KpsDis", "skipping CSIM", "skipping lip metrics", "skipping FID/FVD"]
    assert report.rows[0]["status"] == "skipped"
    detector = tmp_path / "none" / "models" / "buffalo_l" / "det_10g.onnx"
    assert report.summary["skipped"] == [
        f"Sync-C/Sync-D: {weights / 'syncnet_v2.model'}: missing; get it with: python scripts/download_models.py --include evaluation "
        f"--local_dir {tmp_path / 'model_ckpts'}",
        f"KpsDis: {detector}: missing; get it with: python scripts/download_models.py --include insightface_models",
        f"CSIM: {detector}: missing; get it with: python scripts/download_models.py --include insightface_models",
        f"lip metrics: {detector}: missing; get it with: python scripts/download_models.py --include insightface_models",
        "FID/FVD: they compare the generated set with the ground-truth set; give --ground_truth"]
    assert (tmp_path / "out" / "scores.csv").is_file() and (tmp_path / "out" / "summary.md").is_file()


def write_test_video(path: Path, frames: int, seed: int) -> None:
    """A 128x128, 25 fps H.264/AAC video of a drifting pattern, with noise-burst audio."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:128, :128]
    video = np.stack([(128 + 60 * np.sin((x + 2 * t) / 17.0) * np.cos(y / 23.0)).astype(np.uint8) for t in range(frames)])
    video = np.repeat(video[..., None], 3, axis=3)
    audio = (rng.standard_normal(frames * 640) * 3000 * np.repeat(rng.random(frames) > 0.5, 640)).astype(np.int16)
    ffmpeg.write_wav(path.with_suffix(".wav"), audio)
    command = [ffmpeg.ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", "128x128", "-r", "25",
               "-i", "-", "-i", str(path.with_suffix(".wav")), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    subprocess.run(command, input=video.tobytes(), check=True)
    path.with_suffix(".wav").unlink()


def test_evaluate_script_end_to_end(syncnet, s3fd, tmp_path):
    weights = tmp_path / "model_ckpts" / "evaluation"
    weights.mkdir(parents=True)
    torch.save(syncnet.state_dict(), weights / "syncnet_v2.model")
    torch.save(firing_detector(s3fd), weights / "sfd_face.pth")
    torch.save(signal_keeping_weights(FIDInceptionV3(), 0).state_dict(), weights / distributions.INCEPTION_FILE)
    torch.save(signal_keeping_weights(I3D(), 1).state_dict(), weights / distributions.I3D_FILE)
    for folder, seed in (("generated", 0), ("ground_truth", 1)):
        (tmp_path / folder).mkdir()
        write_test_video(tmp_path / folder / "clip.mp4", frames=110, seed=seed)
    (tmp_path / "generated" / "broken.mp4").write_bytes(b"\x00" * 1000)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "generated"), "--ground_truth", str(tmp_path / "ground_truth"),
         "--out", str(tmp_path / "out"), "--weights_dir", str(weights)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1, result.stderr[-2000:]  # the broken video is an error row
    import csv

    rows = {(row["video"], row["kind"]): row for row in csv.DictReader(open(tmp_path / "out" / "scores.csv"))}
    assert set(rows) == {("broken", "generated"), ("clip", "generated"), ("clip", "ground_truth")}
    assert rows["broken", "generated"]["status"] == "error" and "broken.mp4: ffmpeg cannot process it" in rows["broken", "generated"]["message"]
    for key in (("clip", "generated"), ("clip", "ground_truth")):
        assert rows[key]["status"] == "ok" and rows[key]["tracks"] == "1", rows[key]
        assert float(rows[key]["sync_d"]) > 0 and -15 <= int(rows[key]["av_offset"]) <= 15
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["generated"]["errors"] == 1 and summary["metrics"]["ground_truth"]["tracks"] == 1
    assert summary["metrics"]["generated"]["sync_c"] == pytest.approx(float(rows["clip", "generated"]["sync_c"]))
    assert len(summary["weights"]["sfd_face.pth"]) == 64 and summary["versions"]["python_speech_features"] == "0.6"
    assert summary["versions"]["ffmpeg"].startswith("ffmpeg version")
    assert "| generated | 2 | 1 | 1 | 1 |" in (tmp_path / "out" / "summary.md").read_text()
    # FID over every frame and FVD over every 16-frame clip, the generated set against the ground truth's: the two
    # videos share their pictures (only their sound differs), so both distances are zero
    distribution = summary["distribution"]
    assert distribution["fid_frames"] == [110, 110] and distribution["fvd_clips"] == [6, 6]
    assert abs(distribution["fid"]) < 1e-4 and abs(distribution["fvd"]) < 1e-4
    assert len(summary["weights"][distributions.I3D_FILE]) == 64 and "16-frame clips" in summary["distribution_protocol"]
    assert f"| all videos | {distribution['fid']:.2f} (110 vs 110 frames) | {distribution['fvd']:.2f} (6 vs 6 clips) |" in (tmp_path / "out" / "summary.md").read_text()


def test_videos_come_from_a_folder_or_a_manifest_matched_by_stem(tmp_path):
    from evaluation.errors import EvaluationError
    from evaluation.runner import collect_videos

    for folder, names in (("gen", ["b.mp4", "a.mp4", "notes.txt"]), ("gt", ["a.mp4"]), ("refs", ["a.png", "b.jpg"])):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"")
    items = collect_videos(tmp_path / "gen", ground_truth=tmp_path / "gt", references=tmp_path / "refs")
    assert [(i.name, i.ground_truth, i.reference) for i in items] == [
        ("a", tmp_path / "gt" / "a.mp4", tmp_path / "refs" / "a.png"), ("b", None, tmp_path / "refs" / "b.jpg")]
    (tmp_path / "list.csv").write_text("video,ground_truth\ngen/b.mp4,gt/a.mp4\n")
    (item,) = collect_videos(tmp_path / "list.csv", ground_truth=tmp_path / "gt")
    assert (item.name, item.path, item.ground_truth) == ("b", tmp_path / "gen" / "b.mp4", tmp_path / "gt" / "a.mp4")
    (tmp_path / "list.jsonl").write_text('{"video": "gen/a.mp4"}\n{"kps": "x.pth"}\n')
    with pytest.raises(EvaluationError, match=r"list\.jsonl: row 2 has no `video` value"):
        collect_videos(tmp_path / "list.jsonl")


PUBLISHED = ROOT / "model_ckpts" / "evaluation"


@pytest.mark.skipif(not (PUBLISHED / "syncnet_v2.model").is_file() or not (PUBLISHED / "example.avi").is_file(),
                    reason="needs the published syncnet_v2.model and the official example.avi in model_ckpts/evaluation/")
def test_the_official_demo_with_the_published_weights():
    from evaluation.lip_sync import check_official_demo

    ok, line = check_official_demo(PUBLISHED)
    assert ok, line


# KpsDis and CSIM: insightface's own loading, decoding and alignment code on tiny ONNX models (a detector that
# finds a face at a green marker cell, a random ArcFace-shaped embedder).

def write_random_arcface(model_root: Path, seed: int = 0) -> Path:
    """`model_root/models/buffalo_l/w600k_r50.onnx` with ArcFace's signature (input 'input.1' (N, 3, 112, 112) float,
    output (N, 512)): 8x8 average pooling, then a random linear map. Returns `model_root`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(seed).standard_normal((3 * 14 * 14, 512)).astype(np.float32)
    nodes = [helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "weight"], ["683"])]
    graph = helper.make_graph(nodes, "random_arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])], [numpy_helper.from_array(weight, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = model_root / "models" / "buffalo_l"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "w600k_r50.onnx")
    return model_root


def write_rgb_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Lossless RGB H.264 (libx264rgb) in Matroska: frames decode back bit for bit."""
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), frames.shape[2:0:-1], fps=fps, codec="libx264rgb", pix_fmt_in="rgb24",
                                         pix_fmt_out="rgb24", macro_block_size=1, output_params=["-crf", "0"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def marker_frames(positions, size: int = 64, background: np.ndarray | None = None) -> np.ndarray:
    from helpers.marker_detector import draw_marker

    frames = []
    for position in positions:
        frame = np.full((size, size, 3), 60, np.uint8) if background is None else background.copy()
        frames.append(frame if position is None else draw_marker(frame, *position))
    return np.stack(frames)


def test_kps_dis_is_zero_on_its_own_keypoints_and_grows_with_a_known_offset(tmp_path):
    from helpers.cli import write_lossless_video
    from helpers.marker_detector import expected_kps, write_marker_detector
    from evaluation.runner import evaluate_videos

    detector_root = write_marker_detector(tmp_path / "insightface")
    path = [(16 + 8 * (i // 4), 32) for i in range(12)]  # the face moves right, 8 px every 4 frames
    for folder in ("gen", "gt", "kps"):
        (tmp_path / folder).mkdir()
    torch.save([expected_kps(x, y) for x, y in path], tmp_path / "kps" / "same.pth")  # the published format
    torch.save([expected_kps(x, y) for x, y in path], tmp_path / "kps" / "moved.pth")
    torch.save([expected_kps(x, y) for x, y in path[::2]], tmp_path / "kps" / "stretched.pth")  # 6 frames for 12
    write_lossless_video(tmp_path / "gen" / "same.mp4", marker_frames(path), 25)
    write_lossless_video(tmp_path / "gen" / "moved.mp4", marker_frames([(x + 8, y) for x, y in path]), 25)
    write_lossless_video(tmp_path / "gen" / "stretched.mp4", marker_frames(path[:11] + [None]), 25)  # last frame: no face
    write_lossless_video(tmp_path / "gt" / "moved.mp4", marker_frames(path), 25)
    said = []
    report = evaluate_videos(tmp_path / "gen", tmp_path / "out", kps=tmp_path / "kps", weights_dir=tmp_path / "none",
                             face_models_dir=detector_root, say=said.append)
    rows = {row["video"]: row for row in report.rows if row["kind"] == "generated"}
    assert rows["same"]["kps_dis"] == pytest.approx(0, abs=0.5) and rows["same"]["kps_missing"] == 0
    assert rows["moved"]["kps_dis"] == pytest.approx(8, abs=0.5)
    # Every other frame's keypoints stretched over 12 frames: the 11 frames with a face are within a step of 8 px.
    assert rows["stretched"]["kps_missing"] == pytest.approx(1 / 12) and 0 < rows["stretched"]["kps_dis"] < 8
    assert [line.split(":")[0] for line in said] == ["skipping Sync-C/Sync-D", "skipping CSIM", "skipping lip metrics", "skipping FID/FVD"]
    assert "w600k_r50.onnx: missing; get it with: python scripts/download_models.py --include insightface_models" in said[1]

    # No keypoint file: the ground truth's keypoints (detected, as the generated frames') are the target.
    report = evaluate_videos(tmp_path / "gen", tmp_path / "out2", ground_truth=tmp_path / "gt", weights_dir=tmp_path / "none",
                             face_models_dir=detector_root, say=said.append)
    (moved,) = [row for row in report.rows if row["video"] == "moved" and row["kind"] == "generated"]
    assert moved["kps_dis"] == pytest.approx(8, abs=0.5)
    assert "kps_dis" not in [row for row in report.rows if row["video"] == "same"][0]  # no target: no score
    assert report.summary["metrics"]["generated"]["kps_dis"] == pytest.approx(8, abs=0.5)
    assert "KpsDis" in (tmp_path / "out2" / "summary.md").read_text()


def test_csim_is_one_on_the_reference_itself_and_less_on_another_face(tmp_path):
    from PIL import Image

    from helpers.marker_detector import write_marker_detector
    from evaluation import face_metrics
    from evaluation.runner import evaluate_videos

    root = write_random_arcface(write_marker_detector(tmp_path / "insightface"))
    portrait = np.asarray(Image.open(ROOT / "test_samples" / "portrait.png").convert("RGB").resize((64, 64))).copy()
    reference = marker_frames([(24, 32)], background=portrait)[0]
    models = face_metrics.FaceModels(root, identity=True)
    for folder in ("gen", "refs"):
        (tmp_path / folder).mkdir()
    Image.fromarray(reference).save(tmp_path / "refs" / "clip.png")
    Image.fromarray(reference).save(tmp_path / "refs" / "other.png")
    other_face = marker_frames([(24, 32)], background=np.ascontiguousarray(portrait[::-1]))  # the portrait upside down
    write_rgb_video(tmp_path / "gen" / "clip.mkv", np.stack([reference] * 5))
    write_rgb_video(tmp_path / "gen" / "other.mkv", np.repeat(other_face, 5, axis=0))
    scores = face_metrics.score_video(models, tmp_path / "gen" / "clip.mkv", reference=tmp_path / "refs" / "clip.png")
    assert scores.csim == pytest.approx(1.0, abs=1e-5) and scores.kps_dis is None
    assert face_metrics.score_video(models, tmp_path / "gen" / "other.mkv", reference=tmp_path / "refs" / "other.png").csim < 0.99

    said = []
    report = evaluate_videos(tmp_path / "gen", tmp_path / "out", references=tmp_path / "refs", weights_dir=tmp_path / "none",
                             face_models_dir=root, say=said.append, lip_metrics=False)
    rows = {row["video"]: row for row in report.rows}
    assert rows["clip"]["csim"] == pytest.approx(1.0, abs=1e-5) and rows["other"]["csim"] < 0.99
    assert len(said) == 2 and rows["clip"]["status"] == "ok"  # Sync-C/D and FID/FVD (no ground truth) skipped; the lip metrics not asked for
    assert len(report.summary["weights"]["w600k_r50.onnx"]) == 64

    # A reference without a face leaves CSIM empty, with a note; the row is still scored.
    Image.fromarray(portrait).save(tmp_path / "refs" / "clip.png")
    report = evaluate_videos(tmp_path / "gen", tmp_path / "out", references=tmp_path / "refs", weights_dir=tmp_path / "none",
                             face_models_dir=root, say=said.append)
    row = next(row for row in report.rows if row["video"] == "clip")
    assert "csim" not in row and "no face found in the reference portrait" in row["message"]
