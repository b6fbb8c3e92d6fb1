"""The published inference settings (`inference_v2.yaml`)."""

from pathlib import Path

from omegaconf import OmegaConf

INFERENCE_CONFIG = Path(__file__).with_name("inference_v2.yaml")


def load_inference_config(path: str | Path = INFERENCE_CONFIG) -> dict:
    """-> {"unet_additional_kwargs": {...}, "noise_scheduler_kwargs": {...}} as plain containers."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
