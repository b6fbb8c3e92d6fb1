"""How long scripts/evaluate.py takes to score one generated video (Sync-C/D by the official protocol: 25 fps
conversion, S3FD on every frame, tracks, crops, SyncNet) on --width x --height and the first of --seconds, run as a
user runs it. SyncNet has random weights; S3FD has random weights with its heads set to find one face, the whole
frame, in every frame (random heads find none), so every stage runs on every frame as on a real talking head.
FID's and FVD's feature extraction (every frame through the Inception, every 16-frame clip through the I3D, random
weights) is timed on the same video in this process: a generated video and its ground truth cost twice that."""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scripts.benchmarks.common import ROOT


def firing_detector(s3fd, box_scale: float = 0.25) -> dict:
    """`s3fd`'s state dict with its heads set so that only its stride-32 layer fires, every anchor with one box of
    `box_scale` times its anchor size: on a 128x128 frame (one anchor) 0.25 is the whole frame; on 512x512 (16
    anchors) 2.0 makes their boxes overlap enough for non-maximum suppression to keep one face."""
    import torch

    state = {key: value.clone() for key, value in s3fd.state_dict().items()}
    for layer in range(6):
        state[f"conf.{layer}.weight"].zero_()
        state[f"conf.{layer}.bias"].copy_(torch.tensor([10.0, 10.0, 10.0, -10.0] if layer == 0 else [10.0, -10.0]))
    state["conf.3.bias"].copy_(torch.tensor([-10.0, 10.0]))
    state["loc.3.weight"].zero_()
    state["loc.3.bias"].copy_(torch.tensor([0.0, 0.0, math.log(box_scale) / 0.2, math.log(box_scale) / 0.2]))
    return state


def write_talking_video(path: Path, width: int, height: int, seconds: float, fps: float = 30.0) -> Path:
    """A drifting pattern with speech-like noise bursts, written as inference.py writes its videos."""
    import soundfile

    from media.video import write_video

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width]
    frames = (np.stack([128 + 60 * np.sin((x + 2 * t) / 17.0) * np.cos(y / 23.0) for t in range(int(seconds * fps))]) + 0.5).astype(np.uint8)
    audio = rng.standard_normal(int(seconds * 16000)) * 0.1 * np.repeat(rng.random(int(seconds * 25) + 1) > 0.5, 640)[: int(seconds * 16000)]
    soundfile.write(path.with_suffix(".wav"), audio.astype(np.float32), 16000)
    return write_video(path, np.repeat(frames[..., None], 3, axis=3), fps, path.with_suffix(".wav"))


def run(args) -> dict:
    import torch

    from evaluation.s3fd import S3FD
    from evaluation.syncnet import SyncNet

    seconds = args.seconds[0]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        weights, videos = folder / "evaluation", folder / "videos"
        weights.mkdir()
        videos.mkdir()
        torch.manual_seed(0)
        torch.save(SyncNet().state_dict(), weights / "syncnet_v2.model")
        torch.save(firing_detector(S3FD(), box_scale=2.0 if args.width >= 256 else 0.25), weights / "sfd_face.pth")
        write_talking_video(videos / "clip.mp4", args.width, args.height, seconds)
        rows = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(videos), "--out", str(folder / "out"), "--weights_dir", str(weights)],
                capture_output=True, text=True, cwd=folder, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
            rows.append(dict(exit_status=result.returncode, wall_seconds=round(time.perf_counter() - started, 2)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        summary = json.loads((folder / "out" / "summary.json").read_text()) if (folder / "out" / "summary.json").is_file() else {}
        distribution = time_distribution_features(videos / "clip.mp4", args.repeats)
    return dict(report="scoring", seconds_of_video=seconds, size=f"{args.width}x{args.height}", runs=rows,
                best_wall_seconds=min(r["wall_seconds"] for r in rows), tracks=summary.get("metrics", {}).get("generated", {}).get("tracks"),
                fid_fvd_features=distribution,
                note="best_wall_seconds: Sync-C/D (KpsDis and CSIM need buffalo_l, absent here); fid_fvd_features: per video, in-process")


def time_distribution_features(video: Path, repeats: int) -> dict:
    """Seconds to extract one video's FID and FVD features (the best of `repeats`), and how many of each."""
    import torch

    from evaluation.distributions import DistributionNetworks
    from evaluation.i3d import I3D
    from evaluation.inception_fid import FIDInceptionV3

    torch.manual_seed(0)
    networks = DistributionNetworks(FIDInceptionV3(), I3D())
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        frames, clips = networks.video_features(video)
        best = min(best, time.perf_counter() - started)
        print(json.dumps(dict(fid_fvd_seconds=round(time.perf_counter() - started, 2))), file=sys.stderr, flush=True)
    return dict(best_seconds=round(best, 2), frames=len(frames), clips=len(clips))
