"""The job server as tests use it: scripts/serve.py started as a real process group on a free port, and a throwaway
PostgreSQL cluster made with Debian's initdb and pg_ctl."""

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from helpers.cli import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JobServer:
    """`python scripts/serve.py *args` in its own session (so kill -9 takes its workers with it, as a crash would)."""

    def __init__(self, *args, log: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve.py"), "--port", str(self.port), *map(str, args)],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=environment, cwd=ROOT, start_new_session=True)

    def wait(self, path: str = "/readyz", timeout: float = 180.0, workers: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}: {Path(self.log.name).read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(self.url + path, timeout=5)
                if response.status_code == 200 and response.json().get("workers", workers) >= workers:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.url}{path} not ready after {timeout} s: {Path(self.log.name).read_text()[-3000:]}")

    def group_pids(self) -> set[int]:
        pids = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.getpgid(int(entry.name)) == self.process.pid:
                        pids.add(int(entry.name))
        return pids

    def kill(self) -> None:
        """kill -9 of the server and its workers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.log.close()


def postgres_binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@contextlib.contextmanager
def throwaway_postgres():
    """A PostgreSQL cluster in a temporary folder, on a free port, trusting local connections; yields its URL. As
    root it runs as Debian's postgres user (PostgreSQL refuses root), in a folder of its own outside pytest's (which
    only root may enter)."""
    binaries = postgres_binaries()
    user = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="vx-postgres-"))
    if user:
        shutil.chown(folder, user)
    data, port = folder / "data", free_port()
    run = lambda *command: subprocess.run([str(binaries / command[0]), *map(str, command[1:])], check=True, user=user,  # noqa: E731
                                          capture_output=True, text=True, timeout=120)
    run("initdb", "-D", data, "-U", "vx", "--auth=trust", "-E", "UTF8")
    run("pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://vx@127.0.0.1:{port}/postgres"
    finally:
        run("pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
