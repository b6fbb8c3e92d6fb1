"""Does training teach the networks what V-Express needs? Train the tiny architecture on synthetic talking
faces (scripts/make_synthetic_dataset.py: mouth opening follows the sound's loudness, head follows the
keypoints) and measure, on a held-out clip, how well generated videos follow both, before and after:

- lip sync: Pearson correlation between the mouth opening seen in each generated frame (dark mouth pixels)
  and the true opening (the clip's loudness);
- head motion: mean distance in pixels between the face centre found in each generated frame (skin pixels)
  and the one the driving keypoints give, and the same for the eyes (dark holes in the upper face).

Run it again with the same --work_dir and --steps to re-measure without training again. It saves the first
generated frames (after_training_frames.png) and README's figure of inputs and outputs (inputs_and_outputs.png)
under --work_dir.

    python scripts/learning_check.py --work_dir exp_output/learning_check --steps 4000

It first fits a small VAE to the synthetic frames (the tiny checkpoints' VAE is random). On a 2-core CPU the
whole check takes about 35 minutes; it is a check to run by hand, not a test.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.dataset_files import load_face_info, read_meta  # noqa: E402
from motion.keypoints import draw_kps_image  # noqa: E402
from media.video import read_video  # noqa: E402
from scripts.make_synthetic_dataset import write_synthetic_dataset  # noqa: E402
from scripts.make_tiny_checkpoints import write_tiny_checkpoints  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
HELD_OUT_FRAMES = 60  # 2.4 s at 25 fps: long enough for pauses of 0.3 s or more
# The tiny checkpoints' VAE is random: it cannot reconstruct a face, so the check first fits a small one.
VAE_CONFIG = dict(
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[32, 64, 64, 64],
    layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=SIZE,
)


def fit_vae(clips: list[dict], steps: int, out_dir: Path, seed: int = 0) -> Path:
    """A small AutoencoderKL trained to reconstruct the training clips' frames (MSE + a little KL), saved with the
    scaling factor that gives its latents unit variance."""
    from diffusers import AutoencoderKL
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    pixels = torch.from_numpy(np.concatenate([read_video(clip["video"])[0] for clip in clips])).permute(0, 3, 1, 2).float() / 127.5 - 1
    vae = AutoencoderKL(**VAE_CONFIG)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    for _ in tqdm(range(steps), desc="fitting the VAE", unit="step"):
        batch = pixels[torch.randint(0, len(pixels), (16,))]
        posterior = vae.encode(batch).latent_dist
        loss = torch.nn.functional.mse_loss(vae.decode(posterior.sample()).sample, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scale = 1 / float(vae.encode(pixels[:64]).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(out_dir)
    return out_dir


def mouth_darkness(frame: np.ndarray, kps: np.ndarray) -> float:
    """Fraction of mouth-coloured pixels (red, dark) in the window around where the mouth is drawn (make_synthetic_dataset:
    0.33 face radii below the nose, 0.36 radii across, up to 0.36 radii high; the eyes are 0.7 radii apart)."""
    eye_distance = np.linalg.norm(kps[1] - kps[0])
    centre = kps[2] + np.array([0.0, 0.33 / 0.7 * eye_distance])
    half = np.maximum(np.array([0.6, 0.55]) * eye_distance, 2).astype(int)
    x0, y0 = np.clip((centre - half).astype(int), 0, SIZE - 1)
    x1, y1 = np.clip((centre + half).astype(int) + 1, 1, SIZE)
    mouth = mouth_mask(frame[y0:y1, x0:x1])
    return float(mouth.mean()) if mouth.size else 0.0


def skin_mask(frame: np.ndarray) -> np.ndarray:
    pixels = frame.astype(np.float32)
    return (pixels[..., 0] > 150) & (pixels[..., 0] - pixels[..., 2] > 40)


def mouth_mask(frame: np.ndarray) -> np.ndarray:
    pixels = frame.astype(np.float32)
    return (pixels[..., 0] - pixels[..., 1] > 50) & (pixels[..., 1] < 90)


def face_centre(frame: np.ndarray) -> np.ndarray | None:
    """Centroid of the face's skin- and mouth-coloured pixels (an open mouth would pull the skin's centroid up), or
    None when there are hardly any."""
    ys, xs = np.nonzero(skin_mask(frame) | mouth_mask(frame))
    return np.array([xs.mean(), ys.mean()], np.float32) if len(xs) > 20 else None


def eye_positions(frame: np.ndarray) -> np.ndarray | None:
    """Centroids of the dark holes in the upper half of the face (non-skin pixels between a row's skin pixels,
    much darker than the skin), left and right of the face centre; None if either side has none."""
    skin = skin_mask(frame)
    centre = face_centre(frame)
    if centre is None:
        return None
    brightness = frame.astype(np.float32).sum(axis=-1)
    interior = np.zeros_like(skin)
    for row in range(int(centre[1])):
        columns = np.nonzero(skin[row])[0]
        if len(columns) > 4:
            interior[row, columns[0] + 2:columns[-1] - 1] = True
    dark = interior & ~skin & (brightness < 0.75 * np.median(brightness[skin]))
    cols = np.arange(frame.shape[1])[None, :]
    eyes = []
    for side in (cols < centre[0], cols >= centre[0]):
        ey, ex = np.nonzero(dark & side)
        if len(ex) < 2:
            return None
        eyes.append([ex.mean(), ey.mean()])
    return np.array(eyes, np.float32)


def true_face_centre(kps: np.ndarray) -> np.ndarray:
    """The drawn face's centre from its keypoints (make_synthetic_dataset: eyes 0.7 radius apart, 0.15 radius up)."""
    radius = np.linalg.norm(kps[1] - kps[0]) / 0.7
    return (kps[0] + kps[1]) / 2 + np.array([0.0, 0.15 * radius])


def follow_scores(video: np.ndarray, driving_kps: np.ndarray, opening: np.ndarray) -> dict:
    darkness = np.array([mouth_darkness(frame, kps) for frame, kps in zip(video, driving_kps)])
    lip_sync = float(np.corrcoef(darkness, opening[:len(darkness)])[0, 1]) if darkness.std() > 0 else 0.0
    eye_errors, centre_errors = [], []
    for frame, kps in zip(video, driving_kps):
        eyes, centre = eye_positions(frame), face_centre(frame)
        if eyes is not None:
            eye_errors.append(float(np.linalg.norm(eyes - kps[:2], axis=1).mean()))
        if centre is not None:
            centre_errors.append(float(np.linalg.norm(centre - true_face_centre(kps))))
    mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    return {
        "lip_sync_correlation": lip_sync, "face_centre_error_px": mean(centre_errors), "eye_error_px": mean(eye_errors),
        "frames_without_face": len(video) - len(centre_errors), "frames_without_eyes": len(video) - len(eye_errors),
    }


def load_trained_pipeline(ckpts: Path, weights: dict[str, Path]):
    from pipelines.loading import ModelPaths, load_pipeline

    paths = ModelPaths.under(ckpts)
    for name, path in weights.items():
        setattr(paths, f"{name}_path", str(path))
    pipeline = load_pipeline(paths)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def load_clip(clip: dict) -> dict:
    """The held-out clip's inputs, read once: the portrait (its frame with the mouth most closed, as a portrait photo
    usually is: with no audio the model gives the portrait's mouth) and its keypoints, the first frames' keypoints,
    and its sound."""
    from PIL import Image

    from media.audio import load_audio

    frames, _ = read_video(clip["video"])
    length = min(len(frames), HELD_OUT_FRAMES)
    all_kps = np.stack([face["kps"][:3] for face in load_face_info(clip["face_info"])])
    portrait = int(np.argmin(np.load(Path(clip["video"]).with_name(Path(clip["video"]).stem + "_mouth_opening.npy"))))
    return dict(reference=Image.fromarray(frames[portrait]), reference_kps=all_kps[portrait], kps=all_kps[:length],
                waveform=load_audio(clip["video"]), length=length)


def generate(pipeline, inputs: dict, steps: int, seed: int = 0, scheduler: str = "ddim", timings: dict | None = None, **mode) -> tuple[np.ndarray, np.ndarray]:
    """The held-out clip (`load_clip`) re-generated from its first frame, its sound and its keypoints: (frames, driving
    kps). `scheduler` and `mode` (guidance_interval, cache_interval) select a fast mode."""
    from motion.keypoints import KpsImages
    from pipelines.loading import make_scheduler

    pipeline.scheduler = make_scheduler(scheduler)
    output = pipeline(
        reference_image=inputs["reference"], kps_images=KpsImages(inputs["kps"], SIZE, SIZE), audio_waveform=inputs["waveform"],
        width=SIZE, height=SIZE, video_length=inputs["length"], num_inference_steps=steps, guidance_scale=3.5, context_frames=24,
        generator=torch.Generator().manual_seed(seed), return_output=True, **mode,
    )
    video = output.frames
    if timings is not None:
        timings.update(output.timings)
    return (video[0].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8), inputs["kps"]


# The fast modes compared with the published sampler (DDIM, 25 steps, guidance on every step).
MODES = {
    "default: ddim 25 steps": dict(scheduler="ddim", steps=25),
    "ddim 12 steps": dict(scheduler="ddim", steps=12),
    "dpmpp_2m 12 steps": dict(scheduler="dpmpp_2m", steps=12),
    "unipc 12 steps": dict(scheduler="unipc", steps=12),
    "dpmpp_2m 8 steps": dict(scheduler="dpmpp_2m", steps=8),
    "unipc 8 steps": dict(scheduler="unipc", steps=8),
    "guidance_interval 0.2 1": dict(scheduler="ddim", steps=25, guidance_interval=(0.2, 1.0)),
    "guidance_interval 0 0.6": dict(scheduler="ddim", steps=25, guidance_interval=(0.0, 0.6)),
    "cache_interval 2": dict(scheduler="ddim", steps=25, cache_interval=2),
    "cache_interval 3": dict(scheduler="ddim", steps=25, cache_interval=3),
}


def modes_and_presets() -> dict[str, dict]:
    """MODES and the presets other than the default, as {name: (scheduler, steps, guidance_interval, cache_interval)}:
    what compare_modes (and benchmark_inference.py --report modes) measure."""
    from app.requests import PRESETS

    modes = dict(MODES)
    for name, preset in PRESETS.items():
        if name != "published":
            modes[f"preset {name}"] = dict(scheduler=preset["scheduler"], steps=preset["num_inference_steps"],
                                           guidance_interval=preset["guidance_interval"], cache_interval=preset["cache_interval"])
    return modes


def compare_modes(pipeline, inputs: dict, opening: np.ndarray) -> list[dict]:
    """Each mode and preset on the held-out clip (`load_clip`): the learning check's scores, PSNR against the
    default's video, and the speed ratio against the default (UNet seconds, total seconds)."""
    rows, default_video = [], None
    for name, mode in modes_and_presets().items():
        mode, timings = dict(mode), {}
        started = time.perf_counter()
        video, kps = generate(pipeline, inputs, mode.pop("steps"), timings=timings, **mode)
        seconds = time.perf_counter() - started
        default_video = video if default_video is None else default_video
        error = np.mean((video.astype(np.float64) - default_video) ** 2)
        rows.append(dict(mode=name, **follow_scores(video, kps, opening), psnr_db=float("inf") if error == 0 else 10 * np.log10(255**2 / error),
                         unet_seconds=timings["denoising"], total_seconds=seconds))
    for row in rows:
        row["unet_speedup"], row["total_speedup"] = rows[0]["unet_seconds"] / row["unet_seconds"], rows[0]["total_seconds"] / row["total_seconds"]
    return rows


def format_modes(rows: list[dict]) -> str:
    """The comparison as a Markdown table (docs/speed.md)."""
    lines = ["| mode | UNet speed-up | total speed-up | face-centre error px | eye error px | lip-sync r | PSNR vs default dB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['unet_speedup']:.2f}× | {r['total_speedup']:.2f}× | {r['face_centre_error_px']:.2f} | "
                     f"{r['eye_error_px']:.2f} | {r['lip_sync_correlation']:.3f} | {r['psnr_db']:.1f} |")
    return "\n".join(lines)


FPS = 25  # the synthetic clips'
SPEECH_OPENING = 0.05  # a frame is speech when the true mouth opening (the loudness) is above this


def true_speech_segments(opening: np.ndarray, fps: float = FPS) -> list[tuple[float, float]]:
    """The clip's speech as (start, end) seconds, from its true mouth opening. silero-vad finds no speech in the
    synthetic buzz, so the lip modes are given the true silences, as it would find them in real speech."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (opening > SPEECH_OPENING).astype(np.int8), [0]])))
    return [(start / fps, (stop - 1) / fps) for start, stop in zip(edges[::2], edges[1::2])]


def face_crop(frame: np.ndarray, kps: np.ndarray, side: int = 32) -> np.ndarray:
    """The face's box (from its keypoints), resized to side x side, as a mean-centred vector."""
    import cv2

    centre, radius = true_face_centre(kps), np.linalg.norm(kps[1] - kps[0]) / 0.7 * 1.1
    x0, y0 = np.clip((centre - radius).astype(int), 0, SIZE - 1)
    x1, y1 = np.clip((centre + radius).astype(int), x0 + 1, SIZE)
    vector = cv2.resize(frame[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return vector - vector.mean()


def lip_pose_identity(video: np.ndarray, driving_kps: np.ndarray, opening: np.ndarray, waveform, reference: np.ndarray,
                      reference_kps: np.ndarray) -> dict:
    """The lip metrics of THEval (evaluation/lips.py) with the learning check's mouth opening for the lip gap (no face
    landmark model finds these drawn faces), the pose error (KpsDis: eyes and face centre found against the keypoints
    drawn), and identity: the cosine similarity of each frame's face crop to the portrait's (pixels, not ArcFace)."""
    from evaluation import lips

    gap = np.array([mouth_darkness(frame, kps) for frame, kps in zip(video, driving_kps)])
    speech = lips.speech_mask(true_speech_segments(opening[:len(video)]), len(video), FPS)
    rms = lips.rms_at_frames(np.asarray(waveform, np.float32), 16000, len(video), FPS)
    stability = lips.silent_lip_stability(gap, lips.long_silences(speech, FPS))
    portrait = face_crop(reference, reference_kps)
    crops = [face_crop(frame, kps) for frame, kps in zip(video, driving_kps)]
    similarity = [float(crop @ portrait / (np.linalg.norm(crop) * np.linalg.norm(portrait) + 1e-8)) for crop in crops]
    follow = follow_scores(video, driving_kps, opening)
    return dict(lip_sync_correlation=follow["lip_sync_correlation"], lip_sync=lips.lip_sync(gap, rms, speech),
                silent_lip_stability=stability[0] if stability else float("nan"), silent_lip_opening=stability[1] if stability else float("nan"),
                eye_error_px=follow["eye_error_px"], face_centre_error_px=follow["face_centre_error_px"], identity=float(np.mean(similarity)))


def lip_modes(inputs: dict, driver_kps: np.ndarray, opening: np.ndarray) -> dict[str, tuple[dict, dict, dict]]:
    """README's table of modes: {name: (pipeline arguments, input changes, scheduler and steps)}."""
    import torch

    from app.requests import PRESETS
    from media.voice_activity import rest_weights
    from motion.plan import plan_keypoints

    length, portrait_kps = inputs["length"], inputs["reference_kps"]
    natural = plan_keypoints(portrait_kps, None, length, strategy="fix_face", head_motion="natural", waveform=inputs["waveform"], fps=FPS)
    similarity = plan_keypoints(portrait_kps, driver_kps, length, strategy="similarity_retarget")
    rest = torch.from_numpy(rest_weights(true_speech_segments(opening[:length]), length, FPS))
    modes = {"published (ddim, 25 steps)": ({}, {}, dict(scheduler="ddim", steps=25))}
    for name in ("balanced", "fast"):
        preset = PRESETS[name]
        modes[f"--preset {name}"] = (dict(guidance_interval=preset["guidance_interval"], cache_interval=preset["cache_interval"]), {},
                                     dict(scheduler=preset["scheduler"], steps=preset["num_inference_steps"]))
    modes["--head_motion natural (a still portrait)"] = ({}, dict(kps=natural.numpy()), dict(scheduler="ddim", steps=25))
    modes["similarity_retarget (another clip's motion)"] = ({}, dict(kps=similarity.numpy()), dict(scheduler="ddim", steps=25))
    modes["--mouth_in_silence rest"] = (dict(mouth_weights=rest), {}, dict(scheduler="ddim", steps=25))
    return modes


LIP_MODE_SEEDS = (0, 1, 2)  # the held-out clip has one long pause: each mode's scores are averaged over three noises


def compare_lip_modes(pipeline, inputs: dict, driver_kps: np.ndarray, opening: np.ndarray) -> list[dict]:
    rows = []
    for name, (arguments, changes, sampler) in lip_modes(inputs, driver_kps, opening).items():
        seconds, scores = 0.0, []
        for seed in LIP_MODE_SEEDS:
            timings = {}
            video, kps = generate(pipeline, {**inputs, **changes}, sampler["steps"], seed=seed, scheduler=sampler["scheduler"], timings=timings, **arguments)
            seconds += timings["denoising"]
            scores.append(lip_pose_identity(video, kps, opening, inputs["waveform"], np.asarray(inputs["reference"]), inputs["reference_kps"]))
        rows.append(dict(mode=name, denoising_seconds=seconds, **{key: float(np.mean([s[key] for s in scores])) for key in scores[0]}))
    for row in rows:
        row["speedup"] = rows[0]["denoising_seconds"] / row["denoising_seconds"]
    return rows


def format_lip_modes(rows: list[dict]) -> str:
    """README's table (Markdown)."""
    def number(value, digits=3):
        return "–" if value is None or value != value else f"{value:.{digits}f}"

    lines = ["| mode | speed-up | lip-sync r ↑ | Lip-Sync ↓ | Silent-Lip-Stability ↓ | mouth open in silence ↓ | KpsDis eyes px ↓ | face centre px ↓ | identity ↑ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['speedup']:.2f}× | {number(r['lip_sync_correlation'], 2)} | {number(r['lip_sync'])} | "
                     f"{number(r['silent_lip_stability'], 4)} | {number(r['silent_lip_opening'], 3)} | {number(r['eye_error_px'], 2)} | "
                     f"{number(r['face_centre_error_px'], 2)} | {number(r['identity'], 3)} |")
    return "\n".join(lines)


def save_figure(reference: np.ndarray, driving_kps: np.ndarray, video: np.ndarray, path: Path, frames=(0, 6, 12, 18)) -> None:
    """Inputs above outputs, each image enlarged 3x: the reference portrait beside the V-Kps images of some frames,
    and below those the frames generated for them."""
    from PIL import Image

    blank = np.full_like(reference, 255)
    top = [reference] + [draw_kps_image(SIZE, SIZE, driving_kps[i]) for i in frames]
    bottom = [blank] + [video[i] for i in frames]
    grid = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="exp_output/learning_check")
    parser.add_argument("--clips", type=int, default=8, help="training clips (one more is held out)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--steps", type=int, default=4000, help="training steps")
    parser.add_argument("--inference_steps", type=int, default=20)
    parser.add_argument("--vae_steps", type=int, default=400, help="steps fitting the small VAE first")
    parser.add_argument("--compare_modes", action="store_true", help="then measure the fast modes and presets against the default sampler")
    parser.add_argument("--lip_modes", action="store_true", help="then README's table: the presets, head motion, similarity_retarget and "
                        "--mouth_in_silence rest with their lip, pose and identity cost")
    args = parser.parse_args(argv)
    from train import load_config, train

    work = Path(args.work_dir)
    names = ("reference_net", "denoising_unet", "motion_module", "v_kps_guider", "audio_projection")
    trained = {name: work / "run" / f"{name}-{args.steps}.pth" for name in names}
    already_trained = all(path.is_file() for path in trained.values())
    ckpts, meta = work / "ckpts", work / "data" / "meta.json"
    if not already_trained:
        write_tiny_checkpoints(ckpts)
        write_synthetic_dataset(work / "data", args.clips + 1, args.frames, SIZE, ckpts / "wav2vec2-base-960h", seed=100)
    clips = read_meta(meta)
    held_out = clips[-1]
    opening = np.load(Path(held_out["video"]).with_name(Path(held_out["video"]).stem + "_mouth_opening.npy"))
    train_meta = work / "data" / "train_meta.json"
    train_meta.write_text(json.dumps(json.loads(meta.read_text())[:-1], indent=2))
    if not already_trained:
        fit_vae(clips[:-1], args.vae_steps, ckpts / "sd-vae-ft-mse")

    config = OmegaConf.load(ROOT / "training_configs" / "tiny.yaml")
    config.data.meta_paths = [str(train_meta)]
    config.base_model_path, config.vae_model_path = str(ckpts / "sd-image-variations-diffusers"), str(ckpts / "sd-vae-ft-mse")
    config.output_dir, config.report_to = str(work / "run"), "none"
    config.solver.max_train_steps = config.checkpointing_steps = args.steps
    config.resume_from_checkpoint = ""
    config_path = work / "learning_check.yaml"
    OmegaConf.save(config, config_path)

    held_out_inputs = load_clip(held_out)
    before = follow_scores(*generate(load_trained_pipeline(ckpts, {}), held_out_inputs, args.inference_steps), opening)
    started = time.perf_counter()
    if not already_trained:
        train(load_config(config_path), "learning_check")
    seconds = time.perf_counter() - started
    pipeline = load_trained_pipeline(ckpts, trained)
    video, kps = generate(pipeline, held_out_inputs, args.inference_steps)
    after = follow_scores(video, kps, opening)
    from PIL import Image

    Image.fromarray(np.concatenate(list(video[:8]), axis=1)).save(work / "after_training_frames.png")
    save_figure(np.asarray(held_out_inputs["reference"]), kps, video, work / "inputs_and_outputs.png")
    trained_how = "(trained before)" if already_trained else f"in {seconds:.0f} s"
    print(f"\ntrained {args.steps} steps on {len(clips) - 1} clips {trained_how}; held-out clip {Path(held_out['video']).name}")
    print(f"{'':24}{'before':>10}{'after':>10}")
    for key in before:
        print(f"{key:24}{before[key]:>10.3f}{after[key]:>10.3f}")
    print(f"frames: {work / 'after_training_frames.png'}, {work / 'inputs_and_outputs.png'}")
    if args.compare_modes:
        table = format_modes(compare_modes(pipeline, held_out_inputs, opening))
        (work / "fast_modes.md").write_text(table + "\n")
        print(f"\nfast modes on the held-out clip (also in {work / 'fast_modes.md'}):\n{table}")
    if args.lip_modes:
        driver = load_clip(clips[0])["kps"]  # a training clip's motion, for similarity_retarget
        table = format_lip_modes(compare_lip_modes(pipeline, held_out_inputs, driver, opening))
        (work / "lip_modes.md").write_text(table + "\n")
        print(f"\nmodes with their lip, pose and identity cost on the held-out clip (also in {work / 'lip_modes.md'}):\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
