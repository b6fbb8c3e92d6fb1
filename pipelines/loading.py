"""Building a VExpressPipeline from a `model_ckpts`-layout folder."""

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel, UniPCMultistepScheduler
from safetensors import SafetensorError
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from modules.checkpoints import (
    DOWNLOAD_HINT, CheckpointError, load_audio_projection, load_denoising_unet, load_reference_net, load_v_kps_guider,
)
from modules.errors import first_line

from pipelines.config import load_inference_config
from pipelines.pipeline_v_express import VExpressPipeline


MODEL_ROOT = "./model_ckpts/"


def _weights(part: str, what: str, relative: str, *required: str):
    """A ModelPaths field: its default (`relative` under ./model_ckpts/), and as metadata the download part it
    belongs to, what it is, and the files it must hold relative to it (a folder) or "" (it is the file);
    "a|b" accepts either name."""
    return field(default=MODEL_ROOT + relative, metadata=dict(part=part, what=what, required=required or ("",)))


@dataclass
class ModelPaths:
    """Where each part lives: the one description of the `model_ckpts/` layout (model_ckpts.md). Every field is
    a weight-path flag of inference.py and the web UI; scripts/download_models.py fetches and checks the same files."""

    unet_config_path: str = _weights("stable-diffusion-v1-5", "SD1.5 UNet config", "stable-diffusion-v1-5/unet/config.json")
    vae_path: str = _weights(
        "sd-vae-ft-mse", "VAE", "sd-vae-ft-mse/", "config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin")
    audio_encoder_path: str = _weights(
        "wav2vec2-base-960h", "wav2vec2", "wav2vec2-base-960h/", "config.json", "preprocessor_config.json", "model.safetensors|pytorch_model.bin")
    insightface_model_path: str = _weights(
        "insightface_models", "face detector", "insightface_models/", "models/buffalo_l/det_10g.onnx")
    denoising_unet_path: str = _weights("v-express", "denoising UNet weights", "v-express/denoising_unet.bin")
    reference_net_path: str = _weights("v-express", "ReferenceNet weights", "v-express/reference_net.bin")
    v_kps_guider_path: str = _weights("v-express", "V-Kps Guider weights", "v-express/v_kps_guider.bin")
    audio_projection_path: str = _weights("v-express", "Audio Projection weights", "v-express/audio_projection.bin")
    motion_module_path: str = _weights("v-express", "motion-module weights", "v-express/motion_module.bin")

    @classmethod
    def under(cls, folder) -> "ModelPaths":
        """The same layout under another folder than `./model_ckpts/`."""
        return cls(**{f.name: str(Path(folder) / f.default.removeprefix(MODEL_ROOT)) for f in fields(cls)})

    @classmethod
    def from_args(cls, args) -> "ModelPaths":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def required_files(self, parts=None) -> list[tuple[str, str, tuple[Path, ...]]]:
        """(part, what, accepted paths) for every required file of the parts asked for (default all)."""
        rows = []
        for f in fields(self):
            if parts is None or f.metadata["part"] in parts:
                base = Path(getattr(self, f.name))
                for names in f.metadata["required"]:
                    rows.append((f.metadata["part"], f.metadata["what"], tuple(base / name if name else base for name in names.split("|"))))
        return rows

    def missing(self, needs_face_detector: bool = False) -> list[str]:
        """One line for each file that generation needs and is not there, or is empty (a download or copy that
        stopped before its first byte: readers would report it as corrupt, or fail without a message)."""
        parts = None if needs_face_detector else [p for p in PARTS if p != "insightface_models"]
        lines = []
        for _, what, paths in self.required_files(parts):
            present = [p for p in paths if p.is_file()]
            if not present:
                lines.append(f"missing model file {paths[0]} ({what})")
            elif not any(p.stat().st_size for p in present):
                lines.append(f"empty model file {present[0]} ({what}, 0 bytes)")
        return lines


# Download part -> what it is (scripts/download_models.py --include takes these names).
PARTS = {
    "v-express": "the five V-Express networks",
    "stable-diffusion-v1-5": "the SD1.5 UNet architecture (config only)",
    "sd-vae-ft-mse": "the VAE",
    "wav2vec2-base-960h": "the audio encoder",
    "insightface_models": "the face detector (buffalo_l)",
}


SCHEDULERS = ("ddim", "dpmpp_2m", "unipc")


def make_scheduler(name: str = "ddim"):
    """The published noise schedule (v-prediction, zero-terminal-SNR rescaled betas, trailing timesteps) for the
    published DDIM sampler, DPM-Solver++(2M) or UniPC. For the two multistep solvers diffusers moves the final
    alphas_cumprod of a zero-terminal-SNR schedule from 0 to 2**-24, so their first sigma is finite."""
    ddim = DDIMScheduler(**load_inference_config()["noise_scheduler_kwargs"])
    if name == "ddim":
        return ddim
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(ddim.config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(ddim.config)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


def load_pipeline(paths: ModelPaths, device="cpu", dtype=torch.float32, audio_projection_config: dict | None = None) -> VExpressPipeline:
    """All networks from `paths`, in `dtype` on `device`. Raises CheckpointError for a missing or bad file."""
    missing = paths.missing()
    if missing:
        raise CheckpointError(f"{'; '.join(missing)}; {DOWNLOAD_HINT}")
    config = load_inference_config()
    unet_config = from_pretrained(UNet2DConditionModel.load_config, paths.unet_config_path, "UNet config")
    vae = from_pretrained(AutoencoderKL.from_pretrained, paths.vae_path, "VAE", torch_dtype=dtype)
    audio_processor = from_pretrained(Wav2Vec2FeatureExtractor.from_pretrained, paths.audio_encoder_path, "audio encoder")
    audio_encoder = from_pretrained(Wav2Vec2Model.from_pretrained, paths.audio_encoder_path, "audio encoder", torch_dtype=dtype)
    pipeline = VExpressPipeline(
        vae=vae.to(device).eval().requires_grad_(False),
        reference_net=load_reference_net(unet_config, paths.reference_net_path, dtype, device),
        denoising_unet=load_denoising_unet(
            unet_config, config["unet_additional_kwargs"], paths.denoising_unet_path, paths.motion_module_path, dtype, device
        ),
        v_kps_guider=load_v_kps_guider(paths.v_kps_guider_path, dtype, device),
        audio_processor=audio_processor,
        audio_encoder=audio_encoder.to(device).eval().requires_grad_(False),
        audio_projection=load_audio_projection(paths.audio_projection_path, dtype, device, config=audio_projection_config),
        scheduler=make_scheduler("ddim"),
    )
    pipeline.set_progress_bar_config(leave=False)
    return pipeline


def from_pretrained(load, path: str, what: str, hint: str = DOWNLOAD_HINT, **kwargs):
    """`load(path, **kwargs)` (a diffusers or transformers loader); a file it cannot read, truncated or corrupt, is a
    CheckpointError naming `path`, and `hint` says how to get it."""
    try:
        return load(path, **kwargs)
    except (OSError, ValueError, SafetensorError) as error:
        raise CheckpointError(f"{path}: cannot load the {what} ({first_line(error)}); {hint}") from None
