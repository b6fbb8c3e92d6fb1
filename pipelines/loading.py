"""Building a VExpressPipeline from a `model_ckpts`-layout folder."""

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from modules.checkpoints import (
    DOWNLOAD_HINT, CheckpointError, load_audio_projection, load_denoising_unet, load_reference_net, load_v_kps_guider,
)

from .config import load_inference_config
from .pipeline_v_express import VExpressPipeline


@dataclass
class ModelPaths:
    """Where each part lives; the defaults are the published `./model_ckpts/` layout."""

    unet_config_path: str = "./model_ckpts/stable-diffusion-v1-5/unet/config.json"
    vae_path: str = "./model_ckpts/sd-vae-ft-mse/"
    audio_encoder_path: str = "./model_ckpts/wav2vec2-base-960h/"
    insightface_model_path: str = "./model_ckpts/insightface_models/"
    denoising_unet_path: str = "./model_ckpts/v-express/denoising_unet.bin"
    reference_net_path: str = "./model_ckpts/v-express/reference_net.bin"
    v_kps_guider_path: str = "./model_ckpts/v-express/v_kps_guider.bin"
    audio_projection_path: str = "./model_ckpts/v-express/audio_projection.bin"
    motion_module_path: str = "./model_ckpts/v-express/motion_module.bin"

    @classmethod
    def under(cls, folder) -> "ModelPaths":
        """The same layout under another folder than `./model_ckpts/`."""
        return cls(**{name: str(Path(folder) / default.removeprefix("./model_ckpts/")) for name, default in vars(cls()).items()})

    @classmethod
    def from_args(cls, args) -> "ModelPaths":
        return cls(**{field.name: getattr(args, field.name) for field in fields(cls)})

    def missing(self) -> list[str]:
        """One line for each file or folder that is not there."""
        needed = {
            "SD1.5 UNet config": Path(self.unet_config_path),
            "VAE config": Path(self.vae_path) / "config.json",
            "wav2vec2 config": Path(self.audio_encoder_path) / "config.json",
            "wav2vec2 feature-extractor config": Path(self.audio_encoder_path) / "preprocessor_config.json",
            "denoising UNet weights": Path(self.denoising_unet_path),
            "ReferenceNet weights": Path(self.reference_net_path),
            "V-Kps Guider weights": Path(self.v_kps_guider_path),
            "Audio Projection weights": Path(self.audio_projection_path),
            "motion-module weights": Path(self.motion_module_path),
        }
        return [f"{path} ({what})" for what, path in needed.items() if not path.is_file()]


def load_pipeline(paths: ModelPaths, device="cpu", dtype=torch.float32, audio_projection_config: dict | None = None) -> VExpressPipeline:
    """All networks from `paths`, in `dtype` on `device`. Raises CheckpointError for a missing or bad file."""
    missing = paths.missing()
    if missing:
        raise CheckpointError(f"missing model file(s): {'; '.join(missing)}; {DOWNLOAD_HINT}")
    config = load_inference_config()
    try:
        vae = AutoencoderKL.from_pretrained(paths.vae_path, torch_dtype=dtype)
        audio_processor = Wav2Vec2FeatureExtractor.from_pretrained(paths.audio_encoder_path)
        audio_encoder = Wav2Vec2Model.from_pretrained(paths.audio_encoder_path, torch_dtype=dtype)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot load {paths.vae_path} or {paths.audio_encoder_path}: {str(error).splitlines()[0]}; {DOWNLOAD_HINT}") from None
    pipeline = VExpressPipeline(
        vae=vae.to(device).eval(),
        reference_net=load_reference_net(paths.unet_config_path, paths.reference_net_path, dtype, device),
        denoising_unet=load_denoising_unet(
            paths.unet_config_path, config["unet_additional_kwargs"], paths.denoising_unet_path, paths.motion_module_path, dtype, device
        ),
        v_kps_guider=load_v_kps_guider(paths.v_kps_guider_path, dtype, device),
        audio_processor=audio_processor,
        audio_encoder=audio_encoder.to(device).eval(),
        audio_projection=load_audio_projection(paths.audio_projection_path, dtype, device, config=audio_projection_config),
        scheduler=DDIMScheduler(**config["noise_scheduler_kwargs"]),
    )
    pipeline.set_progress_bar_config(leave=False)
    return pipeline
