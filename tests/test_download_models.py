"""scripts/download_models.py without network: a local folder laid out like the Hub repository (tiny
checkpoints), the offline failure, and --check."""

import shutil

import pytest

from helpers.cli import make_model_ckpts, run_cli
from pipelines.loading import PARTS
from modules.checkpoints import file_sha256


@pytest.fixture(scope="module")
def hub_clone(tmp_path_factory):
    """Like `git clone https://huggingface.co/tk93/V-Express`: model_ckpts/<part>/ folders, five .bin files at the root."""
    root = tmp_path_factory.mktemp("hub")
    ckpts = make_model_ckpts(root / "built")
    clone = root / "V-Express"
    for part in PARTS:
        if part != "v-express":
            shutil.copytree(ckpts / part, clone / "model_ckpts" / part)
    for weights in (ckpts / "v-express").glob("*.bin"):
        shutil.copy(weights, clone / weights.name)
    return clone


def test_lays_out_a_hub_clone_and_verifies_it(hub_clone, tmp_path):
    out = tmp_path / "model_ckpts"
    result = run_cli("scripts/download_models.py", "--repo_id", hub_clone, "--local_dir", out)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "all 12 files present and loadable" in result.stdout
    for weights in hub_clone.glob("*.bin"):
        assert (out / "v-express" / weights.name).read_bytes() == weights.read_bytes()
    assert (out / "insightface_models" / "models" / "buffalo_l" / "det_10g.onnx").is_file()
    assert not list(out.rglob("*.partial*"))

    check = run_cli("scripts/download_models.py", "--check", "--local_dir", out)
    assert check.returncode == 0 and "v-express/denoising_unet.bin" in check.stdout

    # A truncated weight file and a missing one are named, with the command that fixes them.
    weights = out / "v-express" / "denoising_unet.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    (out / "wav2vec2-base-960h" / "config.json").unlink()
    check = run_cli("scripts/download_models.py", "--check", "--local_dir", out)
    assert check.returncode == 1
    row = next(line for line in check.stdout.splitlines() if line.startswith("v-express/denoising_unet.bin"))
    assert "truncated or corrupt" in row
    assert any(line.startswith("wav2vec2-base-960h/config.json") and "MISSING" in line for line in check.stdout.splitlines())
    assert "--include v-express wav2vec2-base-960h" in check.stderr and "Traceback" not in check.stderr


def test_include_fetches_only_the_parts_asked_for(hub_clone, tmp_path):
    out = tmp_path / "model_ckpts"
    result = run_cli("scripts/download_models.py", "--repo_id", hub_clone, "--local_dir", out, "--include", "v-express", "stable-diffusion-v1-5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["stable-diffusion-v1-5", "v-express"]


def test_offline_says_what_is_missing_and_leaves_nothing_that_looks_complete(tmp_path):
    out = tmp_path / "model_ckpts"
    result = run_cli("scripts/download_models.py", "--local_dir", out, "--include", "v-express")  # HF_HUB_OFFLINE=1 in run_cli
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "could not download from tk93/V-Express" in result.stderr
    assert "v-express/reference_net.bin" in result.stderr and "huggingface.co/tk93/V-Express" in result.stderr
    assert not (out / "v-express").exists()


def test_a_clone_without_a_part_is_an_error(hub_clone, tmp_path):
    partial_clone = tmp_path / "clone"
    shutil.copytree(hub_clone, partial_clone, ignore=shutil.ignore_patterns("sd-vae-ft-mse"))
    result = run_cli("scripts/download_models.py", "--repo_id", partial_clone, "--local_dir", tmp_path / "out", "--include", "sd-vae-ft-mse")
    assert result.returncode == 1 and "has no files for sd-vae-ft-mse" in result.stderr


def test_evaluation_weights_offline_check_and_verified_download(tmp_path, monkeypatch, capsys):
    """--include evaluation: the usual one-line message offline, the files reported by --check (optional unless
    asked for), and a download that only ever leaves a verified file (file:// URLs stand in for the official sites)."""
    import torch

    from evaluation import weights
    from evaluation.distributions import I3D_FILE, INCEPTION_FILE
    from evaluation.i3d import I3D
    from evaluation.inception_fid import FIDInceptionV3
    from evaluation.s3fd import S3FD
    from evaluation.syncnet import SyncNet

    out = tmp_path / "model_ckpts"
    result = run_cli("scripts/download_models.py", "--local_dir", out, "--include", "evaluation")  # HF_HUB_OFFLINE=1 in run_cli
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "could not download the evaluation weights" in result.stderr and "offline: HF_HUB_OFFLINE is set" in result.stderr
    assert "curl -L -o" in result.stderr and "syncnet_v2.model" in result.stderr and not (out / "evaluation").exists()

    check = run_cli("scripts/download_models.py", "--check", "--local_dir", out, "--include", "evaluation")
    assert check.returncode == 1 and any(line.startswith("evaluation/sfd_face.pth") and "MISSING" in line for line in check.stdout.splitlines())
    assert "--include evaluation" in check.stderr

    source = tmp_path / "site"
    source.mkdir()
    torch.save(SyncNet().state_dict(), source / "syncnet_v2.model")
    torch.save(S3FD().state_dict(), source / "sfd_face.pth")
    (source / "example.avi").write_bytes(b"demo")
    torch.save(FIDInceptionV3().state_dict(), source / INCEPTION_FILE)
    torch.save(I3D().state_dict(), source / I3D_FILE)
    monkeypatch.setattr(weights, "SOURCES", {name: (source / name).as_uri() for name in weights.SOURCES})
    size = (source / "sfd_face.pth").stat().st_size
    monkeypatch.setitem(weights.PUBLISHED, "sfd_face.pth", (size + 1, None))  # a known size the file does not have
    with pytest.raises(weights.WeightsError, match=r"sfd_face\.pth: downloaded file failed its check \(size .* published .*\)"):
        weights.download(weights.SOURCES["sfd_face.pth"], out / "evaluation" / "sfd_face.pth")
    assert not (out / "evaluation" / "sfd_face.pth").exists() and not list(out.rglob("*partial*"))
    monkeypatch.setitem(weights.PUBLISHED, "sfd_face.pth", (size, file_sha256(source / "sfd_face.pth")))
    # A web page instead of the file (Google Drive's warning page, say) is refused, and nothing is left behind
    (source / "page.html").write_text("<html>sign in</html>")
    with pytest.raises(weights.WeightsError, match=r"page\.html: the host answered with a web page, not the file; open the URL in a browser"):
        weights.download((source / "page.html").as_uri(), out / "evaluation" / I3D_FILE)
    assert not (out / "evaluation" / I3D_FILE).exists() and not list(out.rglob("*partial*"))
    # pytorch-fid's file name carries the first 8 hex digits of its SHA-256: another file is refused
    with pytest.raises(weights.WeightsError, match=r"pt_inception-2015-12-05-6726825d\.pth: downloaded file failed its check \(SHA-256 differs"):
        weights.download(weights.SOURCES[INCEPTION_FILE], out / "evaluation" / INCEPTION_FILE)
    monkeypatch.setitem(weights.PUBLISHED, INCEPTION_FILE, (None, file_sha256(source / INCEPTION_FILE)[:8]))
    for name, url in weights.SOURCES.items():
        weights.download(url, out / "evaluation" / name)
    assert (out / "evaluation" / "sfd_face.pth").read_bytes() == (source / "sfd_face.pth").read_bytes()

    # In this process, where the stand-in Inception file's digest is the published one: every file loads strictly.
    from scripts import download_models

    assert download_models.main(["--check", "--local_dir", str(out), "--include", "evaluation"]) == 0
    stdout = capsys.readouterr().out
    assert "all 5 files present and loadable" in stdout
    assert any(line.startswith(f"evaluation/{I3D_FILE}") and line.endswith("ok") for line in stdout.splitlines())
    check = run_cli("scripts/download_models.py", "--check", "--local_dir", out, "--include", "evaluation")
    assert check.returncode == 1 and any(line.startswith(f"evaluation/{INCEPTION_FILE}") and "SHA-256 differs" in line for line in check.stdout.splitlines())
    assert any(line.startswith("evaluation/syncnet_v2.model") and line.endswith("ok") for line in check.stdout.splitlines())
    torch.save({"wrong": torch.zeros(1)}, out / "evaluation" / "syncnet_v2.model")
    check = run_cli("scripts/download_models.py", "--check", "--local_dir", out)  # default: generation parts + evaluation as optional
    row = next(line for line in check.stdout.splitlines() if line.startswith("evaluation/syncnet_v2.model"))
    assert "does not fit SyncNet" in row and check.returncode == 1
