"""Video in and out: decoding frame by frame, and MP4 writing (streamed) with the input audio muxed in."""

import itertools
from collections.abc import Iterable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from tqdm.auto import tqdm

from modules.checkpoints import atomic_path
from modules.errors import VExpressError


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, audio_path: str | Path | None = None,
                num_frames: int | None = None) -> Path:
    """Frames, each (H, W, 3) uint8 (an array (n, H, W, 3) or any iterable of `num_frames` of them, consumed one
    by one), -> H.264 MP4 (yuv420p) at `fps`, with the audio (AAC) padded with silence or cut to the video's
    duration: the file holds every frame. Written to a temporary file beside `path` and renamed, so `path` only
    ever holds a complete video."""
    if num_frames is None:
        num_frames = len(frames)
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    duration = num_frames / fps
    audio = ["-af", "apad", "-t", f"{duration:.6f}"] if audio_path else []  # -shortest would cut the last frame
    with atomic_path(path) as partial:
        writer = imageio_ffmpeg.write_frames(
            str(partial), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=8, macro_block_size=2,
            audio_path=str(audio_path) if audio_path else None, audio_codec="aac" if audio_path else None,
            output_params=[*audio, "-f", "mp4"], ffmpeg_log_level="error",
        )
        try:
            writer.send(None)
            for frame in tqdm(itertools.chain([first], frames), total=num_frames, desc="writing video", unit="frame", leave=False):
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return Path(path)


def count_frames(path: str | Path) -> int:
    """The number of video frames in a file, counted from its packets (nothing is decoded)."""
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


class VideoError(VExpressError):
    """A video file that cannot be decoded, with a message naming it."""


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """A video file -> its frames (n, H, W, 3) uint8 RGB and its frame rate. Raises VideoError naming the file."""
    video = VideoFrames(path)
    return np.stack(list(video)), video.fps


def read_video_frames(path: str | Path, indices) -> tuple[dict[int, np.ndarray], int]:
    """The frames at `indices` that the video has, {index: (H, W, 3) uint8 RGB}, and its frame count. Every frame
    is decoded but only those are kept, so memory does not grow with the clip's length."""
    wanted, kept, count = set(indices), {}, 0
    for count, frame in enumerate(VideoFrames(path), start=1):
        if count - 1 in wanted:
            kept[count - 1] = frame
    return kept, count


class VideoFrames:
    """A video file's frames, (H, W, 3) uint8 RGB, decoded one at a time as they are iterated (a long clip never
    sits in memory whole). `fps`, `size` (W, H) and `expected_frames` (from the container's duration, for
    progress bars) are known on opening. Raises VideoError naming the file when it cannot be decoded or has
    no frames."""

    def __init__(self, path: str | Path):
        self.path = path
        try:
            self._reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
            meta = next(self._reader)
        except (RuntimeError, OSError, StopIteration) as error:
            raise self._error(error) from None
        self.fps, self.size = float(meta["fps"]), tuple(meta["size"])
        self.expected_frames = round(float(meta.get("duration") or 0) * self.fps) or None

    def _error(self, error) -> "VideoError":
        return VideoError(f"{self.path}: cannot read this video ({str(error).splitlines()[0][:200]})")

    def __iter__(self):
        width, height = self.size
        decoded = 0
        try:
            for decoded, raw in enumerate(self._reader, start=1):
                yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
        except (RuntimeError, OSError) as error:
            raise self._error(error) from None
        if not decoded:
            raise VideoError(f"{self.path}: the video has no frames")
