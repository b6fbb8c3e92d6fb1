"""Score generated talking-head videos: Sync-C / Sync-D (LSE-C / LSE-D) as the official SyncNet code computes them,
KpsDis (pose control), CSIM (identity), THEval's lip metrics, and FID / FVD against the ground truth.

    python scripts/evaluate.py outputs/ --ground_truth data/test_videos --out eval/
    python scripts/evaluate.py outputs/ --kps data/kps --references data/portraits --out eval/
    python scripts/evaluate.py videos.csv --out eval/        # or .jsonl; columns video[, ground_truth, reference, kps]
    python scripts/evaluate.py --check_demo                  # the real SyncNet on the official example.avi

Writes eval/scores.csv (one row per video, and per ground-truth video), eval/summary.md and eval/summary.json
(the means, the software versions and the SHA-256 of the weights used). Exit status 1 when a video had an error
row, 2 when nothing could be scored (bad folder, manifest or weight file). Weights are read from
model_ckpts/evaluation/ (syncnet_v2.model, sfd_face.pth and FID's and FVD's below); a metric whose weights are missing is skipped with one
line saying how to get them. The protocol, and where it deviates from the official one, is in
evaluation/lip_sync.py. KpsDis (the keypoints of each generated frame against the --kps file it was driven by, or
else those of its --ground_truth video) and CSIM (ArcFace similarity to its --references portrait) use insightface's
buffalo_l models from --insightface_model_path (det_10g.onnx; w600k_r50.onnx for CSIM); see evaluation/face_metrics.py.
The lip metrics (THEval's Lip-Sync, Silent-Lip-Stability and lip dynamics, scored against each --ground_truth video too)
use buffalo_l's 2d106det.onnx landmarks and silero-vad's bundled network; see evaluation/lips.py. --no_lip_metrics
leaves them out. FID (every frame, pytorch-fid's Inception weights) and FVD (16-frame clips, VideoGPT's I3D) compare
the whole generated set with the whole --ground_truth set; their weights are also in --weights_dir, and the protocol
is in evaluation/distributions.py. --no_fid_fvd leaves them out.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", help="a folder of generated videos, or a .csv / .jsonl manifest with a `video` column")
    parser.add_argument("--out", default="evaluation_results", help="folder for scores.csv, summary.md and summary.json")
    parser.add_argument("--ground_truth", default=None, help="folder of ground-truth videos, matched by file stem")
    parser.add_argument("--references", default=None, help="folder of reference portraits, matched by file stem")
    parser.add_argument("--kps", default=None, help="folder of keypoint files (.pth) the videos were driven by, matched by file stem")
    parser.add_argument("--weights_dir", default="model_ckpts/evaluation",
                        help="folder holding syncnet_v2.model, sfd_face.pth, pt_inception-2015-12-05-6726825d.pth (FID) and i3d_pretrained_400.pt (FVD)")
    parser.add_argument("--insightface_model_path", default="model_ckpts/insightface_models",
                        help="folder holding models/buffalo_l/ (det_10g.onnx for KpsDis, w600k_r50.onnx for CSIM, 2d106det.onnx for the lip metrics)")
    parser.add_argument("--no_lip_metrics", action="store_true",
                        help="leave out Lip-Sync, Silent-Lip-Stability and lip dynamics (2d106det.onnx landmarks, silero-vad)")
    parser.add_argument("--no_fid_fvd", action="store_true", help="leave out FID and FVD (the slowest metrics on a CPU)")
    parser.add_argument("--device", default=None, help="where FID's and FVD's networks run (default: cuda when available, else cpu)")
    parser.add_argument("--check_demo", action="store_true",
                        help="score the official example.avi (put it in --weights_dir) and compare with the official README's numbers")
    return parser


def device_problem(name: str) -> str | None:
    """Why `name` cannot run the networks here (None: it can)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        return "give cpu, cuda or cuda:N"
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        return "give cpu, cuda or cuda:N"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "no CUDA GPU is visible to PyTorch here; give --device cpu"
    if device.index is not None and device.index >= count:
        return f"PyTorch sees {count} CUDA GPU(s) here (cuda:0 to cuda:{count - 1})"
    return None


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.videos is None and not args.check_demo:
        parser.error("give a folder or manifest of videos (or --check_demo)")
    import torch

    from evaluation.lip_sync import check_official_demo
    from evaluation.runner import evaluate_videos, markdown
    from modules.errors import VExpressError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device is not None and not args.no_fid_fvd:  # only FID's and FVD's networks run there
        problem = device_problem(args.device)
        if problem:
            print(f"--device {args.device}: {problem}", file=sys.stderr)
            return 2
    try:
        if args.check_demo:
            ok, line = check_official_demo(args.weights_dir)
            print(line)
            return 0 if ok else 1
        report = evaluate_videos(args.videos, args.out, args.ground_truth, args.references, args.kps, args.weights_dir,
                                 face_models_dir=args.insightface_model_path, lip_metrics=not args.no_lip_metrics,
                                 distribution_metrics=not args.no_fid_fvd, device=device)
    except VExpressError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing written; run the same command again", file=sys.stderr)
        return 130
    print(markdown(report.summary))
    return 1 if any(row["status"] == "error" for row in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
