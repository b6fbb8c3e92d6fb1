"""The job server's HTTP API (FastAPI): submit a job, follow it, fetch its video, cancel or remove it. Jobs are run
by worker processes (app/job_worker.py) that share the database (app/jobs.py); this process only checks uploads
and queues them."""

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from app.generation import check_request
from app.job_worker import VIDEO_NAME, job_queue, job_request
from app.jobs import STATUSES, JobStore
from app.requests import PER_VIDEO_FLAGS, GenerationRequest, inference_flags
from modules.errors import VExpressError

# Uploads keep only a known suffix (the keypoint reader goes by it); the client's file name is never used.
SUFFIXES = {
    "portrait": (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"),
    "audio": (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".aac", ".mp4", ".mov", ".mkv", ".webm"),
    "driving_video": (".mp4", ".mov", ".mkv", ".webm", ".avi"),
    "kps": (".pth", ".pt", ".npy", ".npz", ".json"),
}
UPLOAD_FIELDS = {"portrait": "reference_image_path", "audio": "audio_path", "driving_video": "reference_video", "kps": "kps_path"}
FORM_FIELD_OF = {field: form for form, field in UPLOAD_FIELDS.items()}
SERVER_SIDE = {"device", "gpu_id", "dtype", "test_stage", "compile", "do_multi_devices_inference", "c2pa_cert", "c2pa_key"}
COORDINATES = re.compile(r"^[\d\s.,+-]+$")


class ApiError(VExpressError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ServerConfig:
    store: JobStore
    defaults: GenerationRequest  # the command line's inference.py flags: weights, device, and each job's defaults
    token: str | None = None
    max_upload_bytes: int = 200 * 2**20
    ready_within_seconds: float = 30.0


def job_settings(text: str) -> dict:
    """The `settings` form field (a JSON object named like inference.py's flags) -> request fields; ApiError (400)."""
    try:
        given = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ApiError(400, f"settings: not JSON ({error.msg} at character {error.pos}); give an object such as "
                            '{"num_inference_steps": 25}') from None
    if not isinstance(given, dict):
        raise ApiError(400, "settings: give a JSON object such as {\"num_inference_steps\": 25}")
    flags, settings = inference_flags(), {}
    for name, value in given.items():
        field = flags.get(name.removeprefix("--"))
        if field is None:
            raise ApiError(400, f"settings: unknown setting {name!r}; settings are inference.py's flags without their dashes")
        if field in FORM_FIELD_OF:
            raise ApiError(400, f"settings: {name} is a file; upload it as the {FORM_FIELD_OF[field]!r} form field")
        if (field in PER_VIDEO_FLAGS and field != "reference_kps") or field in SERVER_SIDE or field not in GenerationRequest.__dataclass_fields__:
            raise ApiError(400, f"settings: {name} is the server's (its command line sets it); leave it out")
        if field == "reference_kps" and value is not None and not COORDINATES.match(str(value)):
            raise ApiError(400, 'settings: reference_kps: give the coordinates "x1,y1,x2,y2,x3,y3" (a file on the server cannot be named)')
        settings[field] = value
    return settings


def save_upload(upload: UploadFile, form_field: str, folder: Path) -> str:
    """Write an upload into `folder` under the field's own name; the file name kept in the job."""
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix not in SUFFIXES[form_field]:
        if form_field == "kps":
            raise ApiError(400, f"kps: give a {', '.join(SUFFIXES['kps'])} file (the upload's name ends in {suffix or 'nothing'})")
        suffix = SUFFIXES[form_field][0] if form_field != "audio" else ""  # the image and audio readers look inside
    name = f"{form_field}{suffix}"
    with open(folder / name, "wb") as file:
        shutil.copyfileobj(upload.file, file, 2**20)
    return name


class UploadLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, from Content-Length at once or while it streams."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send):
        response = JSONResponse({"error": f"the upload is over the server's limit of {self.limit / 2**20:g} MiB (--max_upload_mb)"}, 413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


class _TooLarge(Exception):
    pass


def describe(job: dict) -> dict:
    described = {name: job[name] for name in ("id", "status", "phase", "step", "total", "error", "summary", "runs", "worker")}
    described["eta_seconds"] = None if job["eta"] is None else round(job["eta"], 1)
    for name in ("created", "started", "finished"):
        described[name] = job[name] and time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job[name]))
    described["video"] = f"/v1/jobs/{job['id']}/video" if job["status"] == "done" else None
    return described


def create_app(config: ServerConfig) -> FastAPI:
    store = config.store
    _, enqueue = job_queue(store)
    app = FastAPI(title="V-Express job server", version="1",
                  description="Submit a portrait and speech, follow the job, fetch the MP4. Settings are inference.py's flags.")

    @app.exception_handler(ApiError)
    async def api_error(request, error: ApiError):
        return JSONResponse({"error": str(error)}, error.status)

    @app.middleware("http")
    async def bearer_token(request: Request, call_next):
        if config.token and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {config.token}".encode()):
                return JSONResponse({"error": "give the server's token as the header Authorization: Bearer <token>"}, 401)
        return await call_next(request)

    @app.post("/v1/jobs", status_code=202, summary="Submit a job")
    def submit(portrait: UploadFile = File(..., description="the portrait photo"),
               audio: UploadFile = File(..., description="the speech (or a video with sound)"),
               driving_video: UploadFile | None = File(None, description="optional: a driving video (its keypoints drive the head)"),
               kps: UploadFile | None = File(None, description="optional: a keypoint sequence (.pth, .npy, .npz, .json)"),
               settings: str = Form("{}", description='inference.py\'s flags without dashes, as JSON: {"num_inference_steps": 25}')):
        if driving_video is not None and kps is not None:
            raise ApiError(400, "give either driving_video or kps, not both")
        fields = job_settings(settings)
        job_id = store.new_id()
        staging = store.data_dir / "uploads" / job_id
        staging.mkdir(parents=True)
        try:
            files = {UPLOAD_FIELDS[name]: save_upload(upload, name, staging)
                     for name, upload in (("portrait", portrait), ("audio", audio), ("driving_video", driving_video), ("kps", kps))
                     if upload is not None}
            job = dict(settings=fields, files=files)
            try:
                request = job_request(config.defaults, job, staging)
                check_request(request)
            except VExpressError as error:  # the CLI's message, with the upload's field for the server's path
                message = str(error).strip().splitlines()[0]
                for name, file_name in files.items():
                    message = message.replace(str(staging / file_name), FORM_FIELD_OF[name])
                raise ApiError(422, message.replace(str(staging / VIDEO_NAME), "the job's video")) from None
            folder = store.folder(job_id)
            staging.rename(folder)
            store.add(job_id, fields, files)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        enqueue(job_id)
        return JSONResponse({"id": job_id, "status": "queued"}, 202, headers={"Location": f"/v1/jobs/{job_id}"})

    def existing(job_id: str) -> dict:
        job = store.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return job

    @app.get("/v1/jobs/{job_id}", summary="A job's status, progress and summary")
    def status(job_id: str):
        return describe(existing(job_id))

    @app.get("/v1/jobs/{job_id}/video", summary="The job's MP4", response_class=FileResponse)
    def video(job_id: str):
        job = existing(job_id)
        if job["status"] != "done":
            raise ApiError(409, f"job {job_id} is {job['status']}; its video is there once it is done")
        return FileResponse(store.folder(job_id) / VIDEO_NAME, media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a queued or running job; remove a finished one")
    def delete(job_id: str):
        job = existing(job_id)
        if job["status"] in ("queued", "running"):
            after = store.cancel(job_id)
            return {"id": job_id, "status": "cancelling" if after == "running" else after}
        store.remove(job_id)
        return {"id": job_id, "status": "removed"}

    @app.get("/v1/jobs", summary="Jobs, newest first")
    def jobs(limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0), status: Literal[STATUSES] | None = None):
        records, total = store.page(limit, offset, status)
        following = offset + limit if offset + limit < total else None
        return {"jobs": [describe(job) for job in records], "total": total, "limit": limit, "offset": offset, "next_offset": following}

    @app.get("/healthz", summary="The API answers")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="A worker has its networks loaded")
    def readyz():
        workers = store.ready_workers(config.ready_within_seconds)
        return JSONResponse({"ready": workers > 0, "workers": workers}, 200 if workers else 503)

    return UploadLimit(app, config.max_upload_bytes)

