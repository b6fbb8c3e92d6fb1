"""The decode and encode steps of the official SyncNet protocol, each one ffmpeg call (imageio-ffmpeg's binary,
argument lists, never a shell). Codecs move the scores, so these commands are part of the metric."""

import subprocess
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from evaluation.errors import EvaluationError


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version() -> str:
    """ffmpeg's first `-version` line, e.g. "ffmpeg version n9.0.2-...": the decoder the scores depend on."""
    result = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False)
    return (result.stdout.splitlines() or ["unknown"])[0]


def run_ffmpeg(*args: str | Path, source: str | Path) -> None:
    """`ffmpeg -y -nostdin -loglevel error ARGS`; a failure is an EvaluationError naming `source` and ffmpeg's last line."""
    command = [ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise EvaluationError(f"{source}: ffmpeg cannot process it ({lines[-1][:200] if lines else f'exit status {result.returncode}'})")


def convert_to_25fps(video: str | Path, avi: str | Path) -> None:
    """run_pipeline.py's first step: the video re-encoded at 25 fps (MPEG-4 part 2 at qscale 2) with its audio."""
    run_ffmpeg("-i", video, "-qscale:v", "2", "-async", "1", "-r", "25", avi, source=video)


def extract_frames(video: str | Path, folder: str | Path, qscale: int | None = None) -> list[Path]:
    """Every frame as `folder/000001.jpg`, ...; run_pipeline.py passes `qscale` 2, SyncNetInstance.evaluate
    none. Returns the sorted paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quality = ["-qscale:v", str(qscale)] if qscale is not None else []
    run_ffmpeg("-i", video, *quality, "-threads", "1", "-f", "image2", folder / "%06d.jpg", source=video)
    frames = sorted(folder.glob("*.jpg"))
    if not frames:
        raise EvaluationError(f"{video}: no video frames could be decoded")
    return frames


def extract_audio(video: str | Path, wav: str | Path, resync: bool = True) -> None:
    """The audio as 16 kHz mono 16-bit PCM; `resync` adds `-async 1` (SyncNetInstance.evaluate does,
    run_pipeline.py does not)."""
    resync_args = ["-async", "1"] if resync else []
    run_ffmpeg("-i", video, *resync_args, "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000", wav, source=video)


def cut_audio(wav: str | Path, out: str | Path, start_s: float, end_s: float) -> None:
    """crop_video's audio cut, with its millisecond rounding of the times."""
    run_ffmpeg("-i", wav, "-ss", f"{start_s:.3f}", "-to", f"{end_s:.3f}", out, source=wav)


def mux(video: str | Path, wav: str | Path, out: str | Path) -> None:
    """Video and audio streams copied into one file (no re-encoding)."""
    run_ffmpeg("-i", video, "-i", wav, "-c:v", "copy", "-c:a", "copy", out, source=video)


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """(sample rate, samples) as scipy reads them: int16 for the PCM files above."""
    try:
        return wavfile.read(str(path))
    except (ValueError, OSError) as error:
        from modules.errors import first_line

        raise EvaluationError(f"{path}: unreadable audio ({first_line(error, path)})") from None


def write_wav(path: str | Path, audio_int16: np.ndarray, sample_rate: int = 16000) -> None:
    wavfile.write(str(path), sample_rate, np.asarray(audio_int16, dtype=np.int16))
