"""Video in and out: decoding frame by frame, and MP4 writing (streamed) with the input audio muxed in."""

import contextlib
import itertools
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from tqdm.auto import tqdm

from modules.checkpoints import atomic_path
from modules.errors import NoSpaceError, VExpressError, first_line, out_of_space

BYTES_PER_OUTPUT_PIXEL = 0.25  # generous for H.264 at the quality written (about 0.03 measured on talking heads)


class VideoError(VExpressError):
    """A video file that cannot be decoded or written, with a message naming it."""


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, audio_path: str | Path | None = None,
                num_frames: int | None = None, finish: Callable[[Path], None] | None = None) -> Path:
    """Frames, each (H, W, 3) uint8 (an array (n, H, W, 3) or any iterable of `num_frames` of them, consumed one
    by one), -> H.264 MP4 (yuv420p) at `fps`, with the audio (AAC) padded with silence or cut to the video's
    duration: the file holds every frame. Written to a temporary file beside `path` and renamed, so `path` only
    ever holds a complete video; `finish(temporary path)` runs on the complete file before the rename (the marks). Raises VideoError when ffmpeg fails, NoSpaceError when the disk is full."""
    if num_frames is None:
        num_frames = len(frames)
    frames = iter(frames)
    first = next(frames)
    height, width = first.shape[:2]
    # imageio_ffmpeg.write_frames' command (quality 8, macro_block_size 2), run here to read ffmpeg's messages and
    # exit status: that generator sends the messages to the terminal and takes a failed trailer for success.
    odd = ["-vf", f"scale={width + width % 2}:{height + height % 2}"] if width % 2 or height % 2 else []
    audio = ["-af", "apad", "-t", f"{num_frames / fps:.6f}"] if audio_path else []  # -shortest would cut the last frame
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24",
        "-r", str(Fraction(fps).limit_denominator()), "-i", "-", *(["-i", str(audio_path)] if audio_path else ["-an"]),
        "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", *odd, "-v", "error", *audio, "-f", "mp4",
        *(["-acodec", "aac", "-map", "0:v:0", "-map", "1:a:0"] if audio_path else []),
    ]
    sent = 0
    with atomic_path(path) as partial, tempfile.TemporaryFile() as log:
        # A session of its own, as imageio_ffmpeg does: Ctrl-C reaches this process alone, which stops ffmpeg.
        process = subprocess.Popen([*command, str(partial)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            for frame in tqdm(itertools.chain([first], frames), total=num_frames, desc="writing video", unit="frame", leave=False):
                process.stdin.write(np.ascontiguousarray(frame))
                sent += 1
        except BrokenPipeError:  # ffmpeg stopped early: its exit status and messages say why
            pass
        except BaseException:
            process.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            process.wait()
        if process.returncode:
            log.seek(0)
            messages = log.read().decode(errors="replace")
            if out_of_space(partial.parent, messages):
                written = partial.stat().st_size if partial.is_file() else 0
                raise NoSpaceError(path, max(num_frames * width * height * BYTES_PER_OUTPUT_PIXEL, written * num_frames / max(sent, 1)))
            detail = (messages.strip().splitlines() or [f"exit status {process.returncode}"])[0]
            raise VideoError(f"{path}: ffmpeg could not write the video ({detail[:200]})")
        if finish is not None:
            finish(partial)
    return Path(path)


def count_frames(path: str | Path) -> int:
    """The number of video frames in a file, counted from its packets (nothing is decoded)."""
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


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
        return VideoError(f"{self.path}: cannot read this video ({first_line(error, self.path)}); give a video ffmpeg decodes (MP4, MOV, MKV, WebM, ...)")

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
