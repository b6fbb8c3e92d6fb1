"""Train V-Express in its three progressive stages (training.md).

    accelerate launch train.py --config training_configs/stage_1.yaml
    python train.py --config training_configs/tiny.yaml          # one process, CPU or one GPU

Every `checkpointing_steps` steps OUTPUT_DIR receives `{module}-{step}.pth` weight files in the published
format (inference.py loads them as they are) and `checkpoint-{step}/`, the full state that
`resume_from_checkpoint: latest` continues from. Both are written under temporary names and renamed when
complete, so a killed run never leaves a file that looks finished but is not.
"""

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm.auto import tqdm

from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
from modules.checkpoints import (
    DTYPES, MOTION_MODULE_KEY, CheckpointError, add_reference_attention, atomic_path, load_partially, motion_module_state_dict,
    partial_path, read_state_dict, rename_legacy_audio_attention, save_file, v_express_state_dicts,
)
from modules.errors import VExpressError, first_line
from pipelines.config import load_inference_config
from pipelines.loading import from_pretrained
from training.dataset import SampleKeys, TalkingHeadDataset
from training.step import MODULE_NAMES, StepSettings, VExpressNetworks, training_noise_scheduler, training_step

DEFAULTS_PATH = Path(__file__).parent / "training_configs" / "defaults.yaml"
DENOISING_UNET_STATE_DICT_TYPES = ("moore_pretrained", "old_attn", "new_attn")


class ConfigError(VExpressError):
    """A training config that cannot be used, with a message for the user."""


def load_config(path) -> OmegaConf:
    """The YAML at `path` over training_configs/defaults.yaml; unknown keys are errors (a typo must not be ignored)."""
    try:
        defaults = OmegaConf.load(DEFAULTS_PATH)
        OmegaConf.set_struct(defaults, True)
        config = OmegaConf.merge(defaults, OmegaConf.load(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"{path}: {first_line(error)} (keys and defaults: {DEFAULTS_PATH})") from None
    if config.denoising_unet_state_dict_type not in DENOISING_UNET_STATE_DICT_TYPES:
        raise ConfigError(f"{path}: denoising_unet_state_dict_type must be one of {', '.join(DENOISING_UNET_STATE_DICT_TYPES)}")
    if not config.data.meta_paths:
        raise ConfigError(f"{path}: data.meta_paths lists no meta JSON; make one with scripts/prepare_dataset/prepare_dataset.py")
    return config


# Networks and their initial weights.

def _base_unet_weights(base_model_path: Path) -> tuple[dict, str] | tuple[None, None]:
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (base_model_path / "unet" / name).is_file():
            return read_state_dict(base_model_path / "unet" / name), str(base_model_path / "unet" / name)
    return None, None


def build_networks(config, report=print) -> VExpressNetworks:
    """The four networks, initialised as the config says: the stage's starting files, or for stage 1 the
    image-variation UNet of `base_model_path` (ReferenceNet as it is; the denoising UNet with attn1 copied to
    attn1_5), motion modules from an AnimateDiff file."""
    base = Path(config.base_model_path)
    unet_config_path = base / "unet" / "config.json"
    if not unet_config_path.is_file():
        raise CheckpointError(f"{unet_config_path}: UNet config not found; base_model_path must hold unet/config.json (see training_configs/README.md)")
    unet_config = UNet3DConditionModel.load_config(str(unet_config_path))
    unet_kwargs = OmegaConf.to_container(config.unet_additional_kwargs) if config.unet_additional_kwargs else load_inference_config()["unet_additional_kwargs"]
    networks = VExpressNetworks(
        reference_net_from_config(unet_config), UNet3DConditionModel.from_config_2d(unet_config, unet_kwargs),
        VKpsGuider(**OmegaConf.to_container(config.v_kps_guider_kwargs)), AudioProjection(**OmegaConf.to_container(config.audio_projection_kwargs)),
    )
    base_weights, base_source = _base_unet_weights(base)
    if base_weights is None and not (config.reference_net_path and config.denoising_unet_path):
        report(f"note: no weights in {base / 'unet'} and no starting file for a UNet: it starts from random values")

    if config.reference_net_path or base_weights is not None:
        state, source = (read_state_dict(config.reference_net_path), config.reference_net_path) if config.reference_net_path else (base_weights, base_source)
        state = {k: v for k, v in state.items() if not k.startswith("conv_norm_out.")}  # the image UNet's final norm: unused
        load_partially(networks.reference_net, state, source)
        report(f"ReferenceNet from {source}")

    if config.denoising_unet_path or base_weights is not None:
        state, source = (read_state_dict(config.denoising_unet_path), config.denoising_unet_path) if config.denoising_unet_path else (base_weights, base_source)
        if config.denoising_unet_state_dict_type == "old_attn":
            state = rename_legacy_audio_attention(state)
        if config.denoising_unet_state_dict_type != "new_attn" or not config.denoising_unet_path:
            state = add_reference_attention(state)
        motion = motion_module_state_dict(read_state_dict(config.motion_module_path)) if config.motion_module_path else {}
        lacking = load_partially(networks.denoising_unet, {**state, **motion}, f"{source} + {config.motion_module_path or 'no motion-module file'}",
                                 may_lack=lambda key: MOTION_MODULE_KEY in key)
        report(f"denoising UNet from {source}" + (f", motion modules from {config.motion_module_path}" if motion else "")
               + (f" ({len(lacking)} motion-module tensors at their initial values)" if lacking else ""))

    for name, network in (("v_kps_guider", networks.v_kps_guider), ("audio_projection", networks.audio_projection)):
        path = config[f"{name}_path"]
        if path:
            load_partially(network, read_state_dict(path), path)
            report(f"{name} from {path}")
    if config.zero_audio_and_motion_outputs:
        networks.denoising_unet.zero_audio_and_motion_outputs()
    return networks


# Checkpoints.

def save_module_files(networks: VExpressNetworks, output_dir: Path, step: int) -> None:
    """`{module}-{step}.pth` for the five published files: plain state dicts of float tensors."""
    files = v_express_state_dicts(networks.reference_net, networks.denoising_unet, networks.v_kps_guider, networks.audio_projection)
    for name, state in files.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, output_dir / f"{name}-{step}.pth")


def latest_checkpoint(output_dir: Path) -> Path | None:
    steps = [(int(p.name.split("-")[1]), p) for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return max(steps)[1] if steps else None


def save_state(accelerator, output_dir: Path, step: int) -> None:
    """accelerate's full state (networks, optimizer, lr schedule, RNG) into `checkpoint-{step}/`, via a temporary
    folder every process writes to and the main process renames once all are done."""
    final = output_dir / f"checkpoint-{step}"
    with atomic_path(final, partial_path(final)) if accelerator.is_main_process else contextlib.nullcontext(partial_path(final)) as partial:
        accelerator.wait_for_everyone()  # the main process has cleared a stale partial folder
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()


# The loop.

def make_optimizer(config, parameters):
    solver = config.solver
    optimizer_class = torch.optim.AdamW
    if solver.use_8bit_adam:
        try:
            import bitsandbytes

            optimizer_class = bitsandbytes.optim.AdamW8bit
        except ImportError:
            print("note: use_8bit_adam is set but bitsandbytes is not installed; using torch's AdamW (pip install bitsandbytes)", file=sys.stderr)
    return optimizer_class(
        parameters, lr=solver.learning_rate, betas=(solver.adam_beta1, solver.adam_beta2),
        weight_decay=solver.adam_weight_decay, eps=solver.adam_epsilon,
    )


def train(config, config_name: str) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers import AutoencoderKL
    from diffusers.optimization import get_scheduler

    solver, data = config.solver, config.data
    output_dir = Path(config.output_dir)
    log_with = None if config.report_to in (None, "none") else config.report_to
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(),  # on CPUs too, each torchrun process sees the others
        gradient_accumulation_steps=solver.gradient_accumulation_steps, mixed_precision=solver.mixed_precision,
        log_with=log_with, project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    say = accelerator.print
    if accelerator.state.deepspeed_plugin is not None:  # no DataLoader goes through prepare(): DeepSpeed needs the batch size
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = data.train_bs
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, output_dir / "config.yaml")

    setup_started = time.perf_counter()
    torch.manual_seed(config.seed)  # the initial values of networks that start from scratch
    networks = build_networks(config, report=say)
    networks.set_trainable(OmegaConf.to_container(config.module_training))
    if solver.reference_net_gradient_checkpointing:
        networks.reference_net.enable_gradient_checkpointing()
    if solver.denoising_unet_gradient_checkpointing:
        networks.denoising_unet.enable_gradient_checkpointing()
    weight_dtype = DTYPES.get(solver.mixed_precision, torch.float32)  # the frozen VAE's dtype
    vae = from_pretrained(AutoencoderKL.from_pretrained, config.vae_model_path, "VAE", torch_dtype=weight_dtype,
                          hint="download it with: python scripts/download_models.py --include sd-vae-ft-mse")
    vae = vae.to(accelerator.device).requires_grad_(False).eval()
    scheduler = training_noise_scheduler(OmegaConf.to_container(config.noise_scheduler_kwargs), config.enable_zero_snr)

    trainable = [p for p in networks.parameters() if p.requires_grad]
    counts = {name: sum(p.numel() for p in getattr(networks, name).parameters() if p.requires_grad) for name in MODULE_NAMES if hasattr(networks, name)}
    say(f"{config_name} on {accelerator.num_processes} process{'es' if accelerator.num_processes > 1 else ''} ({accelerator.device}): "
        "trainable parameters " + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    optimizer = make_optimizer(config, trainable)
    # accelerate steps a prepared schedule once per process and step, so its length is counted in those steps;
    # DeepSpeed steps it once per optimizer step.
    schedule_steps = 1 if accelerator.state.deepspeed_plugin is not None else accelerator.num_processes
    lr_scheduler = get_scheduler(
        solver.lr_scheduler, optimizer, num_warmup_steps=solver.lr_warmup_steps * schedule_steps,
        num_training_steps=solver.max_train_steps * schedule_steps,
    )
    networks, optimizer, lr_scheduler = accelerator.prepare(networks, optimizer, lr_scheduler)

    step = 0
    if config.resume_from_checkpoint:
        resume = latest_checkpoint(output_dir) if config.resume_from_checkpoint == "latest" else Path(config.resume_from_checkpoint)
        if resume is not None and not (resume.is_dir() and resume.name.startswith("checkpoint-") and resume.name[11:].isdigit()):
            raise ConfigError(f"resume_from_checkpoint: {resume} is not a checkpoint folder (checkpoint-N in an output_dir)")
        if resume is None:
            say(f"no checkpoint in {output_dir} yet: starting from step 0")
        else:
            accelerator.load_state(str(resume))
            step = int(resume.name.split("-")[1])
            say(f"resumed from {resume} at step {step}")

    dataset = TalkingHeadDataset(
        data.meta_paths, width=data.train_width, height=data.train_height, num_frames=data.num_frames, sample_rate=data.sample_rate,
        reference_margin=data.reference_margin, flip_rate=data.flip_rate, crop_scale=data.crop_scale, crop_ratio=data.crop_ratio,
        num_padding_audio_frames=data.num_padding_audio_frames, seed=config.seed,
    )
    accumulation = solver.gradient_accumulation_steps
    keys = SampleKeys(data.train_bs, accelerator.process_index, accelerator.num_processes, start_micro_batch=step * accumulation)
    loader = torch.utils.data.DataLoader(dataset, batch_size=data.train_bs, sampler=keys, num_workers=data.num_workers)
    settings = StepSettings(
        uncond_ratio=config.uncond_ratio, kps_drop_rate=data.kps_drop_rate, reference_drop_rate=data.reference_drop_rate,
        noise_offset=config.noise_offset, lip_loss_weight=data.lip_loss_weight, snr_gamma=config.snr_gamma,
    )
    if accelerator.is_main_process and log_with:
        accelerator.init_trackers(config_name, config=_flat_hparams(config))
    setup_seconds = time.perf_counter() - setup_started

    start_step, started = step, time.perf_counter()
    progress = tqdm(total=solver.max_train_steps, initial=step, desc=config_name, unit="step", disable=not accelerator.is_local_main_process)
    micro_batch = step * accumulation
    for batch in loader:
        if step >= solver.max_train_steps:
            break
        batch = {name: value.to(accelerator.device) for name, value in batch.items()}
        # Each micro-batch's random draws depend only on (seed, micro-batch, process): a resumed run repeats them exactly.
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, micro_batch, accelerator.process_index]).generate_state(1)[0]))
        with accelerator.accumulate(networks):
            with accelerator.autocast():
                loss = training_step(networks, vae, scheduler, batch, settings, generator)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable, solver.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
        micro_batch += 1
        if not accelerator.sync_gradients:
            continue
        step += 1
        mean_loss = accelerator.gather(loss.detach()[None]).mean().item()
        lr = lr_scheduler.get_last_lr()[0]
        progress.update()
        progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
        if log_with:
            accelerator.log({"train_loss": mean_loss, "lr": lr}, step=step)
        if step % config.checkpointing_steps == 0 or step == solver.max_train_steps:
            save_state(accelerator, output_dir, step)
            if accelerator.is_main_process:
                save_module_files(accelerator.unwrap_model(networks), output_dir, step)
    progress.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    seconds = time.perf_counter() - started
    steps_done = step - start_step
    peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if torch.cuda.is_available() else ""
    say(
        f"done: steps {start_step}->{step} in {seconds:.1f} s ({seconds / max(steps_done, 1):.2f} s/step), setup {setup_seconds:.1f} s"
        f"{peak}; weights in {output_dir}"
    )
    return output_dir


def _flat_hparams(config) -> dict:
    """Scalar config values for the tracker (TensorBoard's hparams take numbers, strings and booleans only)."""
    flat = {}
    for key, value in OmegaConf.to_container(config).items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, item in items:
            if isinstance(item, (int, float, str, bool)):
                flat[f"{key}.{sub}" if sub else key] = item
    return flat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a training config, e.g. training_configs/stage_1.yaml")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        train(config, Path(args.config).stem)
    except VExpressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
