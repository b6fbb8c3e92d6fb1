"""Batch generation: a manifest with one row per video (CSV or JSON Lines, its columns named after inference.py's
flags), shared out among processes, each job skipped when its output exists, every outcome in results.csv.

A row becomes one request: the command line's request with the row's columns (so a column wins), on the process's
device."""

import csv
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from difflib import get_close_matches
from pathlib import Path

from tqdm import tqdm

from modules.checkpoints import atomic_path
from modules.errors import VExpressError, one_line

from app.generation import VideoGenerator, check_request
from app.requests import ONE_VIDEO_ON_MANY_PROCESSES, GenerationRequest, InputError, inference_flags

JOB_COLUMN = "job"  # optional: the job's name in results.csv (default: its output path)
RESULT_COLUMNS = ("job", "status", "seconds", "frames", "message")


class BatchError(VExpressError):
    """A batch that cannot start: a manifest not found, of another format, with an unknown column or two jobs on
    one output; a results file that cannot be written."""


@dataclass
class Job:
    name: str
    line: int  # in the manifest, for messages
    request: GenerationRequest | None = None  # None when the row's values make no request
    problem: str = ""  # why they do not

    @property
    def output(self) -> Path | None:
        return Path(self.request.output_path) if self.request is not None else None


@dataclass
class Outcome:
    job: str
    status: str  # done, skipped or failed
    seconds: float = 0.0
    frames: int | None = None
    message: str = ""

    def row(self) -> dict:
        return {"job": self.job, "status": self.status, "seconds": f"{self.seconds:.1f}",
                "frames": "" if self.frames is None else self.frames, "message": self.message}


def read_manifest(path) -> list[tuple[int, dict]]:
    """The manifest's rows as (line number, {column: value}); values are strings in a CSV and JSON values in a JSON
    Lines file. Empty cells and nulls are left out: the flag keeps its default."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"{path}: manifest not found")
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise BatchError(f"{path}: give a .csv or a .jsonl manifest")
    rows = []
    try:
        # utf-8-sig: spreadsheets and some editors start the file with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as file:
            if path.suffix.lower() == ".csv":
                reader = csv.DictReader(file)
                for row in reader:
                    if None in row:  # DictReader's key for the cells past the header's
                        raise BatchError(f"{path}: line {reader.line_num} has more cells than the header")
                    rows.append((reader.line_num, row))
            else:
                rows = [(number, _json_object(path, number, line)) for number, line in enumerate(file.read().splitlines(), 1) if line.strip()]
    except UnicodeDecodeError:
        raise BatchError(f"{path}: not UTF-8 text; save the manifest as UTF-8") from None
    except csv.Error as error:
        raise BatchError(f"{path}: not a readable CSV ({error})") from None
    except OSError as error:
        raise BatchError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    rows = [(number, {str(key).strip(): value.strip() if isinstance(value, str) else value
                      for key, value in row.items() if value not in ("", None)}) for number, row in rows]
    return [(number, row) for number, row in rows if row]  # a spreadsheet's trailing empty rows are no jobs


def _json_object(path: Path, number: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise BatchError(f"{path}: line {number} is not JSON ({error.msg}); give one JSON object per line") from None
    if not isinstance(row, dict):
        raise BatchError(f"{path}: line {number} is not a JSON object; give one {{\"column\": value}} object per line")
    return row


def row_values(row: dict, flags: dict) -> dict:
    """One row's columns -> request fields (a flag's alias names its field). The request takes each value as the
    row gives it: text in a CSV (a switch as true, yes or 1; two numbers separated by a space), JSON values in a
    JSON Lines file."""
    return {flags[column]: value for column, value in row.items() if column != JOB_COLUMN}


def check_columns(manifest, rows: list[tuple[int, dict]], flags: dict) -> None:
    """Every column is an inference.py flag (or `job`): a misspelt header would otherwise fail every row."""
    known = [*flags, JOB_COLUMN]
    for number, row in rows:
        for column in row:
            if column not in known:
                close = get_close_matches(column, known, n=1)
                hint = f"did you mean {close[0]}?" if close else "columns are inference.py flags without their dashes (python inference.py --help), or job"
                raise BatchError(f"{manifest}: line {number}: unknown column {column!r}; {hint}")
            if column == ONE_VIDEO_ON_MANY_PROCESSES:
                raise BatchError(f"{manifest}: line {number}: {column} splits one video across processes; "
                                 "batch generation gives each process whole videos, so leave it out")


def load_jobs(manifest, defaults: GenerationRequest, device: dict) -> list[Job]:
    """The manifest's jobs: each row's request is `defaults` (the command line's) with the row's values, on `device`
    (this process's device settings). A row whose values make no request keeps its problem, to be reported as that
    job's failure. BatchError for problems of the manifest as a whole."""
    flags = inference_flags()
    rows = read_manifest(manifest)
    check_columns(manifest, rows, flags)
    jobs = []
    for number, row in rows:
        job = Job(name=str(row.get(JOB_COLUMN, "")), line=number)
        try:
            job.request = defaults.replace(**row_values(row, flags), **device)
        except InputError as error:
            job.problem = f"line {job.line}: {error}"
        job.name = job.name or (str(job.output) if job.output else f"line {job.line}")
        jobs.append(job)
    check_unique(manifest, jobs)
    return jobs


def check_unique(manifest, jobs: list[Job]) -> None:
    """No two jobs write one file (or share a name in results.csv): two processes would race for it."""
    seen_outputs, seen_names = {}, {}
    for job in jobs:
        if job.output is not None:
            other = seen_outputs.setdefault(job.output.resolve(), job)
            if other is not job:
                raise BatchError(f"{manifest}: lines {other.line} and {job.line} both write {job.output}; give each job its own output_path")
        other = seen_names.setdefault(job.name, job)
        if other is not job:
            raise BatchError(f"{manifest}: lines {other.line} and {job.line} are both named {job.name!r}; give each job its own name")


def pending(jobs: list[Job]) -> tuple[list[Job], list[Outcome]]:
    """(the jobs to run, the skipped ones' outcomes). A job whose output exists is done: outputs appear only when
    complete, so a rerun picks up exactly what is missing (and an interrupted video resumes from its saved step)."""
    to_run, skipped = [], []
    for job in jobs:
        if job.output is not None and job.output.exists():
            skipped.append(Outcome(job.name, "skipped", message="output exists"))
        else:
            to_run.append(job)
    return to_run, skipped


def share(jobs: list, process_index: int, num_processes: int) -> list:
    """This process's jobs: every num_processes-th, so each process gets a fair mix of the manifest."""
    return jobs[process_index::num_processes]


class JobRunner:
    """Runs one job after another in this process, the networks loaded once (at the first job that gets that far)."""

    def __init__(self, say=None):
        self.say = say or (lambda message: tqdm.write(message, file=sys.stderr))
        self.generator = None
        self.current = ""

    def run(self, job: Job) -> Outcome:
        """Generate one video; a failure becomes the outcome (its one-line message), and the next job goes on."""
        started = time.perf_counter()
        self.current = job.name
        try:
            if job.request is None:
                raise InputError(job.problem)
            inputs = check_request(job.request)
            if self.generator is None:
                self.generator = VideoGenerator(job.request, report=self._note)
            report = self.generator.generate(job.request, inputs)
        except VExpressError as error:
            return self._finish(Outcome(job.name, "failed", time.perf_counter() - started, message=str(error)))
        except Exception as error:  # a bug or the device (out of memory): recorded, and the batch goes on
            self.say(traceback.format_exc())
            return self._finish(Outcome(job.name, "failed", time.perf_counter() - started, message=one_line(error)))
        return self._finish(Outcome(job.name, "done", time.perf_counter() - started, report.frames_written))

    def _note(self, message: str) -> None:
        self.say(f"{self.current}: {message}")

    def _finish(self, outcome: Outcome) -> Outcome:
        details = f"{outcome.frames} frames" if outcome.status == "done" else outcome.message
        self.say(f"{outcome.status} {outcome.job} ({outcome.seconds:.1f} s): {details}")
        return outcome


def run_share(jobs: list[Job], process_index: int = 0, num_processes: int = 1) -> list[Outcome]:
    """This process's jobs, one after another, under a progress bar."""
    runner = JobRunner()
    label = "videos" if num_processes == 1 else f"videos (process {process_index + 1} of {num_processes})"
    return [runner.run(job) for job in tqdm(jobs, desc=label, unit="video", position=process_index, disable=not jobs)]


def in_manifest_order(jobs: list[Job], outcomes: list[Outcome]) -> list[Outcome]:
    order = {job.name: index for index, job in enumerate(jobs)}
    return sorted(outcomes, key=lambda outcome: order[outcome.job])


def write_results(path, outcomes: list[Outcome]) -> None:
    """results.csv: one row per job, in manifest order. A job skipped because its video exists keeps the row of
    the run that made it, so rerunning to pick up failures keeps every video's seconds and frames."""
    path = Path(path)
    earlier = {}
    try:
        with open(path, newline="", encoding="utf-8") as file:
            earlier = {row.get("job"): row for row in csv.DictReader(file)}
    except (OSError, UnicodeDecodeError, csv.Error):  # none yet, or not one this wrote: nothing to keep
        pass
    rows = []
    for outcome in outcomes:
        before = earlier.get(outcome.job)
        keep = outcome.status == "skipped" and before is not None and before.get("status") == "done"
        rows.append({column: before.get(column, "") for column in RESULT_COLUMNS} if keep else outcome.row())
    with atomic_path(path) as partial, open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def check_results_location(path) -> None:
    """results.csv can be written where asked: found out now, not after the last video."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".write-test-"):
            pass
    except OSError as error:
        raise BatchError(f"--results {path}: cannot write there ({error.strerror or error}); give another --results") from None
    if path.is_dir():
        raise BatchError(f"--results {path}: is a folder; give a file name such as {path / 'results.csv'}")


def summary(outcomes: list[Outcome], results_path, seconds: float) -> str:
    """The table printed at the end: jobs, frames and seconds by status, the failures, and a closing line."""
    lines = [f"{'status':<8} {'jobs':>5} {'frames':>7} {'seconds':>8}"]
    for status in ("done", "skipped", "failed"):
        group = [o for o in outcomes if o.status == status]
        frames = sum(o.frames or 0 for o in group) if status == "done" else "-"
        lines.append(f"{status:<8} {len(group):>5} {frames:>7} {sum(o.seconds for o in group):>8.1f}")
    lines.append(f"{'total':<8} {len(outcomes):>5}")
    lines += [f"failed: {o.job}: {o.message}" for o in outcomes if o.status == "failed"]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "failed")}
    if counts["done"]:
        closing = f"generated {counts['done']} video(s) in {seconds:.1f} s"
    elif counts["failed"]:
        closing = f"nothing generated: {counts['skipped']} video(s) already exist, {counts['failed']} job(s) failed"
    else:
        closing = f"nothing to do: all {counts['skipped']} video(s) already exist"
    lines.append(f"{closing}; results in {results_path}")
    return "\n".join(lines)


class Processes:
    """This process among those that `accelerate launch` (or torchrun) started: its index, their number, its device
    (accelerate's PartialState), and the two times they meet (`gather`): after looking at the outputs, and at the
    end to collect the outcomes. They meet over a gloo group of their own with a long timeout: CPU collectives need
    nothing of the GPUs, and a process that finished its share may wait hours for the slowest one."""

    WAIT = timedelta(hours=24)

    def __init__(self):
        import torch
        from accelerate import PartialState

        # cpu=True is what makes accelerate see CPU processes as several (not as one process each).
        self.state = PartialState(cpu=not torch.accelerator.is_available())
        self.index, self.count, self.is_main = self.state.process_index, self.state.num_processes, self.state.is_main_process
        self.group = torch.distributed.new_group(backend="gloo", timeout=self.WAIT) if self.count > 1 else None

    def device(self) -> dict:
        """This process's device settings: one GPU each, by its index on its machine; none for a single process,
        where the command line's --device and --gpu_id hold."""
        if self.count == 1:
            return {}
        if self.state.device.type == "cuda":
            return dict(device="cuda", gpu_id=self.state.local_process_index)
        return dict(device=self.state.device.type)

    def gather(self, items: list) -> list:
        """Every process's `items`, concatenated in process order (on every process)."""
        if self.group is None:
            return items
        import torch

        parts = [None] * self.count
        torch.distributed.all_gather_object(parts, items, group=self.group)
        return [item for part in parts for item in part]

    def close(self) -> None:
        self.state.destroy_process_group()  # before exit, or torch warns of a group left open


def run_batch(manifest, results_path, defaults: GenerationRequest) -> int:
    """The whole batch on this process's share; the main process writes results.csv and prints the summary.
    0 once every job has had its turn (failures are in results.csv); 2 for a batch that cannot start."""
    processes = Processes()
    try:
        return _run_batch(processes, manifest, results_path, defaults)
    finally:
        processes.close()


def _run_batch(processes: Processes, manifest, results_path, defaults: GenerationRequest) -> int:
    started = time.perf_counter()
    jobs, to_run, skipped, problem = [], [], [], ""
    try:
        jobs = load_jobs(manifest, defaults, processes.device())
        if processes.is_main:
            check_results_location(results_path)
        to_run, skipped = pending(jobs)
    except VExpressError as error:
        problem = str(error)
    # Meeting here, every process has looked at the outputs before any writes one (so all share out the same
    # list), and all stop if one cannot start.
    problems = [found for found in processes.gather([problem]) if found]
    if problems:
        if processes.is_main:
            print(f"error: {problems[0]}", file=sys.stderr)
        return 2
    if processes.is_main:
        print(f"{len(jobs)} job(s) in {manifest}: {len(skipped)} done before, {len(to_run)} to run on {processes.count} process(es)",
              file=sys.stderr)
    outcomes = processes.gather(run_share(share(to_run, processes.index, processes.count), processes.index, processes.count))
    if processes.is_main:
        outcomes = in_manifest_order(jobs, skipped + outcomes)
        write_results(results_path, outcomes)
        print(summary(outcomes, results_path, time.perf_counter() - started))
    return 0
