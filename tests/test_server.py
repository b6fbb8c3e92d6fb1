"""The job server (scripts/serve.py) as clients use it: a real server process on a free port, real HTTP (httpx),
tiny networks in the published layout, SQLite by default and a real PostgreSQL cluster for several machines."""

import json
import shutil
import time

import httpx
import numpy as np
import pytest

from helpers.cli import SIZE, inspect_mp4, make_inputs, make_model_ckpts, run_cli, weight_flags
from helpers.server import JobServer, postgres_binaries, throwaway_postgres

from app.jobs import JobStore

SETTINGS = {"image_width": SIZE, "image_height": SIZE, "resume_interval": 0}  # a state saved after every step


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    return dict(folder=folder, ckpts=make_model_ckpts(folder / "model_ckpts"), inputs=make_inputs(folder))


def submit(server, setup, steps: int, **extra):
    inputs = setup["inputs"]
    with open(inputs["image"], "rb") as image, open(inputs["audio"], "rb") as audio, open(inputs["kps"], "rb") as kps:
        files = {"portrait": ("my photo.png", image), "audio": ("../../speech.wav", audio), "kps": ("kps.pth", kps)}
        response = httpx.post(f"{server.url}/v1/jobs", files=files, data={"settings": json.dumps(dict(SETTINGS, num_inference_steps=steps, **extra))},
                              timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job(server, job_id) -> dict:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(server, job_id, until, timeout=300.0) -> tuple[dict, list]:
    """Poll until `until(job)`; (the job, every (status, phase, step) seen)."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = job(server, job_id)
        seen.append((record["status"], record["phase"], record["step"]))
        if until(record):
            return record, seen
        assert record["status"] not in ("failed", "cancelled"), record
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} after {timeout} s: {seen[-5:]}")


def frames(server, job_id) -> np.ndarray:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}/video", timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4", response.text
    path = server.data_dir / f"{job_id}.downloaded.mp4"
    path.write_bytes(response.content)
    return inspect_mp4(path)["frames"]


def start(setup, name, *args, workers=1, wait=True):
    server = JobServer(*weight_flags(setup["ckpts"]), "--workers", workers, *args, log=setup["folder"] / f"{name}.log")
    server.data_dir = setup["folder"]
    if wait:
        server.wait(workers=workers)
    return server


def test_two_jobs_a_bad_upload_progress_listing_and_removal(setup):
    data = setup["folder"] / "data_one"
    server = start(setup, "one", "--data_dir", data, "--max_upload_mb", 1)
    try:
        first, second = submit(server, setup, 8), submit(server, setup, 4)

        # A bad upload and bad settings: a 4xx with the CLI's one line, and nothing stored.
        with open(setup["inputs"]["audio"], "rb") as audio:
            bad = httpx.post(f"{server.url}/v1/jobs", files={"portrait": ("face.png", b"not an image"), "audio": ("a.wav", audio)})
        assert bad.status_code == 422
        assert bad.json()["error"] == ("portrait: cannot open the reference image (cannot identify image file 'portrait'); "
                                       "use a JPG, PNG, BMP or WebP photo")
        with open(setup["inputs"]["image"], "rb") as image, open(setup["inputs"]["audio"], "rb") as audio:
            files = {"portrait": ("p.png", image), "audio": ("a.wav", audio)}
            for settings, status, message in (('{"num_inference_steps": "many"}', 422, "--num_inference_steps 'many': give an integer"),
                                              ('{"output_path": "/etc/x.mp4"}', 400, "settings: output_path is the server's (its command line sets it); leave it out"),
                                              ('{"kps_path": "/etc/passwd"}', 400, "settings: kps_path is a file; upload it as the 'kps' form field"),
                                              ("[1, 2]", 400, 'settings: give a JSON object such as {"num_inference_steps": 25}')):
                image.seek(0), audio.seek(0)
                response = httpx.post(f"{server.url}/v1/jobs", files=files, data={"settings": settings})
                assert (response.status_code, response.json()["error"]) == (status, message)
        too_large = httpx.post(f"{server.url}/v1/jobs", files={"portrait": ("p.png", b"0" * 2**21), "audio": ("a.wav", b"0")})
        assert too_large.status_code == 413 and "limit of 1 MiB" in too_large.json()["error"]
        assert not any((data / "uploads").iterdir())
        assert sorted(path.name for path in (data / "jobs").iterdir()) == sorted([first, second])

        # Progress that moves, then the video; the job's files under the server's names only.
        done, seen = wait_for(server, first, lambda record: record["status"] == "done")
        steps = sorted({step for status, phase, step in seen if phase == "denoising" and step is not None})
        assert len(steps) >= 2 and steps[-1] <= 8, seen
        assert done["summary"]["frames"] == len(frames(server, first)) and done["runs"] == 1
        assert done["summary"]["lines"][0].startswith(f"wrote /v1/jobs/{first}/video: ")  # the API's path, not the server's
        assert sorted(path.name for path in (data / "jobs" / first).iterdir()) == ["audio.wav", "kps.pth", "portrait.png", "video.mp4"]
        wait_for(server, second, lambda record: record["status"] == "done")

        listing = httpx.get(f"{server.url}/v1/jobs", params={"limit": 1}).json()
        assert (listing["total"], len(listing["jobs"]), listing["next_offset"]) == (2, 1, 1)
        assert listing["jobs"][0]["id"] == second  # newest first
        assert httpx.get(f"{server.url}/v1/jobs", params={"status": "done", "offset": 1}).json()["jobs"][0]["id"] == first

        assert httpx.delete(f"{server.url}/v1/jobs/{first}").json() == {"id": first, "status": "removed"}
        assert httpx.get(f"{server.url}/v1/jobs/{first}").status_code == 404 and not (data / "jobs" / first).exists()
        docs = httpx.get(f"{server.url}/openapi.json").json()
        assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/video", "/healthz", "/readyz"} <= set(docs["paths"])
        assert httpx.get(f"{server.url}/docs").status_code == 200
    finally:
        server.stop()


def test_a_server_killed_mid_job_finishes_it_after_a_restart_with_the_identical_video(setup):
    data = setup["folder"] / "data_kill"
    server = start(setup, "kill", "--data_dir", data)
    killed = submit(server, setup, 30)
    wait_for(server, killed, lambda record: record["phase"] == "denoising" and (record["step"] or 0) >= 3)
    server.kill()

    server = start(setup, "kill_again", "--data_dir", data)
    try:
        resumed, _ = wait_for(server, killed, lambda record: record["status"] == "done")
        assert resumed["runs"] == 2 and resumed["summary"]["resumed_at_step"] >= 3, resumed
        uninterrupted = submit(server, setup, 30)
        wait_for(server, uninterrupted, lambda record: record["status"] == "done")
        assert np.array_equal(frames(server, killed), frames(server, uninterrupted))
    finally:
        server.stop()


def test_two_workers_share_the_queue_never_run_a_job_twice_cancel_and_expire(setup):
    data = setup["folder"] / "data_two"
    server = start(setup, "two", "--data_dir", data, "--keep_hours", 0.002, "--stale_seconds", 1, workers=2)  # kept 7.2 s
    try:
        ids = [submit(server, setup, 3) for _ in range(4)]
        records = [wait_for(server, job_id, lambda record: record["status"] == "done")[0] for job_id in ids]
        assert [record["runs"] for record in records] == [1, 1, 1, 1]
        assert len({record["worker"] for record in records}) == 2, records

        # A job the API recorded but stopped before handing to the queue: a worker queues it.
        store, folder = JobStore(f"sqlite:///{data / 'jobs.db'}", data), data / "jobs" / ids[0]
        stranded = store.new_id()
        shutil.copytree(folder, store.folder(stranded), ignore=shutil.ignore_patterns("video.mp4"))
        store.add(stranded, store.get(ids[0])["settings"], store.get(ids[0])["files"])
        assert wait_for(server, stranded, lambda record: record["status"] == "done")[0]["runs"] == 1
        ids.append(stranded)

        long = submit(server, setup, 500)
        wait_for(server, long, lambda record: record["phase"] == "denoising" and (record["step"] or 0) >= 1)
        assert httpx.delete(f"{server.url}/v1/jobs/{long}").json() == {"id": long, "status": "cancelling"}
        deadline = time.monotonic() + 60
        while job(server, long)["status"] != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job(server, long)["status"] == "cancelled" and job(server, long)["step"] < 500
        assert httpx.get(f"{server.url}/v1/jobs/{long}/video").status_code == 409

        deadline = time.monotonic() + 30  # finished jobs are removed once --keep_hours have passed
        while httpx.get(f"{server.url}/v1/jobs", timeout=30).json()["total"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert httpx.get(f"{server.url}/v1/jobs/{ids[0]}").status_code == 404
        assert not any((setup["folder"] / "data_two" / "jobs").iterdir())
    finally:
        server.stop()


@pytest.mark.skipif(postgres_binaries() is None, reason="PostgreSQL's initdb is not installed (.ci/run installs it)")
def test_several_machines_on_postgresql_take_up_a_dead_machines_job(setup):
    with throwaway_postgres() as database:
        shared = ("--database", database, "--data_dir", setup["folder"] / "data_shared", "--stale_seconds", 3)
        machines = [start(setup, f"machine_{i}", *shared, wait=False) for i in range(2)]
        try:
            for machine in machines:
                machine.wait(workers=2)
            ids = [submit(machines[i % 2], setup, 3) for i in range(4)]  # through both machines' APIs
            records = [wait_for(machines[0], job_id, lambda record: record["status"] == "done")[0] for job_id in ids]
            assert [record["runs"] for record in records] == [1, 1, 1, 1]
            assert len({record["worker"] for record in records}) == 2, records  # both machines' workers took jobs

            job_id = submit(machines[0], setup, 30)
            running, _ = wait_for(machines[0], job_id, lambda record: record["phase"] == "denoising" and (record["step"] or 0) >= 2)
            worker_pid = int(running["worker"].rsplit(":", 1)[1])
            dead = next(machine for machine in machines if worker_pid in machine.group_pids())
            alive = machines[1 - machines.index(dead)]
            dead.kill()
            done, _ = wait_for(alive, job_id, lambda record: record["status"] == "done")
            assert done["runs"] == 2 and done["worker"] != running["worker"] and done["summary"]["resumed_at_step"] >= 2, done
        finally:
            for machine in machines:
                machine.stop()


def test_a_token_is_required_off_localhost_and_checked(setup):
    refused = run_cli("scripts/serve.py", *weight_flags(setup["ckpts"]), "--host", "0.0.0.0", env={"VEXPRESS_TOKEN": ""})
    assert refused.returncode == 2 and "--host 0.0.0.0 lets other machines in; give a --token" in refused.stderr
    server = start(setup, "token", "--host", "0.0.0.0", "--token", "s3cret", "--data_dir", setup["folder"] / "data_token", workers=0, wait=False)
    try:
        server.wait("/healthz", workers=0)
        assert httpx.get(f"{server.url}/v1/jobs").status_code == 401
        assert httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer s3cret"}).json()["total"] == 0
        assert httpx.get(f"{server.url}/readyz").status_code == 503  # no worker: not ready
    finally:
        server.stop()
