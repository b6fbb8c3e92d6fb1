"""Tiny random-weight networks for behaviour tests (a few hundred thousand parameters at most)."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
from scripts.make_tiny_checkpoints import randomize_

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / "golden"
GOLDEN_CKPTS = GOLDEN / "model_ckpts"
GOLDEN_ARCH = json.loads((GOLDEN_CKPTS / "tiny_architecture.json").read_text())
GOLDEN_UNET_CONFIG = GOLDEN_CKPTS / "stable-diffusion-v1-5" / "unet" / "config.json"

UNET_CONFIG = {
    "block_out_channels": [16, 16, 32, 32],
    "layers_per_block": 1,
    "attention_head_dim": 2,
    "cross_attention_dim": 8,
    "norm_num_groups": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "sample_size": 8,
}
MOTION_KWARGS = {
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": True,
    "motion_module_kwargs": {
        "num_attention_heads": 2,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 32,
    },
}
NO_MOTION_KWARGS = {**MOTION_KWARGS, "use_motion_module": False}


def tiny_unet(motion=True, seed=0) -> UNet3DConditionModel:
    return randomize_(UNet3DConditionModel.from_config_2d(UNET_CONFIG, MOTION_KWARGS if motion else NO_MOTION_KWARGS), seed)


def tiny_reference_net(seed=1):
    return randomize_(reference_net_from_config(UNET_CONFIG), seed)


def tiny_guider(seed=2) -> VKpsGuider:
    return randomize_(VKpsGuider(16, block_out_channels=(4, 8, 8, 16)), seed)


def tiny_audio_projection(seed=3) -> AudioProjection:
    return randomize_(AudioProjection(dim=8, depth=1, dim_head=4, heads=2, embedding_dim=8, output_dim=8), seed)


def golden_case(name: str) -> dict[str, torch.Tensor]:
    # clone: tensors straight from load_file can be misaligned, which changes oneDNN's convolution path
    return {key: value.clone() for key, value in load_file(GOLDEN / "cases" / f"{name}.safetensors").items()}


def rel_err(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours.double() - reference.double()).norm() / reference.double().norm()).item()
