"""The evaluation networks' published weights: where they live, how they are read (weights-only, strictly)."""

import hashlib
from pathlib import Path

import torch
from torch import nn

from evaluation.errors import MissingWeightsError, WeightsError
from modules.errors import first_line

WEIGHTS_DIR = Path("model_ckpts") / "evaluation"
# file name -> where the official code gets it (joonson/syncnet_python's download_model.sh)
SOURCES = {
    "syncnet_v2.model": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    "sfd_face.pth": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
    "example.avi": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/example.avi",  # the demo check's video
}


def fetch_hint(path: str | Path) -> str:
    """The command that puts the published file at `path`."""
    path = Path(path)
    url = SOURCES.get(path.name)
    return f"get it with: curl -L -o {path} {url}" if url else "see model_ckpts/README.md"


def load_strict(network: nn.Module, path: str | Path) -> nn.Module:
    """Read a plain state dict weights-only (no code in the file can run) into `network`, every key and shape
    checked; returns `network` in eval mode. Any problem is one WeightsError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{path}: missing; {fetch_hint(path)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights-only refusals all derive from Exception
        raise WeightsError(f"{path}: not a readable weights file ({first_line(error, path)}); {fetch_hint(path)}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict; {fetch_hint(path)}")
    expected = network.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    for problem, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshaped)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise WeightsError(f"{path}: does not fit {type(network).__name__} ({problem}: {shown}); {fetch_hint(path)}")
    network.load_state_dict(state, strict=True)
    return network.eval()


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()
