"""The job server's durable jobs: a table of jobs beside Huey's queue, in one database (SQLite, or PostgreSQL for
several machines), and the worker that runs them.

Huey hands each job's id to exactly one worker (its dequeue is atomic) but forgets a task once handed out, so a
worker killed mid-job would lose it. The jobs table keeps what Huey does not: each job's state, progress and the
worker running it, with a heartbeat. A worker takes a job by moving it from `queued` to `running` in one UPDATE
(a job id that comes twice runs once), and every worker puts back in the queue the running jobs whose worker died:
one on this host whose process is gone, or any whose heartbeat is older than `stale_seconds`. Generation saves its
denoising state beside the job's video (app/resume.py), so a job taken up again goes on from its last saved step
and writes the identical video."""

import json
import os
import shutil
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from huey import PostgresHuey, SqliteHuey

from modules.errors import VExpressError

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")  # kept for --keep_hours, then removed
TASK_NAME = "v_express.generate"
SCHEMA_LOCK = 0x7645787072  # PostgreSQL advisory lock key held while the tables are made
COLUMNS = ("id", "status", "phase", "step", "total", "eta", "created", "started", "finished", "heartbeat", "worker", "runs",
           "cancel", "settings", "files", "error", "summary")
SCHEMA = [
    "create table if not exists vx_jobs (id text primary key, status text not null, phase text, step integer, "
    "total integer, eta double precision, created double precision not null, started double precision, "
    "finished double precision, heartbeat double precision, worker text, runs integer not null default 0, "
    "cancel integer not null default 0, settings text not null, files text not null, error text, summary text)",
    "create index if not exists vx_jobs_status on vx_jobs (status, created)",
    "create table if not exists vx_workers (id text primary key, ready integer not null default 0, device text, "
    "heartbeat double precision not null)",
]


class JobCancelled(VExpressError):
    """The job was cancelled while it ran (DELETE /v1/jobs/{id})."""


def this_worker() -> str:
    """host:pid, which tells a worker on this host whether another one still lives."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_here(worker: str | None) -> bool:
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's: its heartbeat tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Database:
    """A DB-API connection per call to `database`: sqlite:///path or postgresql://... Statements use `?`."""

    url: str

    @property
    def postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    def connect(self):
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        connection = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
        connection.execute("pragma journal_mode=wal")
        return connection

    def execute(self, sql: str, params: tuple = ()) -> tuple[list[tuple], int]:
        """(rows, rows changed)."""
        if self.postgres:
            sql = sql.replace("?", "%s")
        connection = self.connect()
        try:
            cursor = connection.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount
        finally:
            connection.close()

    def create_tables(self) -> None:
        """Ours and Huey's. On PostgreSQL under an advisory lock: machines starting together would otherwise race
        in CREATE TABLE IF NOT EXISTS (a unique-constraint error in PostgreSQL's catalogue)."""
        connection = self.connect() if self.postgres else None
        try:
            if connection:
                connection.execute("select pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            for statement in SCHEMA:
                self.execute(statement)
            self.queue()  # Huey creates its tables as its storage opens
        finally:
            if connection:
                connection.close()  # which releases the lock

    def queue(self) -> PostgresHuey | SqliteHuey:
        """Huey on the same database: its tables beside ours."""
        if self.postgres:
            return PostgresHuey("v-express", dsn=self.url, results=False)
        return SqliteHuey("v-express", filename=str(self.sqlite_path), results=False)


def check_database_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return url
    raise VExpressError(f"--database {url}: give sqlite:///path/to/jobs.db or postgresql://user@host:port/name")


class JobStore:
    """The jobs table, the workers table, and each job's folder under `data_dir`/jobs."""

    def __init__(self, database: str, data_dir: Path):
        self.db = Database(check_database_url(database))
        self.data_dir = Path(data_dir)
        (self.data_dir / "jobs").mkdir(parents=True, exist_ok=True)
        self.db.create_tables()

    def folder(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    # Submission and queries (the API).

    def add(self, job_id: str, settings: dict, files: dict) -> None:
        self.db.execute("insert into vx_jobs (id, status, created, settings, files) values (?, 'queued', ?, ?, ?)",
                        (job_id, time.time(), json.dumps(settings), json.dumps(files)))

    def get(self, job_id: str) -> dict | None:
        rows, _ = self.db.execute(f"select {', '.join(COLUMNS)} from vx_jobs where id = ?", (job_id,))
        return self._record(rows[0]) if rows else None

    def page(self, limit: int, offset: int, status: str | None = None) -> tuple[list[dict], int]:
        where, params = ("where status = ?", (status,)) if status else ("", ())
        rows, _ = self.db.execute(f"select {', '.join(COLUMNS)} from vx_jobs {where} order by created desc, id limit ? offset ?",
                                  (*params, limit, offset))
        counted, _ = self.db.execute(f"select count(*) from vx_jobs {where}", params)
        return [self._record(row) for row in rows], counted[0][0]

    @staticmethod
    def _record(row) -> dict:
        record = dict(zip(COLUMNS, row))
        for name in ("settings", "files", "summary"):
            record[name] = json.loads(record[name]) if record[name] else None
        return record

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued job at once, ask a running one to stop; the status after, or None for no such job."""
        self.db.execute("update vx_jobs set status = 'cancelled', finished = ? where id = ? and status = 'queued'", (time.time(), job_id))
        self.db.execute("update vx_jobs set cancel = 1 where id = ? and status = 'running'", (job_id,))
        job = self.get(job_id)
        return job and job["status"]

    def remove(self, job_id: str) -> None:
        self.db.execute("delete from vx_jobs where id = ?", (job_id,))
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def ready_workers(self, within_seconds: float) -> int:
        rows, _ = self.db.execute("select count(*) from vx_workers where ready = 1 and heartbeat > ?", (time.time() - within_seconds,))
        return rows[0][0]

    # The worker's side.

    def claim(self, job_id: str, worker: str) -> bool:
        """queued -> running for `worker`; False when the job is not queued (taken, cancelled, removed)."""
        now = time.time()
        _, changed = self.db.execute(
            "update vx_jobs set status = 'running', worker = ?, runs = runs + 1, started = coalesce(started, ?), heartbeat = ?, "
            "phase = 'starting' where id = ? and status = 'queued'", (worker, now, now, job_id))
        return changed == 1

    def progress(self, job_id: str, phase: str, step: int | None, total: int | None, eta: float | None) -> bool:
        """Record progress and beat; True when the job was asked to stop."""
        self.db.execute("update vx_jobs set phase = ?, step = ?, total = ?, eta = ?, heartbeat = ? where id = ? and status = 'running'",
                        (phase, step, total, eta, time.time(), job_id))
        rows, _ = self.db.execute("select cancel from vx_jobs where id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def finish(self, job_id: str, status: str, error: str | None = None, summary: dict | None = None) -> None:
        self.db.execute("update vx_jobs set status = ?, error = ?, summary = ?, finished = ?, phase = null, eta = null where id = ?",
                        (status, error, json.dumps(summary) if summary else None, time.time(), job_id))

    def beat(self, worker: str, jobs: list[str], ready: bool, device: str) -> None:
        now = time.time()
        _, changed = self.db.execute("update vx_workers set ready = ?, device = ?, heartbeat = ? where id = ?", (int(ready), device, now, worker))
        if not changed:
            self.db.execute("insert into vx_workers (id, ready, device, heartbeat) values (?, ?, ?, ?)", (worker, int(ready), device, now))
        for job_id in jobs:
            self.db.execute("update vx_jobs set heartbeat = ? where id = ? and worker = ? and status = 'running'", (now, job_id, worker))

    def orphans(self, stale_seconds: float) -> list[str]:
        """Running jobs whose worker is gone, moved back to queued (one UPDATE each, so one worker requeues each)."""
        rows, _ = self.db.execute("select id, worker, heartbeat from vx_jobs where status = 'running'")
        requeued = []
        for job_id, worker, heartbeat in rows:
            if _alive_here(worker) and (heartbeat or 0) > time.time() - stale_seconds:
                continue
            _, changed = self.db.execute("update vx_jobs set status = 'queued', phase = null, cancel = 0 "
                                         "where id = ? and status = 'running' and worker = ?", (job_id, worker))
            if changed:
                requeued.append(job_id)
        return requeued

    def queued_before(self, seconds_ago: float) -> list[str]:
        rows, _ = self.db.execute("select id from vx_jobs where status = 'queued' and created < ?", (time.time() - seconds_ago,))
        return [job_id for (job_id,) in rows]

    def expire(self, keep_seconds: float) -> list[str]:
        """Remove finished jobs (rows and files) older than `keep_seconds`."""
        rows, _ = self.db.execute(f"select id from vx_jobs where status in {FINISHED} and finished < ?", (time.time() - keep_seconds,))
        for (job_id,) in rows:
            self.remove(job_id)
        self.db.execute("delete from vx_workers where heartbeat < ?", (time.time() - max(keep_seconds, 86400),))
        return [job_id for (job_id,) in rows]
