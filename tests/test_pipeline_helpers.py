"""The pipeline's helpers against the published fixtures and values worked out by hand from inference.md."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from media.audio import resample
from pipelines.speech import audio_vectors_per_frame
from pipelines.context import context_windows, video_length
from motion.keypoints import draw_kps_image, load_kps_sequence, resample_kps_sequence
from motion.retarget import closest_pose_frame, retarget_kps
from pipelines.flicker_filter import median_filter_video
from media.video import VideoError, VideoFrames, read_video, read_video_frames
from helpers.cli import write_lossless_video
from helpers.tiny import GOLDEN, golden_case, rel_err

CASES = GOLDEN / "cases"


def test_windows_match_the_published_ones():
    for combo in json.loads((CASES / "windows.json").read_text())["combos"]:
        requested, frames, overlap = combo["L0"], combo["context_frames"], combo["context_overlap"]
        length = video_length(requested, frames, overlap)
        if "upstream_error" in combo:  # L0 < C: the published code fails; ours makes one window of all frames
            assert length == requested and context_windows(length, frames, overlap) == [range(requested)]
            continue
        assert length == combo["video_length"]
        assert [list(w) for w in context_windows(length, frames, overlap)] == combo["context_lists"]


def test_windows_beyond_the_published_cases():
    assert video_length(0) == 1  # no frame asked for: still one
    assert context_windows(30, 12, 4) == [range(0, 12), range(8, 20), range(16, 28), range(18, 30)]  # a length the rule never makes


def test_audio_vector_rows():
    states = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 3)  # T=6 steps, value = index
    vectors = audio_vectors_per_frame(states, num_frames=3, num_pad_audio_frames=2)  # 2L = 6 rows: interpolation is the identity
    assert vectors.shape == (3, 10, 3)
    # padded rows: 4 zeros, 0..5, 4 zeros; frame i takes rows [2i, 2i + 10)
    padded = [0.0] * 4 + list(range(6)) + [0.0] * 4
    for i in range(3):
        assert vectors[i, :, 0].tolist() == padded[2 * i: 2 * i + 10]


def test_audio_vectors_interpolate_linearly():
    states = torch.tensor([[0.0], [4.0]])  # 2 steps stretched to 2L = 4 rows, half-pixel centres
    vectors = audio_vectors_per_frame(states, num_frames=2, num_pad_audio_frames=0)
    assert vectors.flatten().tolist() == [0.0, 1.0, 3.0, 4.0]


def test_resample_length_and_band_limit():
    rate_in, rate_out, n = 22050, 16000, 22050
    t = torch.arange(n, dtype=torch.float64) / rate_in
    tone = torch.sin(2 * math.pi * 440 * t)[None]
    out = resample(tone, rate_in, rate_out)
    assert out.shape == (1, math.ceil(n * rate_out / rate_in))
    expected = torch.sin(2 * math.pi * 440 * torch.arange(out.shape[1], dtype=torch.float64) / rate_out)
    assert (out[0, 200:-200] - expected[200:-200]).abs().max() < 1e-3  # a 440 Hz tone passes unchanged
    high = torch.sin(2 * math.pi * 10000 * t)[None]  # above the new Nyquist frequency: removed
    assert resample(high, rate_in, rate_out)[0, 200:-200].abs().max() < 0.05
    assert torch.equal(resample(tone, 16000, 16000), tone)


def test_retarget_matches_the_published_outputs():
    case = golden_case("retarget")
    selected = {"closest_last": 9, "closest_middle": 4, "closest_first": 0}
    for name, index in selected.items():
        driving = case[f"{name}.driving_kps"]
        assert closest_pose_frame(case["reference_kps"], driving) == index
        for strategy in ("offset_retarget", "naive_retarget"):
            assert rel_err(retarget_kps(case["reference_kps"], driving, strategy), case[f"{name}.{strategy}"]) < 1e-5


def test_retarget_by_hand():
    reference = np.array([[10, 10], [30, 10], [20, 20]], dtype=np.float32)  # eyes 20 apart, nose 10 below
    driving = np.array([[[0, 0], [40, 0], [20, 20]], [[2, 4], [42, 4], [22, 24]]], dtype=np.float32)  # twice as wide and as deep
    assert retarget_kps(reference, driving, "fix_face", 3).tolist() == [reference.tolist()] * 3
    assert retarget_kps(reference, driving, "no_retarget").tolist() == driving.tolist()
    # scale 0.5 both ways: frame 1's nose moved (1, 2) after scaling
    assert retarget_kps(reference, driving, "naive_retarget").tolist() == [reference.tolist(), (reference + [1, 2]).tolist()]
    assert retarget_kps(reference, driving, "offset_retarget").tolist() == [reference.tolist(), (reference - [0.5, 1]).tolist()]
    with pytest.raises(ValueError, match="unknown retarget strategy"):
        retarget_kps(reference, driving, "mirror")


def test_kps_images_match_the_published_drawing():
    for image in json.loads((CASES / "kps_images.json").read_text())["images"]:
        expected = np.asarray(Image.open(CASES / image["file"]).convert("RGB"))
        drawn = draw_kps_image(image["height"], image["width"], np.array(image["kps"], dtype=np.float32))
        assert np.array_equal(drawn, expected), image["file"]
    pipeline = golden_case("pipeline")
    sequence = resample_kps_sequence(pipeline["kps_sequence_raw"].numpy(), 28)
    assert torch.equal(sequence, pipeline["kps_sequence"])
    for i in range(28):
        expected = np.asarray(Image.open(CASES / "pipeline_kps_images" / f"{i:03d}.png").convert("RGB"))
        assert np.array_equal(draw_kps_image(128, 64, sequence[i].numpy()), expected), i


def test_kps_image_by_hand():
    image = draw_kps_image(64, 64, np.array([[20, 20], [44, 20], [32, 40]], dtype=np.float32))
    assert image[20, 20].tolist() == [255, 0, 0] and image[20, 44].tolist() == [0, 255, 0] and image[40, 32].tolist() == [0, 0, 255]
    assert image[30, 26].tolist() == [153, 0, 0] and image[30, 38].tolist() == [0, 153, 0]  # limb midpoints, 0.6 x colour
    assert image[5, 5].tolist() == [0, 0, 0] and image[20, 32].tolist() == [0, 0, 0]


def test_kps_resampling():
    kps = np.stack([np.full((3, 2), i, np.float32) for i in range(4)])
    assert resample_kps_sequence(kps, 2)[:, 0, 0].tolist() == [0.0, 1.0]  # longer: the first frames kept
    assert resample_kps_sequence(kps[:2], 4)[:, 2, 1].tolist() == [0.0, 0.25, 0.75, 1.0]  # shorter: stretched linearly


def test_kps_files_in_every_format(tmp_path):
    frames = [np.array([[1, 2], [3, 4], [5, 6]], np.float32) + i for i in range(3)]
    torch.save(frames, tmp_path / "published.pth")
    torch.save(torch.tensor(np.stack(frames)), tmp_path / "tensor.pt")
    np.save(tmp_path / "array.npy", np.stack(frames))
    np.savez(tmp_path / "archive.npz", kps=np.stack(frames))
    (tmp_path / "list.json").write_text(json.dumps([f.tolist() for f in frames]))
    for name in ("published.pth", "tensor.pt", "array.npy", "archive.npz", "list.json"):
        assert np.array_equal(load_kps_sequence(tmp_path / name), np.stack(frames)), name


def test_median_filter_is_the_direct_median():
    video = torch.rand(1, 3, 5, 6, 7, generator=torch.Generator().manual_seed(0))
    filtered = median_filter_video(video)
    mirror = lambda i, n: -i if i < 0 else 2 * (n - 1) - i if i >= n else i  # noqa: E731  reflect, edge not repeated
    array = video[0].numpy()
    for c, t, y, x in [(0, 0, 0, 0), (1, 2, 3, 4), (2, 4, 5, 6), (0, 1, 0, 6), (2, 3, 2, 0)]:
        values = [array[c, mirror(t + dt, 5), mirror(y + dy, 6), mirror(x + dx, 7)] for dt in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert filtered[0, c, t, y, x].item() == pytest.approx(float(np.median(values)), abs=0)


@pytest.mark.parametrize("suffix, codec", [(".m4a", "aac"), (".mp3", "libmp3lame"), (".flac", "flac"), (".ogg", "libvorbis")])
def test_audio_formats_decode_to_16k_mono(tmp_path, suffix, codec):
    import subprocess

    import imageio_ffmpeg
    import soundfile as sf

    from media.audio import load_audio

    t = np.arange(44100 * 2) / 44100
    sf.write(tmp_path / "stereo.wav", np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.5, 44100)
    target = tmp_path / f"speech{suffix}"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "stereo.wav"), "-c:a", codec, str(target)], check=True)
    waveform = load_audio(target)
    assert waveform.ndim == 1 and abs(len(waveform) / 16000 - 2.0) < 0.06
    assert 0.2 < waveform.abs().max() < 1.0


def test_video_frames_decode_one_by_one_and_name_a_bad_file(tmp_path):
    frames = np.stack([np.full((16, 24, 3), 10 * i, np.uint8) for i in range(12)])
    path = write_lossless_video(tmp_path / "ramp.mp4", frames, 25)
    video = VideoFrames(path)
    assert (video.fps, video.size, video.expected_frames) == (25.0, (24, 16), 12)
    decoded, fps = read_video(path)
    assert fps == 25.0 and np.abs(decoded.astype(int) - frames).max() <= 1  # RGB <-> YUV rounding
    kept, count = read_video_frames(path, [9, 2, 40])
    assert count == 12 and sorted(kept) == [2, 9]
    np.testing.assert_array_equal(kept[9], decoded[9])

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    with pytest.raises(VideoError, match=r"notes\.mp4: cannot read this video"):
        VideoFrames(not_a_video)


def test_flicker_filter_streams_exactly_and_commutes_with_uint8():
    """Fed in batches of any size, the filter gives the whole-video median; on uint8 frames it gives the uint8 of the
    float median (a median commutes with the non-decreasing x 255 truncation), ties and one-frame videos included."""
    from pipelines.flicker_filter import FlickerFilter

    generator = torch.Generator().manual_seed(1)
    for frames in (1, 2, 3, 9):
        video = (torch.randint(0, 5, (1, 3, frames, 6, 7), generator=generator) / 4.0)  # many ties
        whole = median_filter_video(video)
        as_uint8 = (video * 255).to(torch.uint8)
        assert torch.equal(median_filter_video(as_uint8), (whole * 255).to(torch.uint8))
        for sizes in ([frames], [1] * frames, [2, 5, 1, 1][:frames]):
            sizes = sizes + [frames - sum(sizes)] if sum(sizes) < frames else sizes
            stream, start, pieces = FlickerFilter(frames), 0, []
            for size in sizes:
                pieces.append(stream.push(as_uint8[0, :, start:start + size].transpose(0, 1)))
                start += size
            assert torch.equal(torch.cat(pieces).transpose(0, 1)[None], (whole * 255).to(torch.uint8)), (frames, sizes)


def test_long_audio_encodes_in_chunks_to_the_single_pass_states():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from pipelines.speech import encode_speech
    from scripts.make_tiny_checkpoints import WAV2VEC2_CONFIG

    encoder = Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2_CONFIG)).eval()
    waveform = torch.randn(1, 16000 * 3 + 123, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        single = encoder(waveform).last_hidden_state
    chunked = encode_speech(encoder, waveform, chunk_seconds=0.7)  # five chunks
    assert chunked.shape == single.shape and rel_err(chunked, single) < 1e-5
    assert torch.equal(encode_speech(encoder, waveform), single)  # short audio: the encoder's own single pass


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "unipc"])
def test_schedulers_handle_the_zero_terminal_snr_schedule(name):
    """Each solver, driven by a perfect v-prediction of a known clean sample, starts at pure noise (t = 999, where
    the SNR is zero) without an infinity and lands on the clean sample."""
    from pipelines.loading import make_scheduler

    scheduler = make_scheduler(name)
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.rescale_betas_zero_snr
    scheduler.set_timesteps(8)
    assert scheduler.timesteps[0] == 999  # trailing spacing: the first step is at pure noise
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 4, 2, 8, 8, generator=generator, dtype=torch.float64)
    sample = torch.randn(clean.shape, generator=generator, dtype=torch.float64) * scheduler.init_noise_sigma
    alphas = scheduler.alphas_cumprod.double()
    for t in scheduler.timesteps:
        signal, noise_level = alphas[int(t)].sqrt(), (1 - alphas[int(t)]).sqrt()
        noise = (sample - signal * clean) / noise_level
        sample = scheduler.step(signal * noise - noise_level * clean, t, sample).prev_sample
        assert torch.isfinite(sample).all()
    assert (sample - clean).abs().max() < 1e-3


@pytest.mark.parametrize("thresholding", [False, True])
def test_ddim_stepped_in_chunks_in_place_equals_one_step(thresholding):
    """150 frames cross two chunk boundaries of the in-place DDIM step: the result is bit for bit the scheduler's
    step on the whole tensor (with thresholding, a quantile over the whole sample, the whole tensor is stepped)."""
    from types import SimpleNamespace

    from pipelines.loading import make_scheduler
    from pipelines.pipeline_v_express import STEP_FRAMES, VExpressPipeline

    scheduler = make_scheduler("ddim")
    if thresholding:
        scheduler.register_to_config(thresholding=True)
    scheduler.set_timesteps(25)
    frames = 2 * STEP_FRAMES + 22
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, frames, 8, 8, generator=generator)
    prediction = torch.randn(latents.shape, generator=generator)
    for t in scheduler.timesteps[[0, 12, -1]]:
        expected = scheduler.step(prediction, t, latents).prev_sample
        stepped = VExpressPipeline._scheduler_step(SimpleNamespace(scheduler=scheduler), prediction, t, latents.clone(), {})
        assert torch.equal(stepped, expected)
