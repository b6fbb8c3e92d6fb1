"""One training step of training.md: conditional dropout, the V-Express forward, and the lip-weighted
min-SNR v-prediction loss; plus which parameters each stage trains."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn

from modules.checkpoints import MOTION_MODULE_KEY
from modules.reference_net import compute_reference_bank
from modules.unet_3d import fold_frames, unfold_frames

MODULE_NAMES = ("reference_net", "denoising_unet", "v_kps_guider", "audio_projection", "motion_module")


@dataclass(kw_only=True)
class StepSettings:
    """The per-step numbers of a training config (published values as defaults), given by name."""

    uncond_ratio: float = 0.1
    kps_drop_rate: float = 0.0
    reference_drop_rate: float = 0.0
    noise_offset: float = 0.05
    lip_loss_weight: float = 1.0
    snr_gamma: float = 5.0


def training_noise_scheduler(noise_scheduler_kwargs: dict, enable_zero_snr: bool = True) -> DDIMScheduler:
    """The published scheduler, with zero terminal SNR: rescaled betas, v-prediction, trailing spacing."""
    kwargs = dict(noise_scheduler_kwargs)
    if enable_zero_snr:
        kwargs.update(rescale_betas_zero_snr=True, timestep_spacing="trailing", prediction_type="v_prediction")
    return DDIMScheduler(**kwargs)


class VExpressNetworks(nn.Module):
    """The four trained networks as one module (what the optimizer, DDP and the checkpoints see)."""

    def __init__(self, reference_net, denoising_unet, v_kps_guider, audio_projection):
        super().__init__()
        self.reference_net, self.denoising_unet = reference_net, denoising_unet
        self.v_kps_guider, self.audio_projection = v_kps_guider, audio_projection

    def set_trainable(self, module_training: dict) -> None:
        """`module_training`: {name in MODULE_NAMES: bool}. The denoising UNet's audio attention (`attn2`, `norm2`
        of its spatial transformers) trains with the audio projection, its motion modules with `motion_module`;
        ReferenceNet's `up_blocks.3` and `conv_out` never train: the bank is read inside the network and its output
        is discarded, so they get (almost) no gradient, and under DDP a trainable parameter without one is an error."""
        unknown = set(module_training) - set(MODULE_NAMES)
        if unknown:
            raise ValueError(f"module_training: unknown module(s) {sorted(unknown)}; known: {', '.join(MODULE_NAMES)}")
        for name, network in (("reference_net", self.reference_net), ("v_kps_guider", self.v_kps_guider), ("audio_projection", self.audio_projection)):
            network.requires_grad_(bool(module_training.get(name)))
        for name, param in self.reference_net.named_parameters():
            if name.startswith(("up_blocks.3.", "conv_out.")):
                param.requires_grad_(False)
        for name, param in self.denoising_unet.named_parameters():
            if MOTION_MODULE_KEY in name:
                param.requires_grad_(bool(module_training.get("motion_module")))
            elif ".transformer_blocks." in name and (".attn2." in name or ".norm2." in name):
                param.requires_grad_(bool(module_training.get("audio_projection")))
            else:
                param.requires_grad_(bool(module_training.get("denoising_unet")))

    def forward(self, noisy_latents, timesteps, reference_latents, audio, kps_images, keep) -> torch.Tensor:
        """noisy_latents (B, 4, F, h, w); timesteps (B,); reference_latents (B, 4, h, w); audio (B, F, 2(2P+1), dim)
        audio vectors; kps_images (B, 3, F, H, W) in [0, 1]; keep: ConditionMasks. -> v-prediction (B, 4, F, h, w)."""
        num_frames = noisy_latents.shape[2]
        kps_features = self.v_kps_guider(kps_images) * keep.kps[:, None, None, None, None].to(noisy_latents.dtype)
        audio_tokens = self.audio_projection(audio.flatten(0, 1))  # (B * F, queries, dim)
        audio_tokens = audio_tokens * keep.audio.repeat_interleave(num_frames)[:, None, None].to(audio_tokens.dtype)
        bank = compute_reference_bank(self.reference_net, reference_latents)
        reference_kv = self.denoising_unet.project_reference_bank(bank)
        return self.denoising_unet(
            noisy_latents, timesteps, audio_tokens, kps_features, reference_kv, reference_keep=keep.reference.flatten(),
        )


class ConditionMasks:
    """1 where a condition is kept, 0 where it is dropped: kps (B,), audio (B,), reference (B, F)."""

    def __init__(self, batch: int, num_frames: int, uncond_ratio: float, kps_drop_rate: float, reference_drop_rate: float, generator):
        unconditional = torch.rand(batch, generator=generator) < uncond_ratio  # the whole sample
        self.kps = (~unconditional & ~(torch.rand(batch, generator=generator) < kps_drop_rate)).float()
        self.audio = (~unconditional).float()
        dropped_reference = torch.rand(batch, num_frames, generator=generator) < reference_drop_rate
        self.reference = (~unconditional[:, None] & ~dropped_reference).float()

    def to(self, device) -> "ConditionMasks":
        self.kps, self.audio, self.reference = self.kps.to(device), self.audio.to(device), self.reference.to(device)
        return self


def min_snr_weights(scheduler: DDIMScheduler, timesteps: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    """min(SNR, gamma) / SNR per timestep, SNR + 1 for v-prediction (Hang et al., Min-SNR weighting)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas_cumprod / (1 - alphas_cumprod)
    if scheduler.config.prediction_type == "v_prediction":
        snr = snr + 1
    return snr.clamp(max=snr_gamma) / snr


def diffusion_loss(prediction, target, lip_masks, timesteps, scheduler, lip_loss_weight: float, snr_gamma: float) -> torch.Tensor:
    """Per-element MSE x ((lip_loss_weight - 1) x lip mask + 1), mean per sample x min-SNR weight, mean."""
    loss = F.mse_loss(prediction.float(), target.float(), reduction="none")
    loss = loss * ((lip_loss_weight - 1) * lip_masks.float() + 1)
    if snr_gamma:
        return (loss.flatten(1).mean(dim=1) * min_snr_weights(scheduler, timesteps, snr_gamma)).mean()
    return loss.mean()


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, generator) -> torch.Tensor:
    """Images (B, 3, F, H, W) or (B, 3, H, W) in [-1, 1] -> a sample of the VAE latent distribution x scaling factor."""
    video = images.ndim == 5
    pixels = fold_frames(images) if video else images
    latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    return unfold_frames(latents, images.shape[2]) if video else latents


def training_step(networks: VExpressNetworks, vae, scheduler, batch: dict, settings: StepSettings, generator: torch.Generator) -> torch.Tensor:
    """The loss of one batch. Every random draw (VAE sampling, noise, timesteps, dropout) comes from the CPU
    `generator`, so a step is reproducible from its seed alone. The networks' inputs are cast to their dtype
    (DeepSpeed converts the networks to fp16/bf16 itself); the target and the loss stay float32."""
    device = batch["targets"].device
    dtype = next(networks.parameters()).dtype
    latents = encode_latents(vae, batch["targets"], generator).float()
    reference_latents = encode_latents(vae, batch["reference"], generator).float()
    batch_size, channels, num_frames = latents.shape[:3]
    noise = torch.randn(latents.shape, generator=generator)
    noise += settings.noise_offset * torch.randn((batch_size, channels, 1, 1, 1), generator=generator)
    noise = noise.to(device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator).to(device)
    keep = ConditionMasks(batch_size, num_frames, settings.uncond_ratio, settings.kps_drop_rate, settings.reference_drop_rate, generator).to(device)

    noisy_latents = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps) if scheduler.config.prediction_type == "v_prediction" else noise
    prediction = networks(
        noisy_latents.to(dtype), timesteps, reference_latents.to(dtype), batch["audio"].to(dtype), batch["kps_images"].to(dtype), keep,
    )
    return diffusion_loss(prediction, target, batch["lip_masks"], timesteps, scheduler, settings.lip_loss_weight, settings.snr_gamma)

