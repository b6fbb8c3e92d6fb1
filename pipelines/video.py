"""Video in and out: decoding frame by frame, the flicker filter, and MP4 writing with the input audio muxed in."""

import os
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from modules.errors import VExpressError


def median_filter_video(video: torch.Tensor, chunk_frames: int = 8) -> torch.Tensor:
    """3x3x3 median over (time, height, width) per colour channel, mirror padding (the edge is not repeated).
    video: (batch, channels, frames, H, W) -> same shape. Works through the frames in chunks to bound memory."""
    mode = "reflect" if min(video.shape[2:]) > 1 else "replicate"
    padded = F.pad(video, (1, 1, 1, 1, 1, 1), mode=mode)
    out = torch.empty_like(video)
    for start in range(0, video.shape[2], chunk_frames):
        stop = min(start + chunk_frames, video.shape[2])
        block = padded[:, :, start:stop + 2]
        neighbours = block.unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)  # (b, c, t, h, w, 3, 3, 3)
        out[:, :, start:stop] = neighbours.flatten(-3).median(dim=-1).values
    return out


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, frames, H, W) in [0, 1] -> (frames, H, W, 3) uint8, values x 255 truncated."""
    return (video[0].permute(1, 2, 3, 0) * 255).to(torch.uint8).cpu().numpy()


def write_video(path: str | Path, frames: np.ndarray, fps: float, audio_path: str | Path | None = None) -> Path:
    """frames (n, H, W, 3) uint8 -> H.264 MP4 (yuv420p) with the audio (AAC), cut to the shorter stream.
    Written to a temporary file beside `path` and renamed, so `path` only ever holds a complete video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(partial), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=8, macro_block_size=2,
        audio_path=str(audio_path) if audio_path else None, audio_codec="aac" if audio_path else None,
        output_params=["-shortest", "-f", "mp4"], ffmpeg_log_level="error",
    )
    try:
        writer.send(None)
        for frame in tqdm(frames, desc="writing video", unit="frame", leave=False):
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


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
