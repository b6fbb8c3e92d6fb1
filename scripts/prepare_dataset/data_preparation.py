"""Talking-head videos -> training data: per clip a face-info file and an audio-embedding file, and the meta
JSON listing the clips (formats in dataset_files.py). Finished and skipped clips are remembered, so an
interrupted run picks up where it stopped."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import imageio_ffmpeg
import torch
from tqdm.auto import tqdm

from modules.checkpoints import save_file
from modules.errors import first_line
from media.audio import AudioError, load_audio
from media.face import FaceDetector
from training.dataset_files import (
    DatasetError, face_record, load_audio_embeddings, load_face_info, read_meta, write_json, write_meta,
)
from media.video import VideoError, VideoFrames

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
AUDIO_VECTORS_PER_SECOND = 50  # wav2vec2-base: one vector per 320 samples of 16 kHz audio


class SkipClip(Exception):
    """A clip that cannot be training data; the message says why."""


@dataclass
class PreparationReport:
    prepared: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # clip name -> reason


def clip_face_info(video_path: Path, detector: FaceDetector) -> list[list[dict]]:
    """Per frame, a list holding the one face record; SkipClip at the first frame without exactly one face."""
    face_info = []
    try:
        video = VideoFrames(video_path)
        for index, frame in enumerate(tqdm(video, total=video.expected_frames, desc=video_path.name, unit="frame", leave=False)):
            faces = detector.faces(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if len(faces) != 1:
                raise SkipClip(f"frame {index} has {len(faces)} faces; training clips need exactly one face in every frame")
            face_info.append([face_record(faces[0])])
    except VideoError as error:
        raise SkipClip(str(error)) from None
    return face_info


@torch.no_grad()
def clip_audio_embeddings(video_path: Path, audio_processor, audio_encoder) -> torch.Tensor:
    """The clip's sound at 16 kHz mono -> wav2vec2 last_hidden_state (T, 1, 768), float32 on the CPU."""
    try:
        waveform = load_audio(video_path, audio_processor.sampling_rate)
    except AudioError as error:
        raise SkipClip(f"no usable audio track ({error})") from None
    inputs = audio_processor(waveform.numpy(), sampling_rate=audio_processor.sampling_rate, return_tensors="pt")
    hidden_states = audio_encoder(inputs.input_values.to(audio_encoder.device, audio_encoder.dtype)).last_hidden_state
    return hidden_states.float().cpu().permute(1, 0, 2).contiguous()


def clip_paths(video: Path, output_dir: Path) -> dict[str, Path]:
    return {"video": video, "face_info": output_dir / "face_info" / f"{video.stem}.pt", "audio_embeds": output_dir / "audio_embeds" / f"{video.stem}.pt"}


def prepare_dataset(videos_dir, output_dir, meta_path, detector: FaceDetector, audio_processor, audio_encoder, report=print) -> PreparationReport:
    """Every video in `videos_dir` (sorted) -> its two files under `output_dir`, then the meta JSON of all
    prepared clips. Clips already prepared, or already found unusable (`output_dir/skipped.json`), are not redone."""
    videos_dir, output_dir = Path(videos_dir), Path(output_dir)
    videos = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DatasetError(f"{videos_dir}: no videos ({', '.join(VIDEO_SUFFIXES)}) found")
    skipped_path = output_dir / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else {}
    result, prepared_clips = PreparationReport(), []
    for video in tqdm(videos, desc="clips", unit="clip"):
        paths = clip_paths(video, output_dir)
        if paths["face_info"].is_file() and paths["audio_embeds"].is_file():
            result.already_done.append(video.name)
            prepared_clips.append(paths)
            continue
        if video.name in skipped:
            result.skipped[video.name] = skipped[video.name]
            continue
        try:
            face_info = clip_face_info(video, detector)
            audio_embeds = clip_audio_embeddings(video, audio_processor, audio_encoder)
        except SkipClip as reason:
            report(f"skipped {video.name}: {reason}")
            result.skipped[video.name] = skipped[video.name] = str(reason)
            write_json(skipped_path, skipped)
            continue
        save_file({"global_embeds": audio_embeds}, paths["audio_embeds"])
        save_file(face_info, paths["face_info"])  # written last: its presence marks the clip finished
        result.prepared.append(video.name)
        prepared_clips.append(paths)
        write_meta(meta_path, prepared_clips)  # kept current, so an interrupted run leaves a usable meta file
    write_meta(meta_path, prepared_clips)
    return result


@dataclass
class ClipCheck:
    clip: str
    frames: int | None = None
    face_frames: int | None = None
    audio_vectors: int | None = None
    problems: list[str] = field(default_factory=list)


def check_dataset(meta_path) -> list[ClipCheck]:
    """Every clip of a meta JSON: files present and readable, one face record per video frame with the
    fields training reads, audio embeddings (T, 1, dim) with T about 50 per second of video."""
    checks = []
    for clip in tqdm(read_meta(meta_path), desc="checking", unit="clip", leave=False):
        check = ClipCheck(Path(clip["video"]).name)
        checks.append(check)
        duration = None
        try:
            check.frames, duration = imageio_ffmpeg.count_frames_and_secs(clip["video"])
        except (RuntimeError, OSError) as error:
            check.problems.append(f"video unreadable ({first_line(error, limit=120)})")
        try:
            check.face_frames = len(load_face_info(clip["face_info"]))
        except DatasetError as error:
            check.problems.append(str(error))
        try:
            check.audio_vectors = len(load_audio_embeddings(clip["audio_embeds"]))
        except DatasetError as error:
            check.problems.append(str(error))
        if check.frames is not None and check.face_frames is not None and check.frames != check.face_frames:
            check.problems.append(f"{check.face_frames} face records for {check.frames} video frames")
        if duration and check.audio_vectors is not None:
            expected = AUDIO_VECTORS_PER_SECOND * duration
            if abs(check.audio_vectors - expected) > max(2, 0.05 * expected):
                check.problems.append(f"{check.audio_vectors} audio vectors for {duration:.2f} s of video (about {expected:.0f} expected)")
    return checks


def format_check_table(checks: list[ClipCheck]) -> str:
    rows = [("clip", "frames", "face frames", "audio vectors", "status")]
    for c in checks:
        rows.append((c.clip, *("-" if v is None else str(v) for v in (c.frames, c.face_frames, c.audio_vectors)), "; ".join(c.problems) or "ok"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0])).rstrip() for row in rows)
