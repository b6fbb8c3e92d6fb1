"""KpsDis (pose control) and CSIM (identity), from insightface's buffalo_l models as the project uses them.

- **KpsDis**: for each frame of a generated video, the V-Kps keypoints (left eye, right eye, nose: the first three
  of the detector's five) of its largest face, at the video's own size, against the keypoints the video was driven
  by: its keypoint file (stretched to the video's frame count as generation does), or else those detected on its
  ground-truth video resized to the generated size (frames without a face there filled by interpolation, as
  scripts/extract_kps_sequence_and_audio.py does). The score is the mean over the scored frames of the mean
  Euclidean distance of the three points, in pixels; frames of the generated video without a face are left out
  and counted (`kps_missing`, a fraction).
- **CSIM**: the cosine similarity between the ArcFace embedding (buffalo_l's w600k_r50.onnx, loaded and applied by
  insightface's own `model_zoo.get_model` / `ArcFaceONNX.get`, which aligns with `norm_crop` on the detector's five
  keypoints) of the reference portrait's largest face and of each frame's largest face; the mean over the frames
  with a face.
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evaluation.errors import EvaluationError, MissingWeightsError, WeightsError
from media.face import FaceDetector, FaceError
from media.kps_extraction import extract_kps_sequence
from media.video import VideoFrames
from modules.errors import VExpressError, first_line
from motion.keypoints import load_kps_sequence, resample_kps_sequence

FACE_MODELS_DIR = Path("model_ckpts") / "insightface_models"  # the published --insightface_model_path
DETECTOR_FILE = "det_10g.onnx"
ARCFACE_FILE = "w600k_r50.onnx"
FETCH_HINT = "get it with: python scripts/download_models.py --include insightface_models"
REFERENCE_DETECT_SIDE = 640  # a reference larger than this is searched for its face at this size, embedded at full size


def model_file(root: str | Path, name: str) -> Path:
    return Path(root) / "models" / "buffalo_l" / name


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise MissingWeightsError(f"{path}: missing; {FETCH_HINT}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes); {FETCH_HINT}")
    return path


def _round_up(value: int, multiple: int = 32) -> int:
    return -(-int(value) // multiple) * multiple


class FaceModels:
    """The buffalo_l detector (one per input size, made on first use) and, when asked for, its ArcFace model.
    `tasks` are the insightface models each detection runs besides finding faces (the lip metrics' "landmark_2d_106",
    whose files they require first)."""

    def __init__(self, root: str | Path = FACE_MODELS_DIR, identity: bool = False, tasks: tuple[str, ...] = ("detection",)):
        self.root, self.tasks = Path(root), tasks
        self.detector_path = require_file(model_file(self.root, DETECTOR_FILE))
        self._detectors: dict[tuple[int, int], FaceDetector] = {}
        self._references: dict[Path, np.ndarray] = {}
        self.detector(640, 640)  # fails now, with its one line, if the detector cannot be loaded
        self.arcface = None
        if identity:
            self.load_identity()

    def load_identity(self) -> None:
        """buffalo_l's ArcFace model, for CSIM; MissingWeightsError or WeightsError naming the file."""
        self.arcface_path = require_file(model_file(self.root, ARCFACE_FILE))
        self.arcface = load_arcface(self.arcface_path)

    def detector(self, width: int, height: int) -> FaceDetector:
        """The detector for images of width x height: its input size rounded up to multiples of 32 (the
        detector's largest stride), so that keypoints come back in the image's own pixels."""
        size = (_round_up(width), _round_up(height))
        if size not in self._detectors:
            self._detectors[size] = FaceDetector(self.root, image_size=size, tasks=self.tasks)
        return self._detectors[size]

    def largest_face(self, image_bgr: np.ndarray):
        """insightface's Face record (bbox, kps (5, 2), det_score) of the largest face, or None."""
        faces = self.detector(image_bgr.shape[1], image_bgr.shape[0]).faces(image_bgr)
        return faces[0] if faces else None

    def reference_embedding(self, path: str | Path) -> np.ndarray:
        """`reference_embedding` of a portrait, computed once however many videos share it."""
        key = Path(path).resolve()
        if key not in self._references:
            self._references[key] = reference_embedding(self, path)
        return self._references[key]

    def embedding(self, image_bgr: np.ndarray, face) -> np.ndarray:
        """The unit-length ArcFace embedding of `face` in `image_bgr` (insightface's norm_crop alignment)."""
        vector = np.asarray(self.arcface.get(image_bgr, face), dtype=np.float64).ravel()
        return vector / max(np.linalg.norm(vector), 1e-12)


def load_arcface(path: str | Path):
    """insightface's ArcFaceONNX for `path`, on the CPU; a WeightsError naming the file otherwise."""
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    try:
        model = get_model(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's and onnx's errors derive from Exception alone
        raise WeightsError(f"{path}: cannot load the ArcFace model ({first_line(error, path)}); {FETCH_HINT}") from None
    if not isinstance(model, ArcFaceONNX):
        raise WeightsError(f"{path}: not an ArcFace recognition model (input (N, 3, 112, 112), output (N, 512)); {FETCH_HINT}")
    model.prepare(ctx_id=-1)
    return model


def read_image_bgr(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:  # formats OpenCV cannot read: go through PIL
        try:
            from PIL import Image

            image = cv2.cvtColor(np.asarray(Image.open(path).convert("RGB")), cv2.COLOR_RGB2BGR)
        except Exception as error:  # noqa: BLE001 -- PIL raises many kinds; one line names the file
            raise EvaluationError(f"{path}: cannot read the reference image ({first_line(error, path)})") from None
    return image


def reference_embedding(models: FaceModels, path: str | Path) -> np.ndarray:
    """The ArcFace embedding of the largest face of a reference portrait."""
    image = read_image_bgr(path)
    scale = min(1.0, REFERENCE_DETECT_SIDE / max(image.shape[:2]))
    small = image if scale == 1.0 else cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    face = models.largest_face(small)
    if face is None:
        raise FaceError(f"{path}: no face found in the reference portrait")
    face.kps = np.asarray(face.kps, np.float32) / scale
    return models.embedding(image, face)


def kps_distance(detected: list, target: np.ndarray) -> float | None:
    """Mean over the frames with keypoints of the mean distance (pixels) of their three points to the target's."""
    distances = [np.linalg.norm(np.asarray(k, np.float64) - target[i], axis=1).mean() for i, k in enumerate(detected) if k is not None]
    return float(np.mean(distances)) if distances else None


def driving_kps(kps_file: str | Path, num_frames: int) -> np.ndarray:
    """The keypoint file, stretched to `num_frames` as generation stretches it."""
    kps = load_kps_sequence(kps_file)
    return kps if len(kps) == num_frames else resample_kps_sequence(kps, num_frames).numpy()


def ground_truth_kps(models: FaceModels, video: str | Path, width: int, height: int, num_frames: int) -> np.ndarray:
    """The ground-truth video's keypoints at width x height, as scripts/extract_kps_sequence_and_audio.py extracts
    them (the tracked face, gaps interpolated), stretched to `num_frames` when its length differs."""
    kps = extract_kps_sequence(video, models.detector(width, height), width, height, max_missing_fraction=1.0, report=lambda _: None).kps
    return kps if len(kps) == num_frames else resample_kps_sequence(kps, num_frames).numpy()


@dataclass
class FaceScores:
    kps_dis: float | None = None
    kps_missing: float | None = None  # fraction of the generated frames without a face
    csim: float | None = None
    notes: list[str] = field(default_factory=list)  # a target that could not be used: one line each

    def columns(self) -> dict:
        values = {"kps_dis": self.kps_dis, "kps_missing": self.kps_missing, "csim": self.csim}
        return {key: value for key, value in values.items() if value is not None}


def score_video(models: FaceModels, video: str | Path, kps_file=None, ground_truth=None, reference=None, kps: bool = True) -> FaceScores:
    """KpsDis against `kps_file` (or the keypoints of `ground_truth`), when `kps` and one of them is given, and CSIM
    against `reference`, when the ArcFace model is loaded and it is given. A video that cannot be read raises; a
    target that cannot be used is a note and its metric is left empty."""
    scores = FaceScores()
    embedding_ref = None
    if reference is not None and models.arcface is not None:
        try:
            embedding_ref = models.reference_embedding(reference)
        except VExpressError as error:
            scores.notes.append(f"CSIM: {error}")
    kps = kps and (kps_file is not None or ground_truth is not None)
    if embedding_ref is None and not kps:
        return scores  # no metric wants the frames: they are not decoded
    detected, similarities = [], []
    frames = VideoFrames(video)
    width, height = frames.size
    for rgb in frames:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        face = models.largest_face(bgr)
        detected.append(None if face is None else np.asarray(face.kps[:3], np.float32))
        if face is not None and embedding_ref is not None:
            similarities.append(float(models.embedding(bgr, face) @ embedding_ref))
    if embedding_ref is not None:
        scores.csim = float(np.mean(similarities)) if similarities else None
        if not similarities:
            scores.notes.append("CSIM: no face in any frame")
    if kps:
        try:
            target = driving_kps(kps_file, len(detected)) if kps_file is not None else ground_truth_kps(models, ground_truth, width, height, len(detected))
        except VExpressError as error:
            scores.notes.append(f"KpsDis: {error}")
        else:
            scores.kps_missing = sum(k is None for k in detected) / len(detected)
            scores.kps_dis = kps_distance(detected, target)
            if scores.kps_dis is None:
                scores.notes.append("KpsDis: no face in any frame")
    return scores
