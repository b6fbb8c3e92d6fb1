"""V-Express as a job server: submit over HTTP, follow the job, fetch the MP4. Jobs survive restarts.

    pip install -r requirements-server.txt
    python scripts/serve.py                                   # http://127.0.0.1:8000/docs
    python scripts/serve.py --workers 4                       # one worker process per GPU
    python scripts/serve.py --database postgresql://vx@db/vx --data_dir /shared/vx   # each of several machines

The API (this process) checks uploads and queues them; --workers processes each load the networks once and run
one job at a time. With the default SQLite database nothing else is started. Several machines share a PostgreSQL
database and a --data_dir on a shared file system; a job whose worker dies is taken up by another.
"""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.requests import script_parser, split_command_line  # noqa: E402

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
INSTALL_HINT = "error: the job server needs FastAPI, uvicorn and Huey, which the CLI does not install: pip install -r requirements-server.txt"


def build_parser():
    parser = script_parser(__doc__, per_video_flags=False, passed_on="the weights and the device, and every job's defaults")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only; another needs --token)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--data_dir", default="outputs/server", help="uploads and videos, a folder per job (shared between machines)")
    parser.add_argument("--database", default=None, help="sqlite:///path/jobs.db (default: jobs.db in --data_dir) or postgresql://user@host:port/name")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine, one per GPU (0: the API alone)")
    parser.add_argument("--token", default=os.environ.get("VEXPRESS_TOKEN"), help="bearer token every /v1 request must carry (default $VEXPRESS_TOKEN)")
    parser.add_argument("--max_upload_mb", type=float, default=200, help="largest request body, in MiB (413 above it)")
    parser.add_argument("--keep_hours", type=float, default=24, help="finished jobs and their files are removed after this")
    parser.add_argument("--stale_seconds", type=float, default=60, help="a running job whose worker has not been heard from for this long is taken up by another")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a worker process, started by the server
    return parser


def worker_command(argv: list[str], index: int) -> tuple[list[str], dict]:
    environment = dict(os.environ, TQDM_DISABLE="1")  # a line per job in the server's log, not progress bars
    if index is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        environment["CUDA_VISIBLE_DEVICES"] = str(index)  # one GPU per worker (ignored where there is none)
    return [sys.executable, str(Path(__file__).resolve()), *argv, "--worker"], environment


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, defaults = split_command_line(parser, argv, per_video_flags=False)
    for name in ("workers", "max_upload_mb", "keep_hours", "stale_seconds"):
        if getattr(args, name) < (0 if name == "workers" else 1e-9):
            parser.error(f"--{name} {getattr(args, name):g}: give a {'number of at least 0' if name == 'workers' else 'positive number'}")
    try:
        import uvicorn

        from app.jobs import JobStore
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    from modules.errors import VExpressError

    try:
        store = JobStore(args.database or f"sqlite:///{Path(args.data_dir).resolve() / 'jobs.db'}", Path(args.data_dir))
    except VExpressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the database server is not there, or refuses us
        print(f"error: --database {args.database}: cannot open it ({str(error).strip().splitlines()[0]})", file=sys.stderr)
        return 2
    if args.worker:
        from app.job_worker import JobWorker

        JobWorker(store, defaults, stale_seconds=args.stale_seconds, keep_seconds=args.keep_hours * 3600).serve()
        return 0
    if args.host not in LOCAL_HOSTS and not args.token:
        print(f"error: --host {args.host} lets other machines in; give a --token (or set VEXPRESS_TOKEN) that clients send as "
              "Authorization: Bearer <token>", file=sys.stderr)
        return 2
    from app.server import ServerConfig, create_app

    missing = defaults.weights.missing()
    if missing:
        print(f"error: {missing[0]}; download the weights with: python scripts/download_models.py", file=sys.stderr)
        return 2
    many = args.workers > 1
    workers = []
    for index in range(args.workers):
        command, environment = worker_command(argv, index if many else None)
        workers.append(subprocess.Popen(command, env=environment))
    app = create_app(ServerConfig(store, defaults, token=args.token, max_upload_bytes=int(args.max_upload_mb * 2**20)))
    print(f"serving on http://{args.host}:{args.port} (API docs at /docs), {args.workers} worker(s), jobs in {store.data_dir}", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
