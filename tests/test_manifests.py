"""Full-size networks have exactly the keys, shapes and dtypes of the published weight files."""

from pathlib import Path

import pytest
import torch

from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
from pipelines.config import load_inference_config

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = Path(__file__).parent / "data" / "checkpoint_manifests"
SD15_UNET_CONFIG = ROOT / "model_ckpts" / "stable-diffusion-v1-5" / "unet" / "config.json"


def manifest(name):
    rows = (line.rstrip("\n").split("\t") for line in (MANIFESTS / f"{name}.tsv").read_text().splitlines())
    return {key: (tuple(int(n) for n in shape.split(",")), dtype) for key, shape, dtype in rows}


def layout(module, keep=lambda key: True):
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items() if keep(k)}


@pytest.fixture(scope="module")
def full_size():
    config = load_inference_config()
    with torch.device("meta"):
        return {
            "reference_net": reference_net_from_config(SD15_UNET_CONFIG),
            "denoising_unet": UNet3DConditionModel.from_config_2d(SD15_UNET_CONFIG, config["unet_additional_kwargs"]),
            "v_kps_guider": VKpsGuider(),
            "audio_projection": AudioProjection(),
        }


@pytest.mark.parametrize("name", ["reference_net", "v_kps_guider", "audio_projection"])
def test_network_matches_manifest(full_size, name):
    assert layout(full_size[name]) == manifest(name)


def test_denoising_unet_and_motion_modules_match_manifests(full_size):
    unet = full_size["denoising_unet"]
    assert layout(unet, lambda k: "motion_modules" not in k) == manifest("denoising_unet")
    assert layout(unet, lambda k: "motion_modules" in k) == manifest("motion_module")


def test_every_reference_attention_reads_the_reference_net_block_at_its_path(full_size):
    """The bank is keyed by module path: each of the denoising UNet's 16 transformer blocks must find a ReferenceNet
    transformer block of its own width at the same path (the manifests check names and shapes, not this pairing)."""
    from diffusers.models.attention import BasicTransformerBlock

    unet, reference_net = full_size["denoising_unet"], full_size["reference_net"]
    assert len(unet.reference_block_paths) == 16
    for path in unet.reference_block_paths:
        recorded = reference_net.get_submodule(path)
        assert isinstance(recorded, BasicTransformerBlock), path
        assert recorded.norm2.normalized_shape == unet.get_submodule(path).norm1_5.normalized_shape, path
