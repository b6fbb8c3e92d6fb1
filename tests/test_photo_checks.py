"""The photo checks: one line of advice per problem of the portrait's face, never a stop (but for no face at all,
whose message offers --reference_kps). On insightface's own Face records, and through inference.py with the marker
detector."""

import math

import numpy as np
import pytest
from insightface.app.common import Face
from PIL import Image

from helpers.cli import SIZE, make_inputs, make_model_ckpts, run_cli, weight_flags
from helpers.marker_detector import draw_marker
from media.face import LOWER_INNER_LIP, NOSE_DEPTH, UPPER_INNER_LIP, photo_advice, yaw_degrees


def face(x1=100.0, width=200.0, yaw=0.0, mouth_gap=0.0) -> Face:
    """A 512x512 portrait's face: eyes 64 px apart, the nose turned `yaw` degrees, the inner lips `mouth_gap` px apart."""
    eyes = np.array([[x1 + 68, 200], [x1 + 132, 200]], np.float32)
    nose = [x1 + 100 + 64 * NOSE_DEPTH * math.tan(math.radians(yaw)), 250]
    landmarks = np.zeros((106, 2), np.float32)
    landmarks[list(UPPER_INNER_LIP), 1], landmarks[list(LOWER_INNER_LIP), 1] = 300, 300 + mouth_gap
    return Face(bbox=np.array([x1, 120, x1 + width, 360], np.float32), kps=np.array([*eyes, nose, [0, 0], [0, 0]], np.float32),
                det_score=0.9, landmark_2d_106=landmarks)


def test_each_problem_gives_one_line_and_a_good_photo_none():
    assert photo_advice("p.png", [face()], 0, (512, 512)) == []
    assert yaw_degrees(face(yaw=40).kps) == pytest.approx(40, abs=0.01)
    for problem, expected in (
        (dict(width=80.0), "warning: p.png: the face spans 80 of the video's 512 pixels"),
        (dict(yaw=40), "warning: p.png: the head is turned about 40 degrees"),
        (dict(mouth_gap=20.0), "warning: p.png: the mouth is open"),
        (dict(x1=-30.0), "warning: p.png: the face is cut by the photo's edge"),
    ):
        advice = photo_advice("p.png", [face(**problem)], 0, (512, 512))
        assert len(advice) == 1 and advice[0].startswith(expected), advice
    advice = photo_advice("p.png", [face(), face(x1=300.0, width=100.0)], 1, (512, 512))
    assert advice[0] == "note: 2 faces in p.png; using face 1 (--face_index N picks another, 0 the largest)"


def test_the_cli_advises_and_goes_on_and_face_index_picks_a_face(tmp_path):
    inputs = make_inputs(tmp_path)
    two_faces = tmp_path / "two_faces.png"
    image = np.full((SIZE, SIZE, 3), 120, np.uint8)
    Image.fromarray(draw_marker(draw_marker(image, 8, 24), 40, 24)).save(two_faces)  # boxes past the left and the right edge
    flags = ["--reference_image_path", two_faces, "--audio_path", inputs["audio"], "--image_width", SIZE, "--image_height", SIZE,
             "--num_inference_steps", 1, "--retarget_strategy", "fix_face", *weight_flags(make_model_ckpts(tmp_path / "ckpts"))]
    result = run_cli("inference.py", *flags, "--output_path", tmp_path / "out.mp4")
    assert result.returncode == 0 and (tmp_path / "out.mp4").is_file(), result.stderr[-3000:]
    assert f"note: 2 faces in {two_faces}; using the largest (--face_index N picks another, 0 the largest)" in result.stderr
    assert f"warning: {two_faces}: the face is cut by the photo's edge" in result.stderr
    refused = run_cli("inference.py", *flags, "--face_index", 2, "--output_path", tmp_path / "third.mp4")
    assert refused.returncode == 2 and f"error: --face_index 2: {two_faces} has 2 face(s)" in refused.stderr


def test_without_insightface_the_detector_is_a_face_error_and_no_retarget_goes_on(tmp_path, monkeypatch):
    """A machine without insightface (the GPU check machine has none) gets one line, not a ModuleNotFoundError; the
    no_retarget photo checks are advice, so they are skipped there."""
    from types import SimpleNamespace

    from app.generation import portrait_advice
    from media.face import FaceDetector, FaceError

    models = tmp_path / "models" / "buffalo_l"
    models.mkdir(parents=True)
    (models / "det_10g.onnx").write_bytes(b"never opened")
    monkeypatch.setitem(__import__("sys").modules, "insightface.app", None)  # what an absent package looks like to import
    with pytest.raises(FaceError, match="insightface is not installed: pip install -r requirements.txt"):
        FaceDetector(tmp_path)
    request = SimpleNamespace(reference_image_path="photo.png", image_width=SIZE, image_height=SIZE, face_index=0)
    assert portrait_advice(request, Image.new("RGB", (SIZE, SIZE)), lambda: FaceDetector(tmp_path)) == []
