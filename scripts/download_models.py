"""Download the published V-Express weights from the Hugging Face Hub and lay them out as model_ckpts/.

    python scripts/download_models.py                                  # everything, into ./model_ckpts
    python scripts/download_models.py --include v-express insightface_models
    python scripts/download_models.py --check                          # only verify ./model_ckpts
    python scripts/download_models.py --repo_id ./V-Express            # from a git clone of the Hub repository
    python scripts/download_models.py --include evaluation             # scripts/evaluate.py's networks

Parts: v-express (the five networks), stable-diffusion-v1-5 (UNet config), sd-vae-ft-mse (VAE),
wav2vec2-base-960h (audio encoder), insightface_models (face detector, and the ArcFace model CSIM uses), and,
only when asked for, evaluation (syncnet_v2.model, sfd_face.pth and the demo video example.avi from the
official SyncNet site, pt_inception-2015-12-05-6726825d.pth from pytorch-fid's release and i3d_pretrained_400.pt
from VideoGPT's Google Drive, into model_ckpts/evaluation/, checked against their published size and SHA-256
where known). Interrupted Hub downloads resume where they stopped when run again. Files reach their final place only
once complete; the check at the end says what is missing, if anything (--check lists the evaluation's files
too, as optional).
"""

import argparse
import shutil
import sys
from pathlib import Path

from huggingface_hub import constants as hf_constants

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import weights as evaluation_weights  # noqa: E402
from modules.checkpoints import atomic_path  # noqa: E402
from modules.errors import first_line  # noqa: E402
from pipelines.loading import PARTS, ModelPaths  # noqa: E402
from scripts.model_check import check_model_folder, format_table  # noqa: E402

HUB_REPO = "tk93/V-Express"
STAGING = ".download"  # inside --local_dir: huggingface_hub's resumable download lands here first


def hub_patterns(part: str) -> list[str]:
    """Where a part lives in the Hub repository: its model_ckpts/ folder, and the five .bin files at its root."""
    return ["*.bin"] if part == "v-express" else [f"model_ckpts/{part}/*"]


def source_files(source: Path, part: str) -> dict[Path, str]:
    """Files of `part` in a Hub-layout folder -> their path relative to model_ckpts/."""
    if part == "v-express":
        names = [paths[0].name for _, _, paths in ModelPaths().required_files([part])]
        candidates = {source / name: f"v-express/{name}" for name in names}
        candidates.update({source / "model_ckpts" / "v-express" / name: f"v-express/{name}" for name in names if not (source / name).is_file()})
        return {path: target for path, target in candidates.items() if path.is_file()}
    folder = source / "model_ckpts" / part
    return {path: str(path.relative_to(source / "model_ckpts")) for path in sorted(folder.rglob("*")) if path.is_file()} if folder.is_dir() else {}


def lay_out(files: dict[Path, str], local_dir: Path, move: bool) -> None:
    """Each file to local_dir/target through a temporary name, so a target only ever holds a complete file.
    Required files go last: an interrupted lay-out never looks complete to the check."""
    required = {str(p.relative_to(local_dir)) for _, _, paths in ModelPaths.under(local_dir).required_files() for p in paths}
    for path, target in sorted(files.items(), key=lambda item: item[1] in required):
        with atomic_path(local_dir / target) as partial:
            (shutil.move if move else shutil.copyfile)(path, partial)


def download(repo_id: str, parts: list[str], local_dir: Path) -> tuple[Path, bool]:
    """-> (a Hub-layout folder holding the parts, whether its files may be moved rather than copied)."""
    if Path(repo_id).is_dir():  # a local clone of the Hub repository
        return Path(repo_id), False
    from huggingface_hub import snapshot_download

    staging = local_dir / STAGING
    patterns = [pattern for part in parts for pattern in hub_patterns(part)]
    # TensorFlow and Flax copies of wav2vec2, if the repository has them, are never read.
    snapshot_download(repo_id, local_dir=staging, allow_patterns=patterns, ignore_patterns=["*.h5", "*.msgpack", "*.ot"])
    return staging, True


def manual_instructions(repo_id: str, parts: list[str], local_dir: Path) -> str:
    return (
        f"get them by hand from https://huggingface.co/{repo_id}/tree/main (or `git clone https://huggingface.co/{repo_id}` and "
        f"run this script with --repo_id pointing at the clone): put its model_ckpts/<part>/ folders in {local_dir}/ and its five "
        f".bin files in {local_dir}/v-express/ (parts: {', '.join(parts)})"
    )


def fetch_evaluation(local_dir: Path, say) -> bool:
    """The evaluation's files into local_dir/evaluation/ (those present and passing their check are kept);
    False, with what is missing and how to get it by hand, when one could not be fetched."""
    folder = local_dir / evaluation_weights.PART
    for name, url in evaluation_weights.SOURCES.items():
        path = folder / name
        if path.is_file() and evaluation_weights.verify(path) == "ok":
            continue
        try:
            if hf_constants.HF_HUB_OFFLINE:  # huggingface_hub's switch, honoured for the evaluation's host too
                raise evaluation_weights.WeightsError(f"{url}: cannot download it (offline: HF_HUB_OFFLINE is set)")
            say(f"downloading {url}")
            evaluation_weights.download(url, path)
        except evaluation_weights.WeightsError as error:
            missing = [name for name in evaluation_weights.SOURCES if not (folder / name).is_file()]
            say(f"error: could not download the evaluation weights ({error})")
            say(f"missing in {folder}: {', '.join(missing) or 'nothing'}")
            say(f"get them by hand: {'; '.join(f'curl -L -o {folder / n} {u}' for n, u in evaluation_weights.SOURCES.items() if n in missing)}")
            return False
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_dir", default="./model_ckpts", help="where to lay the weights out (default ./model_ckpts)")
    parser.add_argument("--repo_id", default=HUB_REPO, help=f"Hub repository (default {HUB_REPO}) or a local clone of it")
    choices = [*PARTS, evaluation_weights.PART]
    parser.add_argument("--include", nargs="+", choices=choices, metavar="PART",
                        help=f"only these parts: {', '.join(choices)} (default: all but evaluation)")
    parser.add_argument("--check", action="store_true", help="only verify the files in --local_dir and print a table")
    args = parser.parse_args(argv)
    local_dir, parts = Path(args.local_dir), args.include or list(PARTS)
    hub_parts = [part for part in parts if part in PARTS]
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731

    if not args.check and evaluation_weights.PART in parts and not fetch_evaluation(local_dir, say):
        return 1
    if not args.check and hub_parts:
        parts = hub_parts  # the Hub's parts, below; the evaluation's are in place
        try:
            source, move = download(args.repo_id, parts, local_dir)
        except Exception as error:  # offline, unreachable, unknown repository: say what is missing and how to get it
            detail = first_line(error)
            missing = [row.file for row in check_model_folder(local_dir, parts, load=False) if not row.present]
            say(f"error: could not download from {args.repo_id} ({detail})")
            say(f"missing in {local_dir}: {', '.join(missing) or 'nothing'}")
            say(manual_instructions(args.repo_id, parts, local_dir))
            return 1
        for part in parts:
            files = source_files(source, part)
            if not files:
                say(f"error: {source} has no files for {part} ({PARTS[part]}); {manual_instructions(args.repo_id, [part], local_dir)}")
                return 1
            lay_out(files, local_dir, move)
        if move:
            shutil.rmtree(source, ignore_errors=True)

    rows = check_model_folder(local_dir, args.include)
    print(format_table(rows))
    bad = [row for row in rows if not row.ok]
    if bad:
        bad_parts = sorted({row.part for row in bad})
        say(f"{len(bad)} of {len(rows)} files missing or not loadable; get them with: "
            f"python scripts/download_models.py --local_dir {local_dir} --include {' '.join(bad_parts)}")
        return 1
    present = [row for row in rows if row.present]
    print(f"all {len(present)} files present and loadable in {local_dir}")
    optional = [row.file for row in rows if not row.present]
    if optional:
        print(f"not present (optional, for scripts/evaluate.py): {', '.join(optional)}; get them with: "
              f"python scripts/download_models.py --local_dir {local_dir} --include {evaluation_weights.PART}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
