"""Sync-C / Sync-D of any video by the official protocol (run_pipeline.py, then run_syncnet.py):

video to 25 fps (MPEG-4, qscale 2) -> frames as JPEG (qscale 2) -> 16 kHz mono PCM -> S3FD on each RGB frame at
scale 0.25, conf_th 0.9 -> tracks (IoU 0.5, <= 25 missed frames, > 100 frames, faces > 100 px) -> 224x224 crops
(XVID, 25 fps, the track's audio) -> SyncNet scores per track (vshift 15, batch 20).

Stated deviation: the scene-cut step (PySceneDetect's ContentDetector) is skipped; the whole video is one shot.
Generated talking heads have no cuts; a video with cuts can get a track across a cut that the official code
would split."""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from evaluation import ffmpeg, sync_score, tracking
from evaluation.s3fd import S3FD, detect_faces
from evaluation.sync_score import SyncScores
from evaluation.syncnet import SyncNet
from evaluation.weights import load_strict

SYNCNET_FILE = "syncnet_v2.model"
S3FD_FILE = "sfd_face.pth"
FACE_DET_SCALE = 0.25
FACE_CONF_TH = 0.9
MIN_TRACK = 100
# The official README: demo_syncnet.py on its example.avi with syncnet_v2.model prints these.
DEMO_VIDEO = "example.avi"
DEMO_EXPECTED = {"offset": 3, "min_dist": 5.353, "confidence": 10.021}


@dataclass
class LipSyncNetworks:
    syncnet: SyncNet
    detector: S3FD


def load_networks(weights_dir: str | Path) -> LipSyncNetworks:
    """SyncNet and S3FD from `weights_dir`/syncnet_v2.model and sfd_face.pth (weights-only, strict)."""
    weights_dir = Path(weights_dir)
    return LipSyncNetworks(load_strict(SyncNet(), weights_dir / SYNCNET_FILE), load_strict(S3FD(), weights_dir / S3FD_FILE))


def detect_video(detector: S3FD, frames: tracking.ImageFiles, desc: str = "faces") -> list[np.ndarray]:
    """S3FD boxes (K, 5) of each frame, read as the official reads them (OpenCV BGR, converted to RGB)."""
    found = []
    for index in tqdm(range(len(frames)), desc=desc, unit="frame", leave=False):
        rgb = cv2.cvtColor(frames[index], cv2.COLOR_BGR2RGB)
        found.append(detect_faces(detector, rgb, conf_th=FACE_CONF_TH, scales=(FACE_DET_SCALE,)))
    return found


def score_video(networks: LipSyncNetworks, video: str | Path, work_dir: str | Path | None = None) -> list[SyncScores]:
    """The SyncNet scores of each face track of `video` (an empty list when no track qualifies)."""
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="lipsync-") as tmp:
        tmp = Path(tmp)
        ffmpeg.convert_to_25fps(video, tmp / "video.avi")
        frames = tracking.ImageFiles(ffmpeg.extract_frames(tmp / "video.avi", tmp / "frames", qscale=2))
        ffmpeg.extract_audio(tmp / "video.avi", tmp / "audio.wav", resync=False)
        detections = detect_video(networks.detector, frames)
        tracks = tracking.track_shot(detections, min_track=MIN_TRACK) if len(frames) >= MIN_TRACK else []
        scores = []
        for index, track in enumerate(tracks):
            crop = tmp / f"{index:05d}.avi"
            tracking.crop_video(frames, track, tmp / "audio.wav", crop)
            scores.append(sync_score.evaluate(networks.syncnet, crop, work_dir=tmp))
        return scores


def check_official_demo(weights_dir: str | Path) -> tuple[bool, str]:
    """SyncNetInstance.evaluate on the official example.avi (a face-crop video) with the real syncnet_v2.model:
    whether it prints the official README's numbers (to its 3 decimals), and a line saying what it gave."""
    weights_dir = Path(weights_dir)
    video = weights_dir / DEMO_VIDEO
    if not video.is_file():
        from evaluation.errors import MissingWeightsError
        from evaluation.weights import fetch_hint

        raise MissingWeightsError(f"{video}: missing; {fetch_hint(video)}")
    scores = sync_score.evaluate(load_strict(SyncNet(), weights_dir / SYNCNET_FILE), video)
    got = {"offset": scores.offset, "min_dist": round(scores.min_dist, 3), "confidence": round(scores.confidence, 3)}
    ok = got["offset"] == DEMO_EXPECTED["offset"] and all(abs(got[k] - DEMO_EXPECTED[k]) <= 0.0015 for k in ("min_dist", "confidence"))
    line = "AV offset {offset}, min dist {min_dist:.3f}, confidence {confidence:.3f}"
    return ok, f"{line.format(**got)} ({'as' if ok else 'NOT as'} the official README: {line.format(**DEMO_EXPECTED)})"
