"""Reading and writing weight files: weights-only reading, strict loading into our networks, the published
five-file split, and the atomic writes every saved file goes through."""

import contextlib
import hashlib
import glob
import os
import pickle
import re
import secrets
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from .audio_projection import AudioProjection
from .errors import VExpressError, first_line
from .reference_net import reference_net_from_config
from .unet_3d import UNet3DConditionModel
from .v_kps_guider import VKpsGuider

DOWNLOAD_HINT = "download the weights with: python scripts/download_models.py (see model_ckpts/README.md)"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}  # the names --dtype and configs use
MOTION_MODULE_KEY = "motion_modules."  # the keys motion_module.bin holds; denoising_unet.bin holds the others


class CheckpointError(VExpressError):
    """A weight file that is missing, unreadable, unsafe, or does not fit its network."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path, partial: str | Path | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write a file or a folder to; it becomes `path` when the block ends without
    an error, and is removed when it fails. So `path` only ever holds something complete.

        with atomic_path("out.mp4") as partial:
            write_everything_to(partial)

    The temporary name is this call's own (two writers of one path never touch each other's file), unless
    `partial` names one that processes writing together share (train.py's checkpoint folders): a stale one
    left there by a killed run is cleared first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if partial is None:
        partial = path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    else:
        partial = Path(partial)
        _remove(partial)
    try:
        yield partial
        if partial.is_dir():
            _remove(path)  # os.replace cannot put a folder over a non-empty one
        os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise


def partial_path(path: str | Path) -> Path:
    """The temporary name processes that write `path` together pass to `atomic_path` (hidden, same folder, same
    suffix)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def leftover_partials(path: str | Path) -> list[Path]:
    """The temporary files of `atomic_path` writes of `path` that a killed process left behind; only the one
    writer allowed to write `path` (holding its lock) may remove them."""
    path = Path(path)
    name = re.compile(re.escape(f".{path.stem}.partial-") + r"\d+-[0-9a-f]{8}" + re.escape(path.suffix))
    return sorted(p for p in path.parent.glob(f"{glob.escape('.' + path.stem)}.partial-*") if name.fullmatch(p.name))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def numpy_allowlist(dtypes=(np.float32,)) -> list:
    """Exactly the numpy objects that pickled arrays and scalars of `dtypes` need, under numpy 1 and numpy 2
    names: what a weights-only `torch.load` may rebuild from the published keypoint and face-info files."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    return [
        (core._reconstruct, "numpy.core.multiarray._reconstruct"),
        (core._reconstruct, "numpy._core.multiarray._reconstruct"),
        (core.scalar, "numpy.core.multiarray.scalar"),
        (core.scalar, "numpy._core.multiarray.scalar"),
        np.ndarray, np.dtype, *(type(np.dtype(dtype)) for dtype in dtypes),
    ]


def v_express_state_dicts(reference_net, denoising_unet, v_kps_guider, audio_projection) -> dict[str, dict]:
    """The published files' contents, {file stem: state dict}: `denoising_unet` without its motion modules,
    `motion_module` with only them."""
    unet_state = denoising_unet.state_dict()
    return {
        "reference_net": reference_net.state_dict(),
        "denoising_unet": {k: v for k, v in unet_state.items() if MOTION_MODULE_KEY not in k},
        "motion_module": {k: v for k, v in unet_state.items() if MOTION_MODULE_KEY in k},
        "v_kps_guider": v_kps_guider.state_dict(),
        "audio_projection": audio_projection.state_dict(),
    }


def save_file(obj, path: str | Path) -> Path:
    """`torch.save`, atomically: `path` only ever holds a complete file. Weight files are plain dicts of CPU
    tensors (the published format)."""
    with atomic_path(path) as partial:
        torch.save(obj, partial)
    return Path(path)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A `.safetensors` file, or a `torch.save`d state dict read without unpickling anything but tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found; {DOWNLOAD_HINT}")
    try:
        if path.suffix == ".safetensors":
            state_dict = safetensors.torch.load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        reason = first_line(error, path) if "Weights only load failed" not in str(error) else "it holds Python objects other than tensors"
        raise CheckpointError(f"{path}: refused to load: {reason}. Only plain tensor files are read; {DOWNLOAD_HINT}") from None
    except (RuntimeError, EOFError, OSError, ValueError, SafetensorError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path}: not a readable weight file (it may be truncated or corrupt: {first_line(error, path)}); {DOWNLOAD_HINT}"
        ) from None
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict), found {type(state_dict).__name__}")
    return state_dict


def check_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Every key of `module` present with its shape, and nothing else; else a CheckpointError naming `source`."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in expected if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("tensors of the wrong shape", wrong_shape))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(module).__name__} ({len(expected)} keys expected, {len(state_dict)} found): "
            + "; ".join(problems)
            + ". Is it the right file for this network, built with the same config?"
        )


def build_and_load(build: Callable[[], nn.Module], state_dict: dict, source: str, dtype=torch.float32, device="cpu") -> nn.Module:
    """Build a network without allocating its random init, check the weights strictly, then adopt them."""
    with torch.device("meta"):
        module = build()
    check_state_dict(module, state_dict, source)
    state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=True)
    return module.to(device).eval().requires_grad_(False)


def load_reference_net(unet_config, weights_path, dtype=torch.float32, device="cpu"):
    return build_and_load(lambda: reference_net_from_config(unet_config), read_state_dict(weights_path), str(weights_path), dtype, device)


def load_denoising_unet(unet_config, unet_additional_kwargs, denoising_unet_path, motion_module_path=None, dtype=torch.float32, device="cpu"):
    """`denoising_unet.bin` (which may hold the motion modules too) and `motion_module.bin` must cover every key together."""
    state_dict = dict(read_state_dict(denoising_unet_path))
    sources = [str(denoising_unet_path)]
    if motion_module_path is not None:
        state_dict.update(read_state_dict(motion_module_path))
        sources.append(str(motion_module_path))
    build = lambda: UNet3DConditionModel.from_config_2d(unet_config, unet_additional_kwargs)  # noqa: E731
    return build_and_load(build, state_dict, " + ".join(sources), dtype, device)


def v_kps_guider_config(state_dict) -> dict:
    """Constructor arguments of the guider that wrote `state_dict` (its shapes determine them)."""
    widths = [state_dict["conv_in.weight"].shape[0]]
    num_blocks = sum(1 for key in state_dict if re.fullmatch(r"blocks\.\d+\.weight", key))
    widths += [state_dict[f"blocks.{i}.weight"].shape[0] for i in range(1, num_blocks, 2)]  # the stride-2 convs
    return dict(
        conditioning_embedding_channels=state_dict["conv_out.weight"].shape[0],
        conditioning_channels=state_dict["conv_in.weight"].shape[1],
        block_out_channels=tuple(widths),
    )


def audio_projection_config(state_dict, dim_head: int = 64) -> dict:
    """Constructor arguments of the projection that wrote `state_dict`. The head split of the attention
    is not visible in the shapes: heads of `dim_head` (the published 64) channels."""
    _, num_queries, dim = state_dict["latents"].shape
    inner_dim = state_dict["layers.0.0.to_q.weight"].shape[0]
    max_seq_len, embedding_dim = state_dict["pos_emb.weight"].shape
    return dict(
        dim=dim, depth=len({key.split(".")[1] for key in state_dict if key.startswith("layers.")}),
        dim_head=dim_head, heads=inner_dim // dim_head, num_queries=num_queries, embedding_dim=embedding_dim,
        output_dim=state_dict["proj_out.weight"].shape[0],
        ff_mult=state_dict["layers.0.1.1.weight"].shape[0] // dim, max_seq_len=max_seq_len,
    )


def _load_sized(network_class, infer_config, weights_path, dtype, device, config):
    state_dict = read_state_dict(weights_path)
    if config is None:
        try:
            config = infer_config(state_dict)
        except (KeyError, IndexError, ValueError) as error:
            raise CheckpointError(f"{weights_path}: not a {network_class.__name__} weight file (no {error})") from None
    return build_and_load(lambda: network_class(**config), state_dict, str(weights_path), dtype, device)


def load_v_kps_guider(weights_path, dtype=torch.float32, device="cpu", config: dict | None = None):
    return _load_sized(VKpsGuider, v_kps_guider_config, weights_path, dtype, device, config)


def load_audio_projection(weights_path, dtype=torch.float32, device="cpu", config: dict | None = None):
    return _load_sized(AudioProjection, audio_projection_config, weights_path, dtype, device, config)


# Conversions used when training starts from other checkpoints.

def add_reference_attention(state_dict: dict) -> dict:
    """Image-UNet weights without `attn1_5`: reference attention starts as a copy of self-attention."""
    converted = dict(state_dict)
    for key, value in state_dict.items():
        new_key = re.sub(r"(transformer_blocks\.\d+)\.(attn1|norm1)\.", r"\1.\2_5.", key)
        if new_key != key:
            converted.setdefault(new_key, value.clone())
    return converted


def rename_legacy_audio_attention(state_dict: dict) -> dict:
    """`attn2.processor.to_{q,k,v,out}_aud` (an older layout) -> `attn2.to_{q,k,v,out}`."""
    converted = {}
    for key, value in state_dict.items():
        key = re.sub(r"attn2\.processor\.to_out_aud\.(?:0\.)?(weight|bias)$", r"attn2.to_out.0.\1", key)
        converted[re.sub(r"attn2\.processor\.to_([qkv])_aud\.", r"attn2.to_\1.", key)] = value
    return converted


def motion_module_state_dict(state_dict: dict) -> dict:
    """The motion-module tensors of an AnimateDiff (`mm_sd_v15_v2`) or V-Express file."""
    return {key.removeprefix("module."): value for key, value in state_dict.items() if MOTION_MODULE_KEY in key}


def load_partially(module: nn.Module, state_dict: dict, source: str, may_lack: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Load `state_dict` into an initialised `module`. Keys for which `may_lack(key)` is true may be absent: they
    keep their initial values. Any other missing key, unexpected key or wrong shape is a CheckpointError.
    Returns the keys left at their initial values."""
    expected = module.state_dict()
    lacking = [key for key in expected if key not in state_dict and may_lack(key)]
    check_state_dict(module, {**state_dict, **{key: expected[key] for key in lacking}}, source)
    module.load_state_dict(state_dict, strict=False)
    return lacking
