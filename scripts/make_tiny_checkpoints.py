"""Write a complete `model_ckpts`-layout folder of tiny random-weight networks (same architectures,
same file formats as the published weights), so that the whole CLI runs in seconds on a CPU; plus the
tiny image-variation UNet (`sd-image-variations-diffusers/unet/`) that training_configs/tiny.yaml starts from.

    python scripts/make_tiny_checkpoints.py OUT_DIR [--seed 0]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# modules before diffusers: importing it quiets a bitsandbytes warning that importing diffusers sets off.
from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config  # noqa: E402
from modules.checkpoints import save_file, v_express_state_dicts  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model  # noqa: E402
from pipelines.config import load_inference_config  # noqa: E402

UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 2,
    "block_out_channels": [16, 16, 32, 32],
    "center_input_sample": False,
    "cross_attention_dim": 16,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 4,
    "out_channels": 4,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
VAE_CONFIG = dict(
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[8, 8, 8, 8], layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=64,
)
WAV2VEC2_CONFIG = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, conv_dim=(8,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2, feat_extract_norm="group",
)
V_KPS_GUIDER_CONFIG = dict(conditioning_embedding_channels=16, block_out_channels=(4, 8, 8, 16))
# dim_head 64 as published, so the loader's reading of the shapes gives back this exact network.
AUDIO_PROJECTION_CONFIG = dict(dim=16, depth=1, dim_head=64, heads=1, num_queries=5, embedding_dim=16, output_dim=16, ff_mult=2, max_seq_len=10)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (so zero-initialised paths are live): weights N(0, 1/fan_in),
    norm scales 1 + N(0, 0.1), everything else N(0, 0.3)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight") and param.ndim > 1:
                param.copy_(noise / param[0].numel() ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.1 * noise)
            else:
                param.copy_(0.3 * noise)
    return module.eval()


def write_tiny_checkpoints(out_dir: str | Path, seed: int = 0) -> Path:
    out = Path(out_dir)
    unet_dir, express_dir = out / "stable-diffusion-v1-5" / "unet", out / "v-express"
    unet_dir.mkdir(parents=True, exist_ok=True)
    express_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "config.json").write_text(json.dumps(UNET_CONFIG, indent=2))

    randomize_(AutoencoderKL(**VAE_CONFIG), seed).save_pretrained(out / "sd-vae-ft-mse")
    audio_dir = out / "wav2vec2-base-960h"
    randomize_(Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2_CONFIG)), seed + 1).save_pretrained(audio_dir)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False).save_pretrained(audio_dir)

    unet = randomize_(UNet3DConditionModel.from_config_2d(UNET_CONFIG, load_inference_config()["unet_additional_kwargs"]), seed + 2)
    files = v_express_state_dicts(
        randomize_(reference_net_from_config(UNET_CONFIG), seed + 3), unet,
        randomize_(VKpsGuider(**V_KPS_GUIDER_CONFIG), seed + 4), randomize_(AudioProjection(**AUDIO_PROJECTION_CONFIG), seed + 5),
    )
    for name, state_dict in files.items():
        save_file(state_dict, express_dir / f"{name}.bin")
    # The image-variation UNet that training's stage 1 starts both UNets from (diffusers folder layout).
    randomize_(UNet2DConditionModel.from_config(UNET_CONFIG), seed + 6).save_pretrained(out / "sd-image-variations-diffusers" / "unet")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write (laid out like model_ckpts/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote tiny checkpoints to {write_tiny_checkpoints(args.out_dir, args.seed)}")


if __name__ == "__main__":
    main()
