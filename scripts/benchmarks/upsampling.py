"""diffusers' Upsample2D against the regrouped PhaseUpsample2D."""

import json
import sys
import time

from scripts.benchmarks.common import build_pipeline, sample_inputs


def run(args, pipeline=None) -> dict:
    """diffusers' Upsample2D against PhaseUpsample2D (on --device, whichever it is) in the VAE decoder (one frame per
    decode, as on the CPU) and in the denoising UNet (one window of --context_frames frames, both halves of guidance),
    alternating, the best of --repeats; and the relative difference between the two outputs."""
    import torch
    from diffusers.models.upsampling import Upsample2D

    from modules.checkpoints import DTYPES
    from modules.upsampling import PhaseUpsample2D, use_phase_upsampling
    from motion.keypoints import KpsImages

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    pipeline = pipeline or build_pipeline(args.size, device, dtype)  # its VAE decoder has PhaseUpsample2D already
    use_phase_upsampling(pipeline.denoising_unet)
    frames, height, width = args.context_frames, args.height // 8, args.width // 8
    reference, kps, waveform = sample_inputs(args.width, args.height, frames)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        unet_inputs = (
            torch.randn(2, 4, frames, height, width, generator=generator).to(device, dtype), torch.tensor(999, device=device),
            pipeline.encode_audio(waveform, frames, 2),
            pipeline.encode_kps(KpsImages(kps, args.height, args.width), range(frames), args.width, args.height),
            pipeline.encode_reference(reference, args.width, args.height),
        )
        latents = torch.randn(frames, 4, height, width, generator=generator).to(device, dtype)
        measured = {
            "vae decoder": (pipeline.vae, lambda: torch.cat([pipeline.vae.decode(latent[None]).sample for latent in latents]), frames),
            "denoising unet": (pipeline.denoising_unet, lambda: pipeline.denoising_unet(*unet_inputs, num_unconditional=1), 1),
        }
        rows = []
        for network, (model, call, per) in measured.items():
            phase = {name: module for name, module in model.named_modules() if isinstance(module, PhaseUpsample2D)}
            plain = {}
            for name, module in phase.items():
                module.phase_devices = {device.type}  # measured here whatever the device
                plain[name] = Upsample2D(module.channels, out_channels=module.out_channels)
                plain[name].use_conv, plain[name].conv = True, module.conv
            seconds, outputs = {}, {}
            for _ in range(args.repeats):
                for variant, modules in (("Upsample2D", plain), ("PhaseUpsample2D", phase)):
                    for name, module in modules.items():
                        parent, _, child = name.rpartition(".")
                        setattr(model.get_submodule(parent), child, module)
                    synchronize()
                    started = time.perf_counter()
                    outputs[variant] = call()
                    synchronize()
                    seconds[variant] = min(seconds.get(variant, float("inf")), (time.perf_counter() - started) / per)
            expected, got = outputs["Upsample2D"].double(), outputs["PhaseUpsample2D"].double()
            rows.append(dict(
                network=network, up_samplers=len(phase), per="frame" if per > 1 else "call",
                seconds={variant: round(value, 4) for variant, value in seconds.items()},
                speedup=round(seconds["Upsample2D"] / seconds["PhaseUpsample2D"], 3),
                relative_difference=float((got - expected).norm() / expected.norm()),
            ))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return dict(report="upsampling", size=args.size, width=args.width, height=args.height, window_frames=frames, rows=rows)
