"""VExpressPipeline end to end on the published tiny weights: the published video, deterministically."""

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from pipelines.audio import load_audio
from pipelines.loading import ModelPaths, load_pipeline
from pipelines.pipeline_v_express import published_noise_generator
from tiny import GOLDEN, GOLDEN_ARCH, GOLDEN_CKPTS, golden_case, rel_err

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
    case = golden_case("pipeline")
    video = pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder))
    assert video.shape == (1, 3, 28, 128, 64) and video.dtype == torch.float32
    assert rel_err(video, case["video"]) < 1e-4
    assert (video - case["video"]).abs().max() < 1e-4

    # Run after run, the same video; memory-saving mode and recorded latents change nothing either.
    again = pipeline(**inputs, latents=case["initial_latents"], save_gpu_memory=True)
    assert rel_err(again, case["video"]) < 1e-4
    assert torch.equal(pipeline(**inputs, generator=published_noise_generator(42, pipeline.audio_encoder)), video)
