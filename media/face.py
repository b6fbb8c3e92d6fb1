"""Face keypoints from insightface's `buffalo_l` detector (detection model only)."""

import math
from pathlib import Path

import cv2
import numpy as np

from modules.errors import VExpressError, first_line

DOWNLOAD_HINT = "download it with: python scripts/download_models.py --include insightface_models (see model_ckpts/README.md)"


class FaceError(VExpressError):
    """No usable face, or no detector, with a message for the user."""


class FaceDetector:
    """insightface's FaceAnalysis loading only the models a task needs: by default the detection model alone
    (faces as bbox, det_score, kps (5, 2)); `tasks=None` loads every model in the folder (landmarks, pose,
    gender/age, embedding), `tasks=(...)` those named (insightface task names such as "landmark_2d_106").

    `model_root` is the folder holding `models/buffalo_l/` (the published `--insightface_model_path`);
    `image_size` (width, height) the size of the images it will see.
    Nothing is downloaded: a missing model folder is a FaceError."""

    def __init__(
        self, model_root: str | Path, image_size: tuple[int, int] = (640, 640), device: str = "cpu", gpu_id: int = 0,
        tasks: tuple[str, ...] | None = ("detection",),
    ):
        folder = Path(model_root) / "models" / "buffalo_l"
        if not any(folder.glob("*.onnx")):
            raise FaceError(f"{folder}: no insightface detector (.onnx) found; {DOWNLOAD_HINT}")
        try:
            from insightface.app import FaceAnalysis  # imported here: only strategies that need a face pay for it
        except ImportError:
            raise FaceError("insightface is not installed: pip install -r requirements.txt (it finds the portrait's face)") from None

        on_gpu = device.startswith("cuda")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if on_gpu else ["CPUExecutionProvider"]
        allowed = None if tasks is None else sorted(set(tasks) | {"detection"})
        for model in sorted(folder.glob("*.onnx")):  # FaceAnalysis opens every one
            if model.stat().st_size == 0:
                raise FaceError(f"{model}: empty file (0 bytes); {DOWNLOAD_HINT}")
        try:
            self.app = FaceAnalysis(name=str(folder), allowed_modules=allowed, providers=providers)
            self.app.prepare(ctx_id=gpu_id if on_gpu else -1, det_size=tuple(image_size))
        except Exception as error:  # onnxruntime's errors derive from Exception alone; its message names the file
            raise FaceError(f"{folder}: cannot load the face detector ({first_line(error)}); {DOWNLOAD_HINT}") from None
        absent = sorted(set(tasks or ()) - set(self.app.models))
        if absent:
            raise FaceError(f"{folder}: no model for {', '.join(absent)} (buffalo_l's 2d106det.onnx gives landmark_2d_106); {DOWNLOAD_HINT}")

    @property
    def tasks(self) -> list[str]:
        """insightface task names of the loaded models."""
        return sorted(self.app.models)

    def faces(self, image_bgr: np.ndarray) -> list:
        """insightface Face records, largest first."""
        faces = self.app.get(image_bgr)
        return sorted(faces, key=lambda face: -float((face.bbox[2] - face.bbox[0]) * (face.bbox[3] - face.bbox[1])))

    def reference_kps(self, portrait, image_path, width: int, height: int, face_index: int = 0) -> tuple[np.ndarray, list[str]]:
        """Left eye, right eye, nose (3, 2) float32 of the `face_index`-th largest face in `portrait` (a PIL image
        of `image_path`, or its crop) resized to width x height, and the photo checks' advice on it (`photo_advice`)."""
        faces = self.portrait_faces(portrait, width, height)
        face = chosen_face(faces, face_index, image_path)
        return face.kps[:3].astype(np.float32), photo_advice(image_path, faces, face_index, (width, height))

    def portrait_faces(self, portrait, width: int, height: int) -> list:
        """The faces of `portrait` (PIL) resized as the published code resizes it for its keypoints (OpenCV's
        bilinear, in BGR), largest first."""
        return self.faces(cv2.resize(cv2.cvtColor(np.asarray(portrait.convert("RGB")), cv2.COLOR_RGB2BGR), (width, height)))


def chosen_face(faces: list, face_index: int, image_path):
    """The `face_index`-th of `faces` (largest first) found in the portrait `image_path`; a FaceError when there is none."""
    if not faces:
        raise FaceError(f"{image_path}: no face found in the reference image; use a photo with one clear, frontal face, or place "
                        'its keypoints by hand: --reference_kps "x1,y1,x2,y2,x3,y3" (left eye, right eye, nose, in its pixels)')
    if face_index >= len(faces):
        raise FaceError(f"--face_index {face_index}: {image_path} has {len(faces)} face(s), numbered from 0, largest first")
    return faces[face_index]


# The photo checks' limits: past them a photo is still used, with one line of advice each.
SMALLEST_FACE_FRACTION = 0.2  # of the video's width: below it the mouth spans only a few latent cells
LARGEST_YAW_DEGREES = 30.0
NOSE_DEPTH = 0.6  # the nose tip's depth in front of the eyes, in eye distances: yaw = atan(nose offset / NOSE_DEPTH)
OPEN_MOUTH_GAP = 0.12  # inner-lip gap over the eye distance (buffalo_l's 106 landmarks) above which the mouth is open
UPPER_INNER_LIP, LOWER_INNER_LIP = (66, 62, 70), (54, 60, 57)  # in buffalo_l's 106-point layout, pair by pair


def portrait_check_tasks(model_root: str | Path) -> tuple[str, ...]:
    """The detector's tasks for a portrait: with buffalo_l's 106-point landmarks where they are (the open-mouth
    check), else detection alone."""
    return ("detection", "landmark_2d_106") if (Path(model_root) / "models" / "buffalo_l" / "2d106det.onnx").is_file() else ("detection",)


def yaw_degrees(kps: np.ndarray) -> float:
    """How far the head is turned, from the detector's left eye, right eye and nose (3+, 2): the nose tip's sideways
    offset from the eyes' midpoint over the eye distance is tan(yaw) * NOSE_DEPTH (a frontal face: 0)."""
    eye_distance = float(np.linalg.norm(kps[1] - kps[0]))
    offset = float(kps[2][0] - (kps[0][0] + kps[1][0]) / 2)
    return math.degrees(math.atan2(abs(offset) / max(eye_distance, 1e-6), NOSE_DEPTH))


def photo_advice(image_path, faces: list, face_index: int, size: tuple[int, int]) -> list[str]:
    """One line of advice per problem of the chosen face (insightface Face records of the portrait resized to
    size = (width, height), largest first): several faces, a small face, a turned head, an open mouth (when the
    106-point landmarks are loaded), a face cut by the frame's edge. Advice never stops a run."""
    face, (width, height), advice = faces[face_index], size, []
    if len(faces) > 1:
        which = "the largest" if face_index == 0 else f"face {face_index}"
        advice.append(f"note: {len(faces)} faces in {image_path}; using {which} (--face_index N picks another, 0 the largest)")
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    if x2 - x1 < SMALLEST_FACE_FRACTION * width:
        advice.append(f"warning: {image_path}: the face spans {x2 - x1:.0f} of the video's {width} pixels; the lips will be blurred: "
                      "crop the photo closer around the face")
    yaw = yaw_degrees(np.asarray(face.kps, np.float64))
    if yaw > LARGEST_YAW_DEGREES:
        advice.append(f"warning: {image_path}: the head is turned about {yaw:.0f} degrees; the model was trained on faces turned "
                      f"less than {LARGEST_YAW_DEGREES:.0f}: use a more frontal photo")
    landmarks = getattr(face, "landmark_2d_106", None)
    if landmarks is not None:
        gap = np.abs(landmarks[list(UPPER_INNER_LIP), 1] - landmarks[list(LOWER_INNER_LIP), 1]).mean()
        if gap > OPEN_MOUTH_GAP * np.linalg.norm(face.kps[1] - face.kps[0]):
            advice.append(f"warning: {image_path}: the mouth is open; the video's mouth moves from the photo's: a closed mouth gives "
                          "the most natural speech")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        advice.append(f"warning: {image_path}: the face is cut by the photo's edge; use a photo with the whole head in it")
    return advice

