"""Write a synthetic talking-face training set: drawn faces whose head follows a known keypoint path and whose
mouth opening follows the loudness of the clip's own sound. Face info comes from the drawing itself (exact),
audio embeddings from the wav2vec2 at --audio_encoder_path, so the result is a dataset exactly as
scripts/prepare_dataset/prepare_dataset.py lays it out (meta.json, face_info/, audio_embeds/).

    python scripts/make_synthetic_dataset.py exp_output/tiny_data --clips 4 --frames 60 --size 64 \\
        --audio_encoder_path exp_output/tiny_ckpts/wav2vec2-base-960h
"""

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modules.checkpoints import save_file  # noqa: E402
from training.dataset_files import write_meta  # noqa: E402

SAMPLE_RATE = 16000


def loudness_envelope(num_samples: int, rng) -> np.ndarray:
    """Syllable-like loudness in [0, 1]: random bursts of 0.1-0.3 s separated by pauses, smoothed. About one pause
    in three is a silence of 0.4-0.8 s, as between sentences (the lip metrics' silences last 0.3 s or more)."""
    envelope, position = np.zeros(num_samples, np.float32), int(rng.integers(0, SAMPLE_RATE // 10))
    while position < num_samples:
        length = int(rng.uniform(0.1, 0.3) * SAMPLE_RATE)
        envelope[position:position + length] = rng.uniform(0.5, 1.0)
        pause = rng.uniform(0.4, 0.8) if rng.uniform() < 0.3 else rng.uniform(0.08, 0.25)
        position += length + int(pause * SAMPLE_RATE)
    kernel = np.hanning(SAMPLE_RATE // 25).astype(np.float32)
    return np.convolve(envelope, kernel / kernel.sum(), mode="same")


def face_geometry(centre: np.ndarray, radius: float, mouth_open: float) -> dict:
    """Keypoints (5, 2), box, 106 landmarks (mouth points 52..71 on the mouth outline) of a drawn face."""
    x, y = centre
    kps = np.array([[x - 0.35 * radius, y - 0.15 * radius], [x + 0.35 * radius, y - 0.15 * radius], [x, y + 0.12 * radius],
                    [x - 0.25 * radius, y + 0.45 * radius], [x + 0.25 * radius, y + 0.45 * radius]], np.float32)
    angles = np.linspace(0, 2 * np.pi, 106, endpoint=False)
    landmarks = np.stack([x + radius * np.cos(angles), y + radius * np.sin(angles)], axis=1).astype(np.float32)
    mouth = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    landmarks[52:72] = np.stack([x + MOUTH_HALF_WIDTH * radius * np.cos(mouth), y + 0.45 * radius + mouth_half_height(radius, mouth_open) * np.sin(mouth)], axis=1)
    bbox = np.array([x - radius, y - radius, x + radius, y + radius], np.float32)
    return {"bbox": bbox, "kps": kps, "det_score": 1.0, "landmark_2d_106": landmarks}


# The mouth is drawn large: at 64x64 one latent cell is 8x8 pixels, and a mouth that opened by a few pixels (half
# height 0.03-0.23 of the face's radius, half width 0.28) changed about one cell, too little for the tiny model to learn.
MOUTH_HALF_WIDTH = 0.36


def mouth_half_height(radius: float, mouth_open: float) -> float:
    return radius * (0.04 + 0.32 * mouth_open)


def draw_face(size: int, geometry: dict, mouth_open: float) -> np.ndarray:
    image = np.full((size, size, 3), 90, np.uint8)
    (x1, y1, x2, y2), kps = geometry["bbox"], geometry["kps"]
    centre, radius = ((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1) / 2
    scale = 16  # sub-pixel drawing
    point = lambda p: (int(round(p[0] * scale)), int(round(p[1] * scale)))  # noqa: E731
    cv2.ellipse(image, point(centre), (int(radius * scale), int(radius * 1.1 * scale)), 0, 0, 360, (224, 172, 140), -1, cv2.LINE_AA, 4)
    for eye in kps[:2]:
        cv2.circle(image, point(eye), int(0.12 * radius * scale), (30, 30, 60), -1, cv2.LINE_AA, 4)
    cv2.circle(image, point(kps[2]), int(0.06 * radius * scale), (170, 110, 90), -1, cv2.LINE_AA, 4)
    mouth_centre = (centre[0], centre[1] + 0.45 * radius)
    axes = (int(MOUTH_HALF_WIDTH * radius * scale), max(int(mouth_half_height(radius, mouth_open) * scale), 1))
    cv2.ellipse(image, point(mouth_centre), axes, 0, 0, 360, (110, 20, 30), -1, cv2.LINE_AA, 4)
    return image


def synthetic_clip(num_frames: int, fps: float, size: int, seed: int):
    """-> frames (F, size, size, 3) uint8 RGB, audio (samples,) float32 at 16 kHz, face info (per frame [record]),
    mouth opening per frame in [0, 1]."""
    rng = np.random.default_rng(seed)
    num_samples = int(round(num_frames / fps * SAMPLE_RATE))
    envelope = loudness_envelope(num_samples, rng)
    t = np.arange(num_samples) / SAMPLE_RATE
    pitch = rng.uniform(110, 220)
    voice = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6)) + 0.3 * rng.standard_normal(num_samples)
    audio = (0.25 * envelope * voice).astype(np.float32)
    radius = size * rng.uniform(0.24, 0.3)
    phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.2)
    frames, face_info, openings = [], [], []
    for i in range(num_frames):
        sample = min(int((i + 0.5) / fps * SAMPLE_RATE), num_samples - 1)
        mouth_open = float(np.clip(envelope[sample], 0, 1))
        angle = phase + speed * i / fps
        centre = np.array([size / 2 + 0.08 * size * np.sin(angle), size / 2 + 0.05 * size * np.cos(1.3 * angle)])
        geometry = face_geometry(centre, radius, mouth_open)
        frames.append(draw_face(size, geometry, mouth_open))
        face_info.append([geometry])
        openings.append(mouth_open)
    return np.stack(frames), audio, face_info, np.array(openings, np.float32)


def write_synthetic_dataset(out_dir, num_clips: int, num_frames: int, size: int, audio_encoder_path, fps: float = 25, seed: int = 0) -> Path:
    """Clips, face info, audio embeddings and meta.json under `out_dir`; returns the meta path."""
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from scripts.prepare_dataset.data_preparation import clip_audio_embeddings, clip_paths
    from media.video import write_video

    out_dir = Path(out_dir)
    processor = Wav2Vec2FeatureExtractor.from_pretrained(audio_encoder_path)
    encoder = Wav2Vec2Model.from_pretrained(audio_encoder_path).eval()
    clips = []
    for index in range(num_clips):
        frames, audio, face_info, openings = synthetic_clip(num_frames, fps, size, seed + index)
        paths = clip_paths(out_dir / "videos" / f"clip_{index:03d}.mp4", out_dir)
        with tempfile.TemporaryDirectory() as folder:
            soundfile.write(Path(folder) / "audio.wav", audio, SAMPLE_RATE)
            write_video(paths["video"], frames, fps, Path(folder) / "audio.wav")
        save_file({"global_embeds": clip_audio_embeddings(paths["video"], processor, encoder)}, paths["audio_embeds"])
        save_file(face_info, paths["face_info"])
        np.save(out_dir / "videos" / f"clip_{index:03d}_mouth_opening.npy", openings)
        clips.append(paths)
    return write_meta(out_dir / "meta.json", clips)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio_encoder_path", default="./model_ckpts/wav2vec2-base-960h/")
    args = parser.parse_args(argv)
    meta = write_synthetic_dataset(args.out_dir, args.clips, args.frames, args.size, args.audio_encoder_path, args.fps, args.seed)
    print(f"wrote {args.clips} clips; meta: {meta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
