"""Scores for a folder (or manifest) of videos: one CSV row per video, a summary in Markdown and JSON.

Each metric whose weights are missing is skipped with one line naming the file and how to get it; a video that
cannot be read becomes an error row and the others go on."""

import csv
import io
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from evaluation import distributions, face_metrics, lip_sync, lips
from evaluation.ffmpeg import ffmpeg_version
from evaluation.errors import EvaluationError, MissingWeightsError
from evaluation.frechet import frechet_distance
from evaluation.weights import WEIGHTS_DIR
from modules.checkpoints import atomic_path, file_sha256
from modules.errors import VExpressError, one_line

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MANIFEST_SUFFIXES = (".csv", ".jsonl")
ROW_COLUMNS = [
    "video", "kind", "path", "status", "sync_c", "sync_d", "av_offset", "tracks", "kps_dis", "kps_missing", "csim",
    *lips.COLUMNS, *(f"{name}_score" for name in lips.SCORED), "seconds", "message",
]


@dataclass
class VideoItem:
    """A generated video and, matched by file stem or given by its manifest row, what it is compared with."""

    name: str
    path: Path
    ground_truth: Path | None = None
    reference: Path | None = None
    kps: Path | None = None


@dataclass
class Report:
    rows: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _by_stem(folder: str | Path | None, option: str) -> dict[str, Path]:
    if folder is None:
        return {}
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{option} {folder}: not a folder")
    return {path.stem: path for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")}


def _manifest_rows(path: Path) -> list[dict]:
    """{column: value} per row of a .csv (header row) or .jsonl manifest; a `video` column is required."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"{path}: cannot read the manifest ({one_line(error)})") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise EvaluationError(f"{path}: line {number} is not JSON ({error.msg}); give one object per line") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("video"):
            raise EvaluationError(f"{path}: row {number} has no `video` value; give one column/key `video` per row")
    return rows


def collect_videos(source: str | Path, ground_truth=None, references=None, kps=None) -> list[VideoItem]:
    """The videos of a folder (sorted) or a manifest (its order; columns `video`, and optionally
    `ground_truth`, `reference`, `kps`, relative to the manifest's folder). The folders `ground_truth`,
    `references` and `kps` are matched by file stem where a row names none."""
    source = Path(source)
    matches = {
        "ground_truth": _by_stem(ground_truth, "--ground_truth"), "reference": _by_stem(references, "--references"),
        "kps": _by_stem(kps, "--kps"),
    }
    if source.is_dir():
        rows = [{"video": str(path)} for path in sorted(source.iterdir()) if path.suffix.lower() in VIDEO_SUFFIXES]
        base = source
    elif source.is_file() and source.suffix.lower() in MANIFEST_SUFFIXES:
        rows, base = _manifest_rows(source), source.parent
    else:
        raise EvaluationError(f"{source}: give a folder of videos or a .csv / .jsonl manifest")
    if not rows:
        raise EvaluationError(f"{source}: no videos ({', '.join(VIDEO_SUFFIXES)}) found")
    items = []
    for row in rows:
        path = base / row["video"]
        extras = {key: (base / row[key]) if row.get(key) else matches[key].get(path.stem) for key in matches}
        items.append(VideoItem(path.stem, path, **extras))
    return items


def _row(item_name: str, kind: str, path: Path, scores: list | None, seconds: float, status: str = "ok", message: str = "") -> dict:
    """A CSV row: Sync-C / Sync-D are the means over the video's face tracks (`scores` None: not computed)."""
    row = {"video": item_name, "kind": kind, "path": str(path), "status": status, "seconds": f"{seconds:.1f}", "message": message}
    if scores is None:
        return row
    row["tracks"] = len(scores)
    if scores:
        row.update(sync_c=float(np.mean([s.confidence for s in scores])), sync_d=float(np.mean([s.min_dist for s in scores])),
                   av_offset=int(np.median([s.offset for s in scores])))
    elif status == "ok":
        row.update(status="no_track", message="no face track (needs over 100 frames at 25 fps of a face over 100 px)")
    return row


def versions() -> dict[str, str]:
    """The decoders, libraries and Python the scores were computed with."""
    import cv2
    import torch

    found = {"ffmpeg": ffmpeg_version(), "opencv": cv2.__version__, "torch": torch.__version__, "numpy": np.__version__,
             "python": platform.python_version()}
    for package in ("python_speech_features", "scipy", "imageio-ffmpeg", "insightface", "onnxruntime", "silero-vad", "librosa"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _distribution_scores(features: dict[tuple[str, str], list[np.ndarray]], loaded: tuple[str, ...], skipped: list[str]) -> dict:
    """FID over all frames and FVD over all clips of the `loaded` metrics: the generated set against the ground-truth
    set (what is missing, too little or fails is one skip line)."""
    scores = {}
    for metric, unit in (("fid", "frames"), ("fvd", "clips")):
        if metric not in loaded:
            continue
        generated, truth = features.get(("generated", metric)), features.get(("ground_truth", metric))
        if generated is None or truth is None:
            skipped.append(f"{metric.upper()}: no {'generated' if generated is None else 'ground-truth'} video could be read")
            continue
        generated, truth = np.concatenate(generated), np.concatenate(truth)
        scores[f"{metric}_{unit}"] = [len(generated), len(truth)]
        try:
            scores[metric] = frechet_distance(generated, truth)
        except Exception as error:  # noqa: BLE001 -- SciPy's own errors too: the report is still written
            skipped.append(f"{metric.upper()}: {one_line(error)}")
    return scores


def _summarise(rows: list[dict], track_scores: dict[str, list], weights: dict, skipped: list[str], distribution: dict | None = None) -> dict:
    """Sync-C / Sync-D over every face track of every scored video of a kind (as the field's
    all_scores.txt averages), and the video counts."""
    metrics = {}
    for kind in dict.fromkeys(row["kind"] for row in rows):
        scores = track_scores.get(kind, [])
        kind_rows = [row for row in rows if row["kind"] == kind]
        metrics[kind] = {
            "videos": len(kind_rows), "scored": sum(row["status"] == "ok" for row in kind_rows),
            "errors": sum(row["status"] == "error" for row in kind_rows), "tracks": len(scores),
            "sync_c": float(np.mean([s.confidence for s in scores])) if scores else None,
            "sync_d": float(np.mean([s.min_dist for s in scores])) if scores else None,
        }
        for key in ("kps_dis", "kps_missing", "csim", *lips.COLUMNS):  # means over the videos that have the score
            values = [row[key] for row in kind_rows if row.get(key) not in (None, "")]
            metrics[kind][key] = float(np.mean(values)) if values else None
    lips.summary_scores(metrics)  # each kind's lip means against the ground-truth videos' (THEval's GT row)
    return {"metrics": metrics, "distribution": distribution or {}, "skipped": skipped, "weights": weights, "versions": versions(),
            "protocol": lip_sync.__doc__.strip(), "face_protocol": face_metrics.__doc__.strip(), "lip_protocol": lips.__doc__.strip(),
            "distribution_protocol": distributions.__doc__.strip()}


def markdown(summary: dict) -> str:
    lines = ["| videos | count | scored | errors | face tracks | Sync-C ↑ | Sync-D ↓ | KpsDis ↓ | no face | CSIM ↑ |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, m in summary["metrics"].items():
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {kind} | {m['videos']} | {m['scored']} | {m['errors']} | {m['tracks']} | {fmt(m['sync_c'])} | {fmt(m['sync_d'])} "
                     f"| {fmt(m['kps_dis'])} | {fmt(m['kps_missing'])} | {fmt(m['csim'])} |")
    lines += ["", "Sync-C / Sync-D: means over every face track (the official protocol; see summary.json). KpsDis (pixels, at the "
              "video's size; 'no face': the fraction of frames without one) and CSIM: means over the videos that have them "
              "(evaluation/face_metrics.py).", ""]
    lines += _lip_table(summary["metrics"])
    lines += _distribution_table(summary.get("distribution", {}))
    lines += [*[f"- skipped: {line}" for line in summary["skipped"]], ""] if summary["skipped"] else []
    lines += ["| weights | SHA-256 |", "|---|---|", *[f"| {name} | `{digest}` |" for name, digest in summary["weights"].items()], ""]
    lines += ["| software | version |", "|---|---|", *[f"| {name} | {value} |" for name, value in summary["versions"].items()]]
    return "\n".join(lines) + "\n"


def _lip_table(metrics: dict) -> list[str]:
    """The lip metrics' Markdown table (raw means, then the scores against the ground truth), when any was computed."""
    if not any(m.get(name) is not None for m in metrics.values() for name in lips.COLUMNS):
        return []
    lines = ["| videos | Lip-Sync ↓ | Silent-Lip-Stability ↓ | silent lip opening | lip dynamics | Lip-Sync vs GT ↑ "
             "| Silent-Lip-Stability vs GT ↑ | lip dynamics vs GT ↑ |", "|---|---|---|---|---|---|---|---|"]
    for kind, m in metrics.items():
        cells = [lips.fmt(m.get(name)) for name in (*lips.COLUMNS, *(f"{name}_score" for name in lips.SCORED))]
        lines.append(f"| {kind} | {' | '.join(cells)} |")
    return lines + ["", "Lip metrics (THEval's definitions, evaluation/lips.py): means over the videos that have them; "
                    "'vs GT' is 1 - |mean - GT mean| / |GT mean| (1 is the ground truth's own value).", ""]


def _distribution_table(scores: dict) -> list[str]:
    if "fid" not in scores and "fvd" not in scores:
        return []
    cell = lambda metric, unit: "–" if metric not in scores else f"{scores[metric]:.2f} ({scores[f'{metric}_{unit}'][0]} vs {scores[f'{metric}_{unit}'][1]} {unit})"  # noqa: E731
    return ["| generated vs ground truth | FID ↓ | FVD ↓ |", "|---|---|---|", f"| all videos | {cell('fid', 'frames')} | {cell('fvd', 'clips')} |", "",
            f"FID: every frame, pytorch-fid's Inception; FVD: consecutive 16-frame clips, VideoGPT's I3D; on {scores['device']} "
            "(evaluation/distributions.py).", ""]


def write_report(report: Report, out_dir: str | Path) -> None:
    """out_dir/scores.csv, summary.json and summary.md, each written whole or not at all."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "scores.csv") as partial, open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, ROW_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(report.rows)
    with atomic_path(out_dir / "summary.json") as partial:
        partial.write_text(json.dumps(report.summary, indent=2) + "\n", encoding="utf-8")
    with atomic_path(out_dir / "summary.md") as partial:
        partial.write_text(markdown(report.summary), encoding="utf-8")


def _load_face_models(face_models_dir, weights: dict, skipped: list, say) -> tuple[face_metrics.FaceModels | None, bool]:
    """(the buffalo_l models, whether KpsDis is computed): KpsDis needs the detector, CSIM also ArcFace; each
    metric whose weights are missing or unreadable is skipped with one line."""
    try:
        models = face_metrics.FaceModels(face_models_dir)
    except VExpressError as error:
        for metric in ("KpsDis", "CSIM"):
            skipped.append(f"{metric}: {error}")
            say(f"skipping {metric}: {error}")
        return None, False
    weights[face_metrics.DETECTOR_FILE] = file_sha256(models.detector_path)
    try:
        models.load_identity()
        weights[face_metrics.ARCFACE_FILE] = file_sha256(models.arcface_path)
    except VExpressError as error:
        skipped.append(f"CSIM: {error}")
        say(f"skipping CSIM: {error}")
    return models, True


def _load_lip_models(face_models_dir, weights: dict, skipped: list, say) -> lips.LipModels | None:
    """buffalo_l's detector and 2d106det.onnx, and silero-vad; None, with one skip line, when one is missing."""
    try:
        models = lips.LipModels(face_models_dir)
    except VExpressError as error:
        skipped.append(f"lip metrics: {error}")
        say(f"skipping lip metrics: {error}")
        return None
    for name, path in models.weights().items():
        weights[name] = file_sha256(path)
    return models


def _load_distribution_networks(weights_dir, items: list[VideoItem], device: str, weights: dict, skipped: list, say):
    """The FID and FVD networks; each one whose weights are missing is skipped with one line, and both when no
    video has a ground truth to compare with."""
    if not any(item.ground_truth is not None for item in items):
        skipped.append("FID/FVD: they compare the generated set with the ground-truth set; give --ground_truth")
        say(f"skipping {skipped[-1]}")
        return None
    loaded = {}
    for metric, name in distributions.WEIGHT_FILES.items():
        try:
            loaded[metric] = distributions.load_network(metric, weights_dir)
            weights[name] = file_sha256(Path(weights_dir) / name)
        except VExpressError as error:
            skipped.append(f"{metric.upper()}: {error}")
            say(f"skipping {metric.upper()}: {error}")
    return distributions.DistributionNetworks(loaded.get("fid"), loaded.get("fvd"), device) if loaded else None


def evaluate_videos(
    source: str | Path, out_dir: str | Path, ground_truth=None, references=None, kps=None,
    weights_dir: str | Path = WEIGHTS_DIR, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    face_models_dir: str | Path = face_metrics.FACE_MODELS_DIR, lip_metrics: bool = True, distribution_metrics: bool = True,
    device: str = "cpu",
) -> Report:
    """Score every video of `source` (and its ground truth, when given); write and return the report.
    `face_models_dir` is the folder holding models/buffalo_l/ (det_10g.onnx for KpsDis, w600k_r50.onnx for CSIM,
    2d106det.onnx for the lip metrics, which `lip_metrics=False` leaves out). FID and FVD (`distribution_metrics`)
    compare all generated videos with all ground-truth videos, their networks on `device`."""
    items = collect_videos(source, ground_truth, references, kps)
    skipped, weights = [], {}
    try:
        networks = lip_sync.load_networks(weights_dir)
        for name in (lip_sync.SYNCNET_FILE, lip_sync.S3FD_FILE):
            weights[name] = file_sha256(Path(weights_dir) / name)
    except MissingWeightsError as error:
        networks = None
        skipped.append(f"Sync-C/Sync-D: {error}")
        say(f"skipping Sync-C/Sync-D: {error}")
    faces, with_kps = _load_face_models(face_models_dir, weights, skipped, say)
    lip_models = _load_lip_models(face_models_dir, weights, skipped, say) if lip_metrics else None
    networks_of_sets = _load_distribution_networks(weights_dir, items, device, weights, skipped, say) if distribution_metrics else None
    set_features, in_a_set = {}, set()  # (kind, "fid" | "fvd") -> [features of each video]; (kind, path) already counted
    jobs = [(item, "generated", item.path) for item in items]
    jobs += [(item, "ground_truth", item.ground_truth) for item in items if item.ground_truth is not None]
    rows, track_scores, lip_scores = [], {}, {}
    for item, kind, path in tqdm(jobs, desc="videos", unit="video"):
        name, start = item.name, time.perf_counter()
        if networks is None and faces is None and lip_models is None and networks_of_sets is None:
            rows.append({"video": name, "kind": kind, "path": str(path), "status": "skipped", "message": "no metric to compute"})
            continue
        try:
            if not Path(path).is_file():
                raise EvaluationError(f"{path}: not found")
            scores = lip_sync.score_video(networks, path) if networks is not None else None
            face_scores = None
            if faces is not None:  # KpsDis for generated videos only: a ground-truth video is its own target
                face_scores = face_metrics.score_video(
                    faces, path, kps_file=item.kps, ground_truth=item.ground_truth, reference=item.reference,
                    kps=with_kps and kind == "generated")
            lip = lips.score_video(lip_models, path) if lip_models is not None else None
            frame_features, clip_features = networks_of_sets.video_features(path) if networks_of_sets is not None else (None, None)
        except Exception as error:  # noqa: BLE001 -- a bad video is one error row; the others go on
            rows.append(_row(name, kind, path, None, time.perf_counter() - start, "error", one_line(error)))
            continue
        if scores is not None:
            track_scores.setdefault(kind, []).extend(scores)
        if (kind, Path(path).resolve()) not in in_a_set:  # a ground truth shared by several generated videos counts once
            in_a_set.add((kind, Path(path).resolve()))
            for metric, found in (("fid", frame_features), ("fvd", clip_features)):
                if found is not None:
                    set_features.setdefault((kind, metric), []).append(found)
        row = _row(name, kind, path, scores, time.perf_counter() - start)
        if face_scores is not None:
            row.update(face_scores.columns())
            row["message"] = "; ".join(filter(None, [row["message"], *face_scores.notes]))
        if lip is not None:
            row.update(lip.columns())
            row["message"] = "; ".join(filter(None, [row["message"], *lip.notes]))
            lip_scores[id(item), kind] = (lip, row)
        rows.append(row)
    for item in items:  # each generated video's lip metrics against its own ground-truth video's
        if (id(item), "generated") in lip_scores and (id(item), "ground_truth") in lip_scores:
            (generated, row), (truth, _) = lip_scores[id(item), "generated"], lip_scores[id(item), "ground_truth"]
            row.update(generated.against(truth))
    distribution = {} if networks_of_sets is None else {"device": str(networks_of_sets.device), **_distribution_scores(set_features, networks_of_sets.metrics, skipped)}
    report = Report(rows, _summarise(rows, track_scores, weights, skipped, distribution))
    write_report(report, out_dir)
    return report
