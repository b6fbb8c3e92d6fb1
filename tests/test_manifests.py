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


def test_full_size_parameter_counts(full_size):
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in full_size.items()}
    assert counts == {
        "reference_net": 859_520_324,
        "denoising_unet": 1_362_329_284,
        "v_kps_guider": 1_086_480,
        "audio_projection": 29_524_224,
    }
    assert len(full_size["denoising_unet"].reference_block_paths) == 16
