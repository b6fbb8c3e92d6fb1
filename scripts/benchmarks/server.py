"""The job server (scripts/serve.py) on tiny networks: its overhead beyond generation, and jobs per hour.

Overhead: jobs submitted one after another to one worker; each job's latency (from the POST to the GET that first
sees it done, polled every 20 ms) minus the generation's own seconds (the worker's clock, from taking the job to
its video written). Throughput: --jobs jobs submitted at once to each of --workers_counts worker processes."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.benchmarks.common import ROOT, write_cli_inputs, write_random_checkpoints

POLL_SECONDS = 0.02


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(ckpts: Path, data_dir: Path, workers: int):
    import httpx

    from pipelines.loading import ModelPaths

    port = _free_port()
    weights = [arg for name, path in vars(ModelPaths.under(ckpts)).items() for arg in (f"--{name}", str(path))]
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(port), "--workers", str(workers),
                                "--data_dir", str(data_dir), *weights], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1"), cwd=ROOT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").json().get("workers", 0) >= workers:
                return process, url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not become ready in 300 s")


def _submit(url: str, inputs: dict, settings: dict) -> str:
    import httpx

    with open(inputs["portrait"], "rb") as portrait, open(inputs["audio"], "rb") as audio, open(inputs["kps"], "rb") as kps:
        response = httpx.post(f"{url}/v1/jobs", files={"portrait": ("face.png", portrait), "audio": ("speech.wav", audio), "kps": ("kps.npy", kps)},
                              data={"settings": json.dumps(settings)}, timeout=60)
    response.raise_for_status()
    return response.json()["id"]


def _wait_done(url: str, job_ids: list) -> dict:
    """{job id: (the time it was first seen done, its record)}."""
    import httpx

    done = {}
    while len(done) < len(job_ids):
        for job_id in job_ids:
            if job_id not in done:
                record = httpx.get(f"{url}/v1/jobs/{job_id}").json()
                if record["status"] in ("done", "failed", "cancelled"):
                    if record["status"] != "done":
                        raise RuntimeError(f"job {job_id}: {record['status']}: {record['error']}")
                    done[job_id] = (time.perf_counter(), record)
        time.sleep(POLL_SECONDS)
    return done


def run(args) -> dict:
    report = dict(report="server", jobs=args.jobs, frames=args.frames, steps=args.steps, size=args.size)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ckpts = write_random_checkpoints(folder / "ckpts", args.size)
        flags = write_cli_inputs(folder, args.width, args.height, args.frames)
        inputs = dict(portrait=flags[1], audio=flags[3], kps=flags[5])
        settings = dict(image_width=args.width, image_height=args.height, num_inference_steps=args.steps,
                        context_frames=args.context_frames, context_overlap=args.context_overlap, no_provenance=True)

        process, url = _serve(ckpts, folder / "overhead", 1)
        try:
            rows = []
            for _ in range(args.jobs):
                submitted = time.perf_counter()
                job_id = _submit(url, inputs, settings)
                (seen, record), = _wait_done(url, [job_id]).values()
                rows.append(dict(latency=seen - submitted, generation=record["summary"]["seconds"]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            process.terminate()
            process.wait()
        overheads = [row["latency"] - row["generation"] for row in rows]
        report["overhead_seconds_per_job"] = dict(mean=round(sum(overheads) / len(overheads), 3), max=round(max(overheads), 3),
                                                  generation_mean=round(sum(r["generation"] for r in rows) / len(rows), 3))

        report["throughput"] = {}
        for workers in args.workers_counts:
            process, url = _serve(ckpts, folder / f"throughput{workers}", workers)
            try:
                started = time.perf_counter()
                job_ids = [_submit(url, inputs, settings) for _ in range(args.jobs)]
                done = _wait_done(url, job_ids)
                seconds = max(seen for seen, _ in done.values()) - started
            finally:
                process.terminate()
                process.wait()
            report["throughput"][workers] = dict(seconds=round(seconds, 2), jobs_per_hour=round(args.jobs / seconds * 3600))
            print(json.dumps({workers: report["throughput"][workers]}), file=sys.stderr, flush=True)
    return report
