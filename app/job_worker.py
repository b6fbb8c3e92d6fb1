"""One job-server worker process: the networks loaded once, then Huey's consumer handing it one job at a time, and
a heartbeat thread that also puts back the jobs of dead workers and removes expired ones (app/jobs.py)."""

import logging
import sys
import threading
import time

from app.generation import VideoGenerator
from app.jobs import TASK_NAME, JobCancelled, JobStore, this_worker
from app.requests import GenerationRequest
from modules.errors import VExpressError, first_line

VIDEO_NAME = "video.mp4"


def job_request(defaults: GenerationRequest, job: dict, folder) -> GenerationRequest:
    """The job's request: the server's defaults, the job's settings, its files in its folder."""
    files = {name: str(folder / file_name) for name, file_name in job["files"].items()}
    return defaults.replace(**job["settings"], **files, output_path=str(folder / VIDEO_NAME))


def job_queue(store: JobStore, run=None):
    """(Huey on the store's database, the task that queues a job id). `run(job_id)` runs a job in a worker; the API
    only queues, so it gives none."""
    queue = store.db.queue()

    @queue.task(name=TASK_NAME)
    def generate(job_id: str) -> None:
        if run is None:
            raise RuntimeError("the API process runs no jobs")
        run(job_id)

    return queue, generate


class JobWorker:
    def __init__(self, store: JobStore, defaults: GenerationRequest, stale_seconds: float = 60.0, keep_seconds: float = 86400.0,
                 heartbeat_seconds: float = 2.0):
        self.store, self.defaults = store, defaults
        self.stale_seconds, self.keep_seconds, self.heartbeat_seconds = stale_seconds, keep_seconds, heartbeat_seconds
        self.name = this_worker()
        self.running: set[str] = set()
        self.ready = False
        self.queue, self.enqueue = job_queue(store, self.run_job)
        self.generator = None

    def say(self, message: str) -> None:
        print(f"[worker {self.name}] {message}", file=sys.stderr, flush=True)

    def serve(self) -> None:
        """Load the networks, then run jobs until the process is stopped."""
        logging.getLogger("huey").setLevel(logging.WARNING)
        threading.Thread(target=self._beat_forever, daemon=True).start()
        self.generator = VideoGenerator(self.defaults, report=lambda message: None)
        clock = time.perf_counter()
        self.generator.pipeline  # noqa: B018  (loaded before the first job, so that /readyz means ready)
        self.ready = True
        self.say(f"networks loaded in {time.perf_counter() - clock:.1f} s on {self.generator.device}; taking jobs")
        self._housekeeping()
        consumer = self.queue.create_consumer(workers=1, worker_type="thread", periodic=False,
                                              initial_delay=0.05, backoff=1.2, max_delay=0.25)
        consumer.run()

    def _beat_forever(self) -> None:
        while True:
            try:
                self.store.beat(self.name, sorted(self.running), self.ready, str(self.generator.device) if self.generator else "")
                if self.ready:
                    self._housekeeping()
            except Exception as error:  # a database that is away for a moment: beat again later
                self.say(f"heartbeat failed: {first_line(error)}")
            time.sleep(self.heartbeat_seconds)

    def _housekeeping(self) -> None:
        for job_id in self.store.orphans(self.stale_seconds):
            self.say(f"job {job_id}: its worker stopped; queued again (it goes on from its last saved step)")
            self.enqueue(job_id)
        # A job recorded but never handed to Huey (the API stopped between the two): queued now. One queued twice
        # still runs once, since taking it is one atomic update.
        waiting = {task.args[0] for task in self.queue.pending() if task.args}
        for job_id in self.store.queued_before(self.stale_seconds):
            if job_id not in waiting:
                self.enqueue(job_id)
        self.store.expire(self.keep_seconds)

    def run_job(self, job_id: str) -> None:
        if not self.store.claim(job_id, self.name):
            return  # cancelled, removed, or taken by another worker
        self.running.add(job_id)
        started, rate = time.monotonic(), {}
        try:
            job = self.store.get(job_id)
            request = job_request(self.defaults, job, self.store.folder(job_id))

            def progress(phase, step, total):
                eta = None
                if phase == "denoising" and step is not None:
                    rate.setdefault("first", (step, time.monotonic()))
                    first_step, first_time = rate["first"]
                    if step > first_step:
                        eta = (time.monotonic() - first_time) / (step - first_step) * (total - step)
                if self.store.progress(job_id, phase, step, total, eta):
                    raise JobCancelled("cancelled")

            report = self.generator.generate(request, progress=progress)
            lines = [line.replace(str(report.output_path), f"/v1/jobs/{job_id}/video") for line in report.summary()]  # the API's path, not the server's
            summary = dict(lines=lines, frames=report.frames_written, fps=report.fps, seconds_of_audio=report.duration,
                           size=list(report.size), seconds=round(time.monotonic() - started, 3),
                           timings={k: round(v, 3) if isinstance(v, float) else v for k, v in report.timings.items()},
                           resumed_at_step=report.resumed_at_step)
            self.store.finish(job_id, "done", summary=summary)
            self.say(f"job {job_id}: done, {report.frames_written} frames in {summary['seconds']:.1f} s")
        except JobCancelled:
            self.store.finish(job_id, "cancelled")
            (self.store.folder(job_id) / VIDEO_NAME).unlink(missing_ok=True)
            self.say(f"job {job_id}: cancelled")
        except Exception as error:  # a job's failure is its own: the worker takes the next
            message = first_line(error) if isinstance(error, VExpressError) else f"{type(error).__name__}: {first_line(error)}"
            self.store.finish(job_id, "failed", error=message)
            self.say(f"job {job_id}: failed: {message}")
        finally:
            self.running.discard(job_id)
