"""The check behind `download_models.py --check`: every file of a `model_ckpts/`-layout folder (as
`pipelines.loading.ModelPaths` describes it, and the evaluation's weights as `evaluation.weights` describes them)
present, its size, and whether it loads with the right keys (the evaluation's: and its published size and SHA-256,
where known).
Weight files are read weights-only; networks are built on the `meta` device for the key check, so checking
costs no memory."""

from dataclasses import dataclass
from pathlib import Path

from evaluation import weights as evaluation_weights
from modules.errors import first_line
from pipelines.loading import PARTS, ModelPaths


@dataclass
class FileCheck:
    part: str
    file: str
    present: bool
    size: int = 0
    loads: str = "-"  # "ok", "-" (not checked), or what is wrong
    optional: bool = False  # an evaluation file in a check that did not ask for it: its absence is no failure

    @property
    def ok(self) -> bool:
        return (self.present and self.loads in ("ok", "-")) or (self.optional and not self.present)


def check_model_folder(folder, parts=None, load=True) -> list[FileCheck]:
    """One row per required file of each part (default: every generation part, and the evaluation's files as
    optional rows): present, size, and (`load`) whether it loads."""
    folder = Path(folder)
    rows = []
    for part, _, accepted in ModelPaths.under(folder).required_files(list(PARTS) if parts is None else parts):
        path = next((p for p in accepted if p.is_file()), None)
        name = str(path.relative_to(folder)) if path else " or ".join(str(p.relative_to(folder)) for p in accepted)
        row = FileCheck(part, name, path is not None, path.stat().st_size if path else 0)
        if path is not None and load:
            row.loads = _loads(folder, part, path)
        rows.append(row)
    if parts is None or evaluation_weights.PART in parts:
        rows += _evaluation_rows(folder, optional=parts is None, load=load)
    return rows


def _evaluation_rows(folder: Path, optional: bool, load: bool) -> list[FileCheck]:
    """model_ckpts/evaluation/'s files: present, size, published size and SHA-256 (where known) and, for the
    networks (`load`), whether they load strictly."""
    from evaluation.distributions import I3D_FILE, INCEPTION_FILE
    from evaluation.i3d import I3D
    from evaluation.inception_fid import FIDInceptionV3
    from evaluation.s3fd import S3FD
    from evaluation.syncnet import SyncNet

    networks = {"syncnet_v2.model": SyncNet, "sfd_face.pth": S3FD, INCEPTION_FILE: FIDInceptionV3, I3D_FILE: I3D}
    rows = []
    for name in evaluation_weights.SOURCES:
        path = folder / evaluation_weights.PART / name
        row = FileCheck(evaluation_weights.PART, f"{evaluation_weights.PART}/{name}", path.is_file(),
                        path.stat().st_size if path.is_file() else 0, optional=optional)
        if row.present:
            row.loads = evaluation_weights.verify(path)
            if row.loads == "ok" and load and name in networks:
                try:
                    evaluation_weights.load_strict(networks[name](), path)
                except Exception as error:  # any failure to load is reported in the table, not raised
                    row.loads = str(error).replace(f"{path}: ", "").split("; get it")[0][:160]
        rows.append(row)
    return rows


def _loads(folder: Path, part: str, path: Path) -> str:
    try:
        if part == "v-express":
            _check_network_file(folder, path)
        elif part == "stable-diffusion-v1-5":
            import json

            config = json.loads(path.read_text())
            if "block_out_channels" not in config:
                return "not a UNet config"
        elif part == "sd-vae-ft-mse" and path.name.startswith("diffusion_pytorch_model"):
            from diffusers import AutoencoderKL

            AutoencoderKL.from_pretrained(path.parent)
        elif part == "wav2vec2-base-960h" and path.suffix in (".safetensors", ".bin"):
            from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

            Wav2Vec2Model.from_pretrained(path.parent)
            Wav2Vec2FeatureExtractor.from_pretrained(path.parent)
        elif part == "insightface_models":
            import onnx

            onnx.checker.check_model(str(path))
    except Exception as error:  # any failure to load is reported in the table, not raised
        return first_line(error, path, limit=1000).replace(f"{path}: ", "").split("; download")[0][:160]  # the table names the file already
    return "ok"


def _check_network_file(folder: Path, path: Path) -> None:
    """Keys and shapes of a V-Express weight file against its network, built on `meta` from the folder's UNet config."""
    import torch

    from modules import AudioProjection, UNet3DConditionModel, VKpsGuider, reference_net_from_config
    from modules.checkpoints import MOTION_MODULE_KEY, audio_projection_config, check_state_dict, read_state_dict, v_kps_guider_config
    from pipelines.config import load_inference_config

    state_dict = read_state_dict(path)
    unet_config = folder / "stable-diffusion-v1-5" / "unet" / "config.json"
    name = path.stem
    with torch.device("meta"):
        if name == "reference_net":
            network = reference_net_from_config(str(unet_config))
        elif name in ("denoising_unet", "motion_module"):
            network = UNet3DConditionModel.from_config_2d(str(unet_config), load_inference_config()["unet_additional_kwargs"])
            # Each file covers its side of the split (denoising_unet.bin may also hold the motion modules):
            # the other side is taken from the network itself, so only this file's keys are judged.
            other_side = {k: v for k, v in network.state_dict().items() if (MOTION_MODULE_KEY in k) != (name == "motion_module")}
            if name == "denoising_unet":
                state_dict = {k: v for k, v in state_dict.items() if MOTION_MODULE_KEY not in k}
            state_dict = {**other_side, **state_dict}
        elif name == "v_kps_guider":
            network = VKpsGuider(**v_kps_guider_config(state_dict))
        else:
            network = AudioProjection(**audio_projection_config(state_dict))
    check_state_dict(network, state_dict, str(path))


def format_table(rows: list[FileCheck]) -> str:
    table = [("file", "present", "size", "loads")]
    for row in rows:
        present = "yes" if row.present else "optional" if row.optional else "MISSING"
        table.append((row.file, present, _size(row.size) if row.present else "-", row.loads))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths + [0])).rstrip() for r in table)


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
