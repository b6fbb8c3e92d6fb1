"""Shared by the CLI tests: tiny checkpoints with a marker face detector, short inputs, MP4 inspection."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import soundfile as sf
import torch
from PIL import Image

from helpers.marker_detector import draw_marker, write_marker_detector
from motion.keypoints import load_kps_sequence
from pipelines.loading import ModelPaths
from scripts.make_tiny_checkpoints import write_tiny_checkpoints

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
MARKER = (24, 32)  # top-left corner of the marker cell in the 64x64 reference image


def free_port() -> int:
    """A TCP port free on this machine now (for a server, or the processes `accelerate launch` starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_model_ckpts(folder: Path) -> Path:
    write_tiny_checkpoints(folder)
    write_marker_detector(folder / "insightface_models")
    return folder


def weight_flags(ckpts: Path) -> list[str]:
    """--unet_config_path ... --motion_module_path pointing into a model_ckpts-layout folder."""
    return [arg for name, path in vars(ModelPaths.under(ckpts)).items() for arg in (f"--{name}", path)]


def make_inputs(folder: Path, seconds: float = 1.5) -> dict[str, Path]:
    """A 64x64 portrait with a face marker, speech cut to `seconds`, and a keypoint file in 64x64 pixels."""
    image = np.asarray(Image.open(ROOT / "test_samples" / "portrait.png").convert("RGB").resize((SIZE, SIZE))).copy()
    Image.fromarray(draw_marker(image, *MARKER)).save(folder / "reference.png")
    speech, rate = sf.read(ROOT / "test_samples" / "speech.wav", dtype="float32")
    sf.write(folder / "speech.wav", speech[: int(seconds * rate)], rate)
    kps = load_kps_sequence(ROOT / "test_samples" / "kps_sequence.pth") * (SIZE / 512)
    torch.save(list(kps[:60]), folder / "kps.pth")  # the published format: a list of float32 (3, 2) arrays
    return {"image": folder / "reference.png", "audio": folder / "speech.wav", "kps": folder / "kps.pth"}


def run_cli(script: str, *args, env=None) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True, env=environment, cwd=ROOT, timeout=600)


def shown_lines(stderr: str) -> list[str]:
    """The lines a terminal shows of a run's stderr, progress bars left out: each line's text after its last
    carriage return, without cursor movements."""
    lines = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line.rsplit("\r", 1)[-1]).strip() for line in stderr.split("\n"))
    return [line for line in lines if line and not re.search(r"\| *\d+/\d+ \[", line)]


def inspect_mp4(path: Path) -> dict:
    """Decode the whole file: codec, audio codec, fps, duration, frame count and the frames themselves."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])
    return dict(meta, frames=frames, num_frames=len(frames))


def write_lossless_video(path, frames, fps, audio_path=None):
    """Lossless H.264 (full-resolution colour), so the marker cells keep their colour through the file."""
    writer = imageio_ffmpeg.write_frames(
        str(path), frames.shape[2:0:-1], fps=fps, codec="libx264", pix_fmt_out="yuv444p", macro_block_size=1,
        output_params=["-crf", "0", "-shortest"], audio_path=str(audio_path) if audio_path else None,
        audio_codec="aac" if audio_path else None, ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    return path
