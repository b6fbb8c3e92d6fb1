"""VExpressPipeline end to end on the published tiny weights: the published video, deterministically."""

import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from media.audio import load_audio
from pipelines.loading import ModelPaths, load_pipeline
from pipelines.pipeline_v_express import published_noise_generator, rest_in_silences, rest_noise
from helpers.tiny import GOLDEN, GOLDEN_ARCH, GOLDEN_CKPTS, golden_case, rel_err

CASES = GOLDEN / "cases"


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline(ModelPaths.under(GOLDEN_CKPTS), audio_projection_config=GOLDEN_ARCH["audio_projection"])


@pytest.fixture(scope="module")
def inputs():
    return dict(
        reference_image=Image.open(CASES / "pipeline_reference.png").convert("RGB"),
        kps_images=[Image.open(CASES / "pipeline_kps_images" / f"{i:03d}.png").convert("RGB") for i in range(28)],
        audio_waveform=load_audio(CASES / "pipeline_audio.wav"),
        width=64, height=128, video_length=28, num_inference_steps=3, guidance_scale=3.5, context_frames=12,
        context_overlap=4, reference_attention_weight=0.95, audio_attention_weight=3.0, num_pad_audio_frames=2,
    )


def test_published_noise_recipe(pipeline):
    case = golden_case("pipeline")
    generator = published_noise_generator(42, pipeline.audio_encoder)
    latents = randn_tensor((1, 4, 28, 16, 8), generator=generator, device=torch.device("cpu"))
    assert torch.equal(latents, case["initial_latents"])


def test_audio_file_decodes_to_the_published_waveform(inputs):
    assert torch.equal(inputs["audio_waveform"], golden_case("pipeline")["audio_waveform"])


def test_pipeline_reproduces_the_published_video(pipeline, inputs):
    from modules.upsampling import PhaseUpsample2D

    # The published numbers with the VAE decoder's up-samplers regrouped (modules/upsampling.py).
    assert sum(isinstance(module, PhaseUpsample2D) for module in pipeline.vae.decoder.modules()) == 3
    case = golden_case("pipeline")
    video = pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder))
    assert video.shape == (1, 3, 28, 128, 64) and video.dtype == torch.float32
    assert rel_err(video, case["video"]) < 1e-4
    assert (video - case["video"]).abs().max() < 1e-4

    # Run after run, the same video; memory-saving mode and recorded latents change nothing either.
    again = pipeline(**inputs, latents=case["initial_latents"], save_gpu_memory=True)
    assert rel_err(again, case["video"]) < 1e-4
    assert torch.equal(pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder)), video)


def test_streamed_frames_equal_the_published_call(pipeline, inputs):
    """The streamed path (latents, then decode + flicker filter + uint8 a few frames at a time) gives exactly the
    frames of filtering and converting the published call's whole video tensor."""
    from pipelines.flicker_filter import median_filter_video

    video = pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder))
    latents = pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder), output_type="latent")
    assert latents.shape == (1, 4, 28, 16, 8)
    assert torch.equal(pipeline.decode_latents(latents), video)
    expected = (median_filter_video(video) * 255).to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()
    streamed = np.stack(list(pipeline.stream_frames(latents)))  # decoded in batches, filtered as they come
    assert streamed.dtype == np.uint8 and np.array_equal(streamed, expected)
    # A different decode batch changes convolution rounding (about 1e-6), not the picture.
    unfiltered = np.stack(list(pipeline.stream_frames(latents, batch_frames=3, flicker_filter=False)))
    assert np.abs(unfiltered.astype(int) - (video * 255).to(torch.uint8)[0].permute(1, 2, 3, 0).numpy()).max() <= 1


def test_windows_per_unet_call_keep_the_numbers_and_guidance_interval_halves_the_batch(pipeline, inputs):
    case = golden_case("pipeline")
    batched = pipeline(**inputs, latents=case["initial_latents"], context_batch_size=3)
    assert rel_err(batched, case["video"]) < 1e-4

    batch_sizes = []
    hook = pipeline.denoising_unet.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    try:
        output = pipeline(**{**inputs, "num_inference_steps": 4}, latents=case["initial_latents"], guidance_interval=(0.25, 0.75),
                          context_batch_size=3, return_output=True)
    finally:
        hook.remove()
    assert batch_sizes == [3, 6, 6, 3]  # 3 windows per call; both halves of guidance only on steps 1 and 2 of 4
    # The structured result: the video the published call returns, the calls counted, every phase timed.
    assert output.unet_calls == len(batch_sizes) and output.frames.shape == batched.shape
    assert list(output.timings) == ["reference", "audio", "denoising", "decoding"] and min(output.timings.values()) > 0


def test_frames_of_a_silence_take_the_audio_tokens_of_its_middle_frame():
    """--mouth_in_silence rest's mechanism: one still audio condition per pause, eased into by the weights."""
    tokens = torch.arange(10, dtype=torch.float32)[:, None, None].expand(10, 2, 3).clone()
    weights = torch.tensor([1, 1, 0.5, 0, 0, 0, 0.5, 1, 0, 0])
    rested = rest_in_silences(tokens, weights)[:, 0, 0]
    # Frames 2..6 rest on frame 4's tokens (frame 2 and 6 halfway); frames 8..9 on frame 9's; the others keep theirs.
    assert rested.tolist() == [0, 1, 3, 4, 4, 4, 5, 7, 9, 9]


def test_frames_of_a_silence_start_from_the_noise_of_its_middle_frame():
    """--mouth_in_silence rest's second half: one initial noise per pause, so the pause's mouth is drawn once."""
    noise = torch.randn(1, 4, 10, 64, 64, generator=torch.Generator().manual_seed(0))
    weights = torch.tensor([1, 1, 0.5, 0, 0, 0, 0.5, 1, 0, 0])
    rested = rest_noise(noise, weights)
    for frame in (0, 1, 7):
        assert torch.equal(rested[:, :, frame], noise[:, :, frame])
    for frame in (3, 4, 5):
        assert torch.equal(rested[:, :, frame], noise[:, :, 4])
    assert torch.equal(rested[:, :, 8], noise[:, :, 9]) and torch.equal(rested[:, :, 9], noise[:, :, 9])
    # A short pause whose middle frame is on a ramp keeps that frame's own noise (not a sum of it with itself)
    short = rest_noise(noise[:, :, :2], torch.tensor([0.5, 0.5]))
    assert torch.equal(short[:, :, 1], noise[:, :, 1]) and torch.allclose(short[:, :, 0], 0.5 * noise[:, :, 0] + 0.75**0.5 * noise[:, :, 1])
    assert torch.allclose(rested[:, :, 2], 0.5 * noise[:, :, 2] + 0.75**0.5 * noise[:, :, 4])
    assert abs(float(rested[:, :, 2].std()) - 1) < 0.02  # still unit-variance noise halfway in


def test_a_resting_pause_of_a_still_head_is_drawn_nearly_still(pipeline, inputs):
    """One noise and one audio condition through the pause: its frames vary far less than the published ones (the
    motion module and the windows' averaging still mix in their neighbours)."""
    still = {**inputs, "kps_images": [inputs["kps_images"][0]] * 28}
    weights = torch.ones(28)
    weights[8:20] = 0

    def spread(video):  # mean absolute deviation of the pause's frames from their mean
        pause = video[0, :, 8:20]
        return float((pause - pause.mean(dim=1, keepdim=True)).abs().mean())

    published = spread(pipeline(**still, latents=golden_case("pipeline")["initial_latents"]))
    resting = spread(pipeline(**still, latents=golden_case("pipeline")["initial_latents"], mouth_weights=weights))
    assert resting < 0.5 * published, (resting, published)


def test_mouth_weights_of_one_are_the_published_video(pipeline, inputs):
    case = golden_case("pipeline")
    ones = pipeline(**inputs, latents=case["initial_latents"], context_batch_size=3, mouth_weights=torch.ones(28))
    assert rel_err(ones, case["video"]) < 1e-4
    resting = pipeline(**inputs, latents=case["initial_latents"], mouth_weights=torch.cat([torch.ones(8), torch.zeros(20)]))
    assert rel_err(resting, case["video"]) > 1e-3
    with pytest.raises(ValueError, match="mouth_weights: \\(27,\\) weights for a video of 28 frames"):
        pipeline(**inputs, mouth_weights=torch.ones(27))


def test_deep_cache_reuses_the_deep_features_of_the_last_full_step(pipeline, inputs):
    """cache_interval 2: steps 0 and 2 run the whole UNet, steps 1 and 3 only its shallow branch on stored features."""
    case = golden_case("pipeline")
    shallow_calls = []
    hook = pipeline.denoising_unet.mid_block.register_forward_pre_hook(lambda module, args: shallow_calls.append(False))
    try:
        cached = pipeline(**{**inputs, "num_inference_steps": 4}, latents=case["initial_latents"], cache_interval=2)
    finally:
        hook.remove()
    assert len(shallow_calls) == 2 * 3  # the mid block runs on the 2 full steps, for each of the 3 windows
    full = pipeline(**{**inputs, "num_inference_steps": 4}, latents=case["initial_latents"])
    assert 0 < rel_err(cached, full) < 0.5  # an approximation, not the same video


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp_2m"])
def test_resuming_from_a_saved_state_gives_the_same_latents(pipeline, inputs, scheduler, tmp_path):
    """The state after step 2 of 4 goes through the resume file (safetensors) and back; the run that continues
    from it ends with exactly the latents of the uninterrupted run, multistep history included."""
    from pipelines.loading import make_scheduler
    from app.resume import StateWriter, load_state

    case = golden_case("pipeline")
    pipeline.scheduler = make_scheduler(scheduler)
    writer = StateWriter(tmp_path / "state.safetensors", "this run", interval=0)
    saved = {}

    def save_after_step_two(pipe, step, t, kwargs):
        if step == 2:
            writer.save(pipe.denoising_state(step, kwargs["latents"]))
            saved["latents"] = kwargs["latents"].clone()
        return kwargs

    settings = {**inputs, "num_inference_steps": 4}
    try:
        full = pipeline(**settings, latents=case["initial_latents"], output_type="latent", callback_on_step_end=save_after_step_two)
        state = load_state(tmp_path / "state.safetensors", "this run")
        assert state.step == 2 and torch.equal(state.latents, saved["latents"])
        resumed = pipeline(**settings, latents=case["initial_latents"], output_type="latent", resume_from=state)
    finally:
        pipeline.scheduler = make_scheduler("ddim")
    assert torch.equal(resumed, full)


def test_published_positional_arguments_keep_their_order(pipeline):
    import inspect

    parameters = list(inspect.signature(pipeline.__call__).parameters.values())
    published = ["reference_image", "kps_images", "audio_waveform", "width", "height", "video_length", "num_inference_steps",
                 "guidance_scale", "strength", "num_images_per_prompt", "eta", "generator", "output_type", "return_dict",
                 "callback", "callback_steps", "context_schedule", "context_frames", "context_overlap",
                 "reference_attention_weight", "audio_attention_weight", "num_pad_audio_frames", "do_multi_devices_inference",
                 "save_gpu_memory"]
    assert [p.name for p in parameters[:len(published)]] == published
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[len(published):])


def test_the_published_import_path():
    from pipelines import VExpressPipeline as published

    from pipelines.pipeline_v_express import VExpressPipeline

    assert published is VExpressPipeline


def test_the_inference_side_imports_no_training_module():
    import subprocess
    import sys

    from helpers.cli import ROOT

    code = ("import sys, inference, pipelines, pipelines.loading, app.generation, pipelines.pipeline_v_express; "
            "inference.build_parser(); print(sorted(m for m in sys.modules if m.startswith(('training', 'train'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
