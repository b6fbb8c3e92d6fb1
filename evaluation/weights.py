"""The evaluation networks' published weights: where they live, where they come from, how they are read
(weights-only, strictly). The one description of model_ckpts/evaluation/: scripts/download_models.py
(--include evaluation) fetches and checks these files, scripts/model_check.py reports them."""

import urllib.request
from pathlib import Path

import torch
from torch import nn

from evaluation.errors import MissingWeightsError, WeightsError
from modules.checkpoints import atomic_path, file_sha256
from modules.errors import first_line

PART = "evaluation"  # the scripts/download_models.py --include name
WEIGHTS_DIR = Path("model_ckpts") / PART
# file name -> where the official code gets it: joonson/syncnet_python's download_model.sh, pytorch-fid's release,
# VideoGPT's README (its Google Drive file)
SOURCES = {
    "syncnet_v2.model": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    "sfd_face.pth": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
    "example.avi": "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/example.avi",  # the demo check's video
    "pt_inception-2015-12-05-6726825d.pth": "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "i3d_pretrained_400.pt": "https://drive.usercontent.google.com/download?id=1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT&export=download&confirm=t",
}
# file -> (size in bytes, SHA-256) of the published file. The hosts publish neither (pytorch-fid's file name carries
# the first 8 hex digits of its SHA-256, torch.hub's convention: a digest may be such a prefix), and this project
# could not reach them when the table was written: None means "not known yet", to be filled in from the first
# verified download (for SyncNet, the official demo check, scripts/evaluate.py --check_demo, giving the README's
# numbers). What is known is checked; what is not is reported, with the digest of the file at hand.
PUBLISHED: dict[str, tuple[int | None, str | None]] = {
    "syncnet_v2.model": (None, None),
    "sfd_face.pth": (None, None),
    "example.avi": (None, None),
    "pt_inception-2015-12-05-6726825d.pth": (None, "6726825d"),
    "i3d_pretrained_400.pt": (None, None),
}


def fetch_hint(path: str | Path) -> str:
    """The command that puts the published file at `path`."""
    path = Path(path)
    if path.name not in SOURCES:
        return "see model_ckpts/README.md"
    command = f"python scripts/download_models.py --include {PART}"
    if path.parent.name != PART:  # a --weights_dir of another name: the download lays out <local_dir>/evaluation/
        return f"get it with: {command} --local_dir {path.parent} (then move it from {path.parent / PART}/), or from {SOURCES[path.name]}"
    if path.parent.parent.resolve() != WEIGHTS_DIR.parent.resolve():
        command += f" --local_dir {path.parent.parent}"
    return f"get it with: {command}"


def verify(path: str | Path, name: str | None = None) -> str:
    """"ok", or what is wrong with a present file against the published size and SHA-256 (those known) of
    `name` (default the file's own name)."""
    path = Path(path)
    size, digest = PUBLISHED.get(name or path.name, (None, None))
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, published {size}: truncated or another file"
    if digest is not None and not file_sha256(path).startswith(digest):
        return "SHA-256 differs from the published file's"
    return "ok"


def download(url: str, path: str | Path, timeout: float = 60) -> None:
    """`url` to `path` (through a temporary name: `path` only ever holds a complete, verified file). Any problem
    is one WeightsError line naming the URL."""
    path = Path(path)
    try:
        with atomic_path(path) as partial:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as file:
                if response.headers.get_content_type() == "text/html":  # a sign-in or warning page (Google Drive's), not the file
                    raise WeightsError(f"{url}: the host answered with a web page, not the file; open the URL in a browser and save it as {path}")
                for chunk in iter(lambda: response.read(2**20), b""):
                    file.write(chunk)
            problem = verify(partial, path.name)
            if problem != "ok":
                raise WeightsError(f"{url}: downloaded file failed its check ({problem}); nothing was written to {path}")
    except WeightsError:
        raise
    except Exception as error:  # urllib's URLError / HTTPError / timeouts, and disk errors
        raise WeightsError(f"{url}: cannot download it ({first_line(error)})") from None


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
    for key in expected:  # files saved before PyTorch counted batch-norm batches lack the count; it is not a weight
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    misshaped = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    for problem, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshaped)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise WeightsError(f"{path}: does not fit {type(network).__name__} ({problem}: {shown}); {fetch_hint(path)}")
    network.load_state_dict(state, strict=True)
    return network.eval()


