"""train.py on the tiny architecture and a synthetic dataset: the three stages, frozen vs trained parameters,
learning on a repeated batch, exact resume, and generation from the saved files."""

import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from helpers.cli import ROOT, free_port, inspect_mp4, run_cli
from modules.checkpoints import read_state_dict
from training.step import StepSettings, training_noise_scheduler, training_step
from training.dataset import TalkingHeadDataset
from scripts.make_synthetic_dataset import write_synthetic_dataset
from scripts.make_tiny_checkpoints import write_tiny_checkpoints
from train import build_networks, load_config

STAGES = {
    1: dict(num_frames=1, trains=dict(reference_net=True, denoising_unet=True, v_kps_guider=True, audio_projection=False, motion_module=False)),
    2: dict(num_frames=4, trains=dict(reference_net=False, denoising_unet=False, v_kps_guider=False, audio_projection=True, motion_module=True)),
    3: dict(num_frames=4, trains=dict(reference_net=True, denoising_unet=True, v_kps_guider=True, audio_projection=True, motion_module=True)),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    ckpts = write_tiny_checkpoints(root / "ckpts")
    meta = write_synthetic_dataset(root / "data", num_clips=2, num_frames=30, size=64, audio_encoder_path=ckpts / "wav2vec2-base-960h")
    return root, ckpts, meta


def write_config(workspace, name, stage=3, **overrides):
    """training_configs/tiny.yaml pointed at the test's files, with a stage's frames and trained networks."""
    root, ckpts, meta = workspace
    config = OmegaConf.load(ROOT / "training_configs" / "tiny.yaml")
    config.data.meta_paths = [str(meta)]
    config.data.num_frames = STAGES[stage]["num_frames"]
    config.module_training = STAGES[stage]["trains"]
    config.base_model_path = str(ckpts / "sd-image-variations-diffusers")
    config.vae_model_path = str(ckpts / "sd-vae-ft-mse")
    config.output_dir = str(root / name)
    config.report_to = "none"
    config.solver.max_train_steps = 2
    config.checkpointing_steps = 2
    config.solver.lr_warmup_steps = 0  # every step updates (zero-initialised outputs pass gradients on from step 2)
    config.zero_audio_and_motion_outputs = True
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    path = root / f"{name}.yaml"
    OmegaConf.save(config, path)
    return path


def module_files(folder, step):
    return {name: read_state_dict(folder / f"{name}-{step}.pth") for name in ("reference_net", "denoising_unet", "motion_module", "v_kps_guider", "audio_projection")}


def changed(before: dict, after: dict) -> set[str]:
    return {key for key in after if not torch.equal(before[key].float(), after[key].float())}


def test_three_stages_train_what_they_should(workspace):
    root, ckpts, _ = workspace
    # Stage 1 from the image-variation UNet.
    result = run_cli("train.py", "--config", write_config(workspace, "stage_1", stage=1))
    assert result.returncode == 0, result.stderr[-3000:]
    stage_1 = module_files(root / "stage_1", 2)
    image_unet = read_state_dict(ckpts / "sd-image-variations-diffusers" / "unet" / "diffusion_pytorch_model.safetensors")
    reference_changed = changed(image_unet, stage_1["reference_net"])
    assert reference_changed and not any(k.startswith(("up_blocks.3.", "conv_out.")) for k in reference_changed)
    unet_changed = changed({**image_unet, **{k.replace("attn1.", "attn1_5.").replace("norm1.", "norm1_5."): v for k, v in image_unet.items()}},
                           stage_1["denoising_unet"])
    assert any(".attn1_5." in k for k in unet_changed)
    assert not any(".attn2." in k and ".attn2.to_out" not in k for k in unet_changed)  # audio attention frozen (its to_out zeroed)
    assert all(v.abs().sum() == 0 for k, v in stage_1["denoising_unet"].items() if ".attn2.to_out" in k)  # zeroed, frozen
    assert all(v.abs().sum() == 0 for k, v in stage_1["motion_module"].items() if "proj_out" in k)

    # Stage 2 from stage 1 plus an AnimateDiff-style motion-module file: only audio and motion train.
    files = {f"{name}_path": str(root / "stage_1" / f"{name}-2.pth") for name in ("reference_net", "denoising_unet", "v_kps_guider", "audio_projection")}
    config_2 = write_config(workspace, "stage_2", stage=2, denoising_unet_state_dict_type="new_attn",
                            motion_module_path=str(ckpts / "v-express" / "motion_module.bin"),
                            **{"solver.denoising_unet_gradient_checkpointing": True}, **files)  # as the published stage 2
    result = run_cli("train.py", "--config", config_2)
    assert result.returncode == 0, result.stderr[-3000:]
    stage_2 = module_files(root / "stage_2", 2)
    assert not changed(stage_1["reference_net"], stage_2["reference_net"]) and not changed(stage_1["v_kps_guider"], stage_2["v_kps_guider"])
    unet_changed = changed(stage_1["denoising_unet"], stage_2["denoising_unet"])
    assert unet_changed and all(".attn2." in k or ".norm2." in k for k in unet_changed)
    assert changed(stage_1["audio_projection"], stage_2["audio_projection"]) == set(stage_2["audio_projection"])
    assert changed(read_state_dict(ckpts / "v-express" / "motion_module.bin"), stage_2["motion_module"])

    # Stage 3 from stage 2 through `accelerate launch` with two CPU processes: everything trains.
    files = {f"{name}_path": str(root / "stage_2" / f"{name}-2.pth") for name in ("reference_net", "denoising_unet", "motion_module", "v_kps_guider", "audio_projection")}
    config_3 = write_config(workspace, "stage_3", stage=3, denoising_unet_state_dict_type="new_attn", zero_audio_and_motion_outputs=False, **files)
    # --multi_gpu goes through torchrun, so two processes start even on a CPU (--cpu would start one).
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--main_process_port", str(free_port()), "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1", str(ROOT / "train.py"), "--config", str(config_3)]
    result = subprocess.run(launch, capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 processes" in result.stdout, result.stdout[-2000:]
    stage_3 = module_files(root / "stage_3", 2)
    for name in ("reference_net", "v_kps_guider", "audio_projection", "motion_module", "denoising_unet"):
        assert changed(stage_2[name], stage_3[name]), name


def test_loss_decreases_on_one_repeated_batch(workspace):
    config = load_config(write_config(workspace, "repeat", stage=3, zero_audio_and_motion_outputs=False))
    networks = build_networks(config, report=lambda message: None)
    networks.set_trainable(OmegaConf.to_container(config.module_training))
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(config.vae_model_path).requires_grad_(False)
    data = TalkingHeadDataset(config.data.meta_paths, width=64, height=64, num_frames=4, reference_margin=4, seed=0)
    batch = {key: value[None] for key, value in data[0].items()}
    scheduler = training_noise_scheduler(OmegaConf.to_container(config.noise_scheduler_kwargs))
    optimizer = torch.optim.AdamW([p for p in networks.parameters() if p.requires_grad], lr=1e-3)
    settings = StepSettings(uncond_ratio=0.0)
    losses = []
    for _ in range(30):
        loss = training_step(networks, vae, scheduler, batch, settings, torch.Generator().manual_seed(0))  # same noise every time
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0], losses


def test_a_training_step_with_bf16_networks_as_deepspeed_converts_them(workspace):
    """DeepSpeed converts the networks to bf16 (or fp16) itself while the batch stays float32: the real step casts
    the inputs to the networks' dtype, keeps the loss in float32, and every trained network gets gradients."""
    config = load_config(write_config(workspace, "bf16", stage=3, zero_audio_and_motion_outputs=False))
    networks = build_networks(config, report=lambda message: None)
    networks.set_trainable(OmegaConf.to_container(config.module_training))
    networks.to(torch.bfloat16)
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(config.vae_model_path, torch_dtype=torch.bfloat16).requires_grad_(False)
    data = TalkingHeadDataset(config.data.meta_paths, width=64, height=64, num_frames=4, reference_margin=4, seed=0)
    batch = {key: value[None] for key, value in data[0].items()}
    assert all(value.dtype == torch.float32 for value in batch.values())
    scheduler = training_noise_scheduler(OmegaConf.to_container(config.noise_scheduler_kwargs))
    loss = training_step(networks, vae, scheduler, batch, StepSettings(uncond_ratio=0.0), torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    for name in ("reference_net", "denoising_unet", "v_kps_guider", "audio_projection"):
        grads = [p.grad for p in getattr(networks, name).parameters() if p.requires_grad]
        assert grads and all(g is not None and g.dtype == torch.bfloat16 for g in grads[-3:]), name
        assert any(g.abs().sum() > 0 for g in grads), name


def tensor_dtypes(state) -> set[torch.dtype]:
    if torch.is_tensor(state):
        return {state.dtype}
    return set().union(*map(tensor_dtypes, state.values())) if isinstance(state, dict) else set()


def test_resume_after_a_kill_reaches_the_same_weights(workspace):
    # With bitsandbytes' 8-bit AdamW, whose quantized moments are the harder state to restore (plain AdamW's are
    # float tensors saved the same way).
    root = workspace[0]
    straight_dir, resumed_dir = "straight", "resumed"
    settings = {"solver.use_8bit_adam": True}
    uninterrupted = run_cli("train.py", "--config", write_config(workspace, straight_dir, **settings, **{"solver.max_train_steps": 4}))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert "bitsandbytes is not installed" not in uninterrupted.stderr
    # The "killed" run stopped after its step-2 checkpoint, in the middle of writing step 4's.
    first = run_cli("train.py", "--config", write_config(workspace, resumed_dir, **settings, **{"solver.max_train_steps": 2}))
    assert first.returncode == 0, first.stderr[-3000:]
    optimizer_state = torch.load(root / resumed_dir / "checkpoint-2" / "optimizer.bin", weights_only=True)["state"]
    # bitsandbytes keeps 8-bit moments (uint8) for tensors of 4096 elements and more.
    assert torch.uint8 in tensor_dtypes(optimizer_state)
    shutil.copytree(root / resumed_dir / "checkpoint-2", root / resumed_dir / ".checkpoint-4.partial")
    second = run_cli("train.py", "--config", write_config(workspace, resumed_dir, **settings, **{"solver.max_train_steps": 4}))
    assert second.returncode == 0 and "resumed from" in second.stdout and "at step 2" in second.stdout, second.stdout + second.stderr[-2000:]
    straight, resumed = module_files(root / straight_dir, 4), module_files(root / resumed_dir, 4)
    for name in straight:
        assert not changed(straight[name], resumed[name]), name


def test_saved_files_generate_a_video_with_inference_py(workspace, tmp_path):
    root, ckpts, meta = workspace
    # mixed_precision fp16: the frozen VAE runs in fp16 (accelerate autocasts only on GPUs); trained weights and
    # their files stay float32.
    result = run_cli("train.py", "--config", write_config(workspace, "for_inference", **{"solver.mixed_precision": "fp16"}))
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "for_inference"
    for state in module_files(out, 2).values():
        assert all(tensor.dtype == torch.float32 and torch.isfinite(tensor).all() for tensor in state.values())
    torch.save([torch.tensor([[20.0, 24.0], [34.0, 24.0], [27.0, 32.0]]).numpy()] * 20, tmp_path / "kps.pth")
    from PIL import Image

    from media.video import read_video

    frames, _ = read_video(root / "data" / "videos" / "clip_000.mp4")
    Image.fromarray(frames[0]).save(tmp_path / "reference.png")
    weights = [arg for name in ("reference_net", "denoising_unet", "motion_module", "v_kps_guider", "audio_projection")
               for arg in (f"--{name}_path", out / f"{name}-2.pth")]
    result = run_cli(
        "inference.py", "--reference_image_path", tmp_path / "reference.png", "--audio_path", root / "data" / "videos" / "clip_001.mp4",
        "--kps_path", tmp_path / "kps.pth", "--output_path", tmp_path / "out.mp4", "--image_width", 64, "--image_height", 64,
        "--num_inference_steps", 2, "--device", "cpu", "--unet_config_path", ckpts / "stable-diffusion-v1-5" / "unet" / "config.json",
        "--vae_path", ckpts / "sd-vae-ft-mse", "--audio_encoder_path", ckpts / "wav2vec2-base-960h", *weights,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    video = inspect_mp4(tmp_path / "out.mp4")
    assert video["num_frames"] > 10 and video["frames"].shape[1:] == (64, 64, 3) and video["audio_codec"]


def test_config_mistakes_are_named(workspace, tmp_path):
    typo = write_config(workspace, "typo")
    typo.write_text(typo.read_text() + "snr_gama: 5\n")
    result = run_cli("train.py", "--config", typo)
    assert result.returncode == 2 and "snr_gama" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("train.py", "--config", write_config(workspace, "no_data", **{"data.meta_paths": [str(tmp_path / "nothing.json")]}))
    assert missing.returncode == 2 and "nothing.json: meta file not found" in missing.stderr and "Traceback" not in missing.stderr
    bad_weights = run_cli("train.py", "--config", write_config(workspace, "bad_weights", reference_net_path=str(tmp_path / "none.pth")))
    assert bad_weights.returncode == 2 and "none.pth: weight file not found" in bad_weights.stderr
