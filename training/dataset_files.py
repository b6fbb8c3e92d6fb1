"""Training-data files: per-clip face info, per-clip audio embeddings, and the meta JSON listing clips.

face_info: `torch.save` of a list with, per video frame, a list of one face record (a dict of numpy arrays
and numbers: bbox (4,), kps (5, 2), det_score, landmark_2d_106 (106, 2), and landmark_3d_68, pose, gender,
age, embedding when those models ran). audio_embeds: `{"global_embeds": (T, 1, 768)}`. Both are read
weights-only; the published files (numpy arrays and numpy scalars) read the same way."""

import json
import os
from pathlib import Path

import numpy as np
import torch

from modules.checkpoints import atomic_path, numpy_allowlist
from modules.errors import VExpressError, first_line

FACE_FIELDS = ("bbox", "kps", "det_score", "landmark_2d_106", "landmark_3d_68", "pose", "gender", "age", "embedding")
FACE_FIELD_SHAPES = {"bbox": (4,), "kps": (5, 2), "landmark_2d_106": (106, 2)}  # what training reads
LIP_LANDMARKS = slice(52, 72)  # the mouth points of insightface's 106-point layout
_NUMPY_DTYPES = (np.float32, np.float64, np.int64, np.int32, np.uint8)


class DatasetError(VExpressError):
    """A training-data file that cannot be used, with a message for the user."""


def face_record(face) -> dict:
    """An insightface Face -> a plain dict of the fields present (arrays float32, numbers as Python numbers)."""
    record = {}
    for field in FACE_FIELDS:
        value = face.get(field)
        if value is None:
            continue
        value = np.asarray(value)
        record[field] = value.astype(np.float32) if value.ndim else value.item()
    return record


def _load(path: Path, what: str):
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found; make it with scripts/prepare_dataset/prepare_dataset.py")
    try:
        with torch.serialization.safe_globals(numpy_allowlist(_NUMPY_DTYPES)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise DatasetError(f"{path}: not a readable {what} file ({first_line(error, path)})") from None


def load_face_info(path: str | Path) -> list[dict]:
    """A face-info file -> one face record per frame (the clip's only face)."""
    path = Path(path)
    frames = _load(path, "face-info")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: expected a list with one list of face records per frame, got {type(frames).__name__}")
    records = []
    for index, faces in enumerate(frames):
        if not isinstance(faces, (list, tuple)) or len(faces) != 1 or not isinstance(faces[0], dict):
            raise DatasetError(f"{path}: frame {index} does not hold exactly one face record; prepare the clip again")
        record = faces[0]
        for field, shape in FACE_FIELD_SHAPES.items():
            if field not in record or np.shape(record[field]) != shape:
                found = np.shape(record[field]) if field in record else "missing"
                raise DatasetError(f"{path}: frame {index}: {field} is {found}, expected shape {shape}")
        records.append(record)
    return records


def load_audio_embeddings(path: str | Path) -> torch.Tensor:
    """An audio-embedding file -> float32 (T, 768)."""
    path = Path(path)
    data = _load(path, "audio-embedding")
    embeds = data.get("global_embeds") if isinstance(data, dict) else None
    if not isinstance(embeds, torch.Tensor) or embeds.ndim != 3 or embeds.shape[1] != 1:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise DatasetError(f"{path}: expected {{'global_embeds': tensor (T, 1, 768)}}, found {shape}")
    return embeds[:, 0].float()


def read_meta(path: str | Path) -> list[dict]:
    """A meta JSON -> its clips, paths made absolute. Relative paths are relative to the JSON's folder (what
    prepare_dataset.py writes), or to the working directory where only that exists (the published metas)."""
    path = Path(path)
    try:
        clips = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: meta file not found; make it with scripts/prepare_dataset/prepare_dataset.py") from None
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    keys = ("video", "face_info", "audio_embeds")
    if not isinstance(clips, list) or not all(isinstance(c, dict) and all(k in c for k in keys) for c in clips):
        raise DatasetError(f"{path}: expected a list of {{'video', 'face_info', 'audio_embeds'}} entries")

    def resolve(value):
        beside_meta = path.parent / value
        return str((beside_meta if beside_meta.exists() or not Path(value).exists() else Path(value)).resolve())

    return [{key: resolve(clip[key]) for key in keys} for clip in clips]


def write_meta(path: str | Path, clips: list[dict]) -> Path:
    """Clips with absolute or relative paths -> meta JSON with paths relative to its folder, written atomically."""
    path = Path(path)
    entries = [{key: os.path.relpath(Path(value).resolve(), path.parent.resolve()) for key, value in clip.items()} for clip in clips]
    return write_json(path, entries)


def write_json(path: str | Path, data) -> Path:
    """JSON, atomically: `path` only ever holds a complete file."""
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)
