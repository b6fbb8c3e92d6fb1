"""The evaluation layer: the scores talking-head papers report, computed as their official code computes them.

It may import `modules/`, `pipelines/`, `media/` and `motion/`; nothing there imports it. One network per file (`syncnet.py`,
`s3fd.py`), the protocol around them (`sync_score.py`, `tracking.py`, `ffmpeg.py`, `lip_sync.py`), KpsDis and CSIM on
insightface's buffalo_l models (`face_metrics.py`), THEval's lip metrics (`lips.py`), the weights' layout and download (`weights.py`) and the
folder-level runner (`runner.py`, behind `scripts/evaluate.py`)."""
