"""Face tracks from per-frame detections and their 224x224 crops, as the official run_pipeline.py makes them."""

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from scipy import signal
from scipy.interpolate import interp1d

from evaluation import ffmpeg
from evaluation.errors import EvaluationError

CROP_SIZE = 224


@dataclass
class Track:
    """One face followed through a shot: `frames` (n,) consecutive frame numbers and `boxes` (n, 4) x1, y1, x2, y2
    (pixels), gaps filled by linear interpolation."""

    frames: np.ndarray
    boxes: np.ndarray


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    inter = max(0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0])) * max(0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]))
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return inter / float(area_a + area_b - inter)


def track_shot(
    detections: Sequence[np.ndarray], first_frame: int = 0, iou_threshold: float = 0.5, num_failed_det: int = 25,
    min_track: int = 100, min_face_size: float = 100,
) -> list[Track]:
    """Greedy tracks through one shot: `detections[i]` (K, >=4) are the boxes of frame `first_frame + i`.

    A track takes each next face overlapping its last box by IoU > `iou_threshold` within `num_failed_det`
    frames; tracks of more than `min_track` detections whose mean box side exceeds `min_face_size` are kept."""
    faces = [[{"frame": first_frame + i, "bbox": list(map(float, box[:4]))} for box in boxes] for i, boxes in enumerate(detections)]
    tracks = []
    while True:
        track = []
        for frame_faces in faces:
            # Removing from the list being iterated skips the face after a taken one, as the official loop does:
            # kept so tracks with several faces a frame come out the same.
            for face in frame_faces:
                if not track:
                    track.append(face)
                    frame_faces.remove(face)
                elif face["frame"] - track[-1]["frame"] <= num_failed_det:
                    if iou(face["bbox"], track[-1]["bbox"]) > iou_threshold:
                        track.append(face)
                        frame_faces.remove(face)
                else:
                    break
        if not track:
            return tracks
        if len(track) > min_track:
            numbers = np.array([face["frame"] for face in track])
            boxes = np.array([face["bbox"] for face in track])
            frames = np.arange(numbers[0], numbers[-1] + 1)
            filled = np.stack([interp1d(numbers, boxes[:, k])(frames) for k in range(4)], axis=1)
            if max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1])) > min_face_size:
                tracks.append(Track(frames, filled))


def smooth_track(track: Track, kernel_size: int = 13) -> dict[str, np.ndarray]:
    """Crop centre x, y and half-size s per frame (n,) each, median-filtered over `kernel_size` frames."""
    boxes = track.boxes
    raw = {
        "s": np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2,
        "x": (boxes[:, 0] + boxes[:, 2]) / 2,
        "y": (boxes[:, 1] + boxes[:, 3]) / 2,
    }
    return {key: signal.medfilt(list(values), kernel_size=kernel_size) for key, values in raw.items()}


def crop_frame(image_bgr: np.ndarray, x: float, y: float, s: float, crop_scale: float = 0.4, pad_value: int = 110) -> np.ndarray:
    """The 224x224 crop around a face of centre (x, y) and half-size s: (1 + crop_scale) s to each side,
    s above and (1 + 2 crop_scale) s below the centre (the mouth sits low), grey beyond the frame."""
    pad = int(s * (1 + 2 * crop_scale))
    padded = np.pad(image_bgr, ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(pad_value, pad_value))
    cy, cx = y + pad, x + pad
    face = padded[int(cy - s):int(cy + s * (1 + 2 * crop_scale)), int(cx - s * (1 + crop_scale)):int(cx + s * (1 + crop_scale))]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


class ImageFiles(Sequence):
    """Frames stored as image files, read with OpenCV (BGR uint8) when indexed."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        image = cv2.imread(str(self.paths[index]))
        if image is None:
            raise EvaluationError(f"{self.paths[index]}: OpenCV cannot read this frame")
        return image


def crop_track(frames_bgr: Sequence[np.ndarray], track: Track, crop_scale: float = 0.4) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(n, 224, 224, 3) uint8 crops of a track's frames, and the smoothed centres and sizes they used."""
    smoothed = smooth_track(track)
    crops = [
        crop_frame(frames_bgr[frame], smoothed["x"][i], smoothed["y"][i], smoothed["s"][i], crop_scale)
        for i, frame in enumerate(track.frames)
    ]
    return np.stack(crops), smoothed


def write_crop_video(crops_bgr: np.ndarray, track: Track, audio_wav: str | Path, out: str | Path, fps: int = 25) -> None:
    """The crops as XVID (OpenCV's writer) at `fps` with the audio of the track's frames, as crop_video writes them."""
    out = Path(out)
    silent, audio = out.with_name(out.stem + "t.avi"), out.with_name(out.stem + ".wav")
    writer = cv2.VideoWriter(str(silent), cv2.VideoWriter_fourcc(*"XVID"), fps, (CROP_SIZE, CROP_SIZE))
    if not writer.isOpened():
        raise EvaluationError(f"{silent}: OpenCV cannot write XVID video (an OpenCV build without its FFmpeg backend?)")
    for crop in crops_bgr:
        writer.write(np.ascontiguousarray(crop))
    writer.release()
    ffmpeg.cut_audio(audio_wav, audio, track.frames[0] / fps, (track.frames[-1] + 1) / fps)
    ffmpeg.mux(silent, audio, out)
    silent.unlink()
    audio.unlink()


def crop_video(
    frames_bgr: Sequence[np.ndarray], track: Track, audio_wav: str | Path, out: str | Path, crop_scale: float = 0.4, fps: int = 25
) -> dict[str, np.ndarray]:
    """run_pipeline.py's crop_video: the track cropped, encoded and given its audio at `out` (.avi); returns the
    smoothed centres and sizes."""
    crops, smoothed = crop_track(frames_bgr, track, crop_scale)
    write_crop_video(crops, track, audio_wav, out, fps)
    return smoothed
