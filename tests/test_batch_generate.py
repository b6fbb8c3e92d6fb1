"""scripts/batch_generate.py as users run it: two CPU processes under `accelerate launch` share four tiny jobs
(one of them bad, one with per-row options), giving three videos and one error row in results.csv; the same
jobs as JSON Lines then find nothing to do and say so. Manifest rows become inference.py flags the same way from
CSV and JSONL, and a manifest that cannot work stops before any job."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scripts.batch_generate as batch_generate
from helpers.cli import ROOT, SIZE, free_port, inspect_mp4, make_inputs, make_model_ckpts, run_cli, weight_flags
from app.batch import BatchError, load_jobs
from app.requests import PRESETS, GenerationRequest
from pipelines.context import num_frames_for_audio, video_length

SECONDS = 1.5
BAD_PORTRAIT_MESSAGE = "cannot open the reference image"


def frames(fps=30.0) -> int:
    return video_length(num_frames_for_audio(SECONDS, fps))


def write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows({column: row.get(column, "") for column in columns} for row in rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_results(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    inputs = make_inputs(folder, SECONDS)
    (folder / "notes.png").write_text("not a photo\n")
    out = folder / "videos"
    jobs = [  # the values as a JSONL manifest holds them; the CSV gets their text
        {"job": "driven", "reference_image": str(inputs["image"]), "audio": str(inputs["audio"]), "kps_path": str(inputs["kps"]),
         "output": str(out / "driven.mp4")},
        {"job": "slow_and_frugal", "reference_image": str(inputs["image"]), "audio": str(inputs["audio"]), "output": str(out / "slow.mp4"),
         "fps": 15, "save_gpu_memory": True},
        {"job": "bad", "reference_image": str(folder / "notes.png"), "audio": str(inputs["audio"]), "output": str(out / "bad.mp4")},
        {"job": "still", "reference_image": str(inputs["image"]), "audio": str(inputs["audio"]), "output": str(out / "still.mp4"),
         "retarget_strategy": "fix_face"},
    ]
    csv_jobs = [{column: str(value).lower() if isinstance(value, bool) else value for column, value in job.items()} for job in jobs]
    return dict(
        folder=folder, out=out, ckpts=make_model_ckpts(folder / "model_ckpts"), inputs=inputs,
        csv=write_csv(folder / "jobs.csv", csv_jobs), jsonl=write_jsonl(folder / "jobs.jsonl", jobs),
    )


def common_flags(setup) -> list[str]:
    return ["--image_width", str(SIZE), "--image_height", str(SIZE), "--num_inference_steps", "1", *map(str, weight_flags(setup["ckpts"]))]


@pytest.fixture(scope="module")
def first_run(setup):
    """The CSV manifest over two CPU processes. `accelerate launch --cpu` would start a single process whatever
    --num_processes says; --multi_gpu starts them through torchrun, on CPUs here."""
    accelerate = Path(sys.executable).with_name("accelerate")
    launch = [
        str(accelerate), "launch", "--multi_gpu", "--main_process_port", str(free_port()), "--num_processes", "2", "--num_machines", "1", "--num_cpu_threads_per_process", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "scripts/batch_generate.py", "--manifest", str(setup["csv"]), *common_flags(setup),
    ]
    result = subprocess.run(launch, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_make_three_videos_and_record_the_bad_job(setup, first_run):
    assert "4 job(s)" in first_run.stderr and "to run on 2 process(es)" in first_run.stderr
    assert "process 1 of 2" in first_run.stderr and "process 2 of 2" in first_run.stderr  # both took a share
    assert "Traceback" not in first_run.stderr

    expected = {"driven.mp4": frames(), "slow.mp4": frames(fps=15), "still.mp4": frames()}  # slow_and_frugal: its fps column
    assert sorted(path.name for path in setup["out"].iterdir() if not path.name.startswith(".")) == sorted(expected)
    for name, count in expected.items():
        video = inspect_mp4(setup["out"] / name)
        assert video["num_frames"] == count and video["size"] == (SIZE, SIZE) and video["audio_codec"] == "aac"

    rows = read_results(setup["folder"] / "results.csv")
    assert list(rows[0]) == ["job", "status", "seconds", "frames", "message"]
    assert [(row["job"], row["status"], row["frames"]) for row in rows] == [
        ("driven", "done", str(frames())), ("slow_and_frugal", "done", str(frames(fps=15))), ("bad", "failed", ""), ("still", "done", str(frames()))]
    assert BAD_PORTRAIT_MESSAGE in rows[2]["message"] and "notes.png" in rows[2]["message"]
    assert all(float(row["seconds"]) > 0 for row in rows if row["status"] == "done")

    table = first_run.stdout
    assert "done         3" in table and "failed       1" in table and "total        4" in table
    assert f"failed: bad: {setup['folder'] / 'notes.png'}: {BAD_PORTRAIT_MESSAGE}" in table
    assert "generated 3 video(s)" in table


def test_a_second_run_does_nothing_and_says_so(setup, first_run):
    """The same jobs as JSON Lines, one process: every video exists, so none is made again; results.csv keeps them."""
    videos = {path: path.stat().st_mtime_ns for path in setup["out"].glob("*.mp4")}
    before = read_results(setup["folder"] / "results.csv")
    result = run_cli("scripts/batch_generate.py", "--manifest", setup["jsonl"], *common_flags(setup))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 job(s)" in result.stderr and "3 done before, 1 to run" in result.stderr
    assert "nothing generated: 3 video(s) already exist, 1 job(s) failed" in result.stdout
    assert "skipped      3" in result.stdout and "done         0" in result.stdout
    assert {path: path.stat().st_mtime_ns for path in setup["out"].glob("*.mp4")} == videos
    after = read_results(setup["folder"] / "results.csv")
    assert [(row["job"], row["status"], row["frames"]) for row in after] == [(row["job"], row["status"], row["frames"]) for row in before]
    assert after[0]["seconds"] == before[0]["seconds"]  # the row of the run that made the video


def test_csv_and_jsonl_rows_become_the_same_requests(setup, tmp_path):
    defaults = GenerationRequest()
    csv_jobs, jsonl_jobs = load_jobs(setup["csv"], defaults, {}), load_jobs(setup["jsonl"], defaults, {})
    assert [job.request for job in csv_jobs] == [job.request for job in jsonl_jobs]
    assert csv_jobs[1].request.fps == 15.0 and csv_jobs[1].request.save_gpu_memory

    # A setting of two values: a JSON list, or the values separated by spaces in a CSV; a switch set false stays off.
    base = {"reference_image": "face.png", "audio": "speech.wav", "output": "out.mp4"}
    from_csv = load_jobs(write_csv(tmp_path / "two.csv", [dict(base, guidance_interval="0 0.6", save_gpu_memory="no")]), defaults, {})[0]
    from_json = load_jobs(write_jsonl(tmp_path / "two.jsonl", [dict(base, guidance_interval=[0, 0.6], save_gpu_memory=False)]), defaults, {})[0]
    assert from_csv.request.guidance_interval == from_json.request.guidance_interval == (0.0, 0.6)
    assert not from_csv.request.save_gpu_memory and not from_json.request.save_gpu_memory
    assert from_csv.name == "out.mp4"  # no job column: the output names the job

    # A column wins over the command line, switches too; integers as spreadsheets write them; a trailing empty
    # row is no job; a byte-order mark is no part of the first column; a row's preset fills what it stands for
    # even where the command line's preset had; this process's device wins over both.
    sheet = write_csv(tmp_path / "sheet.csv", [dict(base, save_gpu_memory="false", num_inference_steps="12.0", preset="balanced"), {}])
    sheet.write_bytes(b"\xef\xbb\xbf" + sheet.read_bytes())
    command_line = GenerationRequest(save_gpu_memory=True, num_inference_steps=3, preset="fast")
    (job,) = load_jobs(sheet, command_line, {"device": "cpu"})
    assert job.request.save_gpu_memory is False and job.request.num_inference_steps == 12 and job.request.device == "cpu"
    assert (job.request.scheduler, job.request.cache_interval) == (PRESETS["balanced"]["scheduler"], PRESETS["balanced"]["cache_interval"])

    # A row whose values make no request fails alone, with the request's words.
    refused = load_jobs(write_jsonl(tmp_path / "refused.jsonl", [dict(base, num_inference_steps="many"), dict(base, job="b", seed=-1)]), defaults, {})
    assert [job.request for job in refused] == [None, None]
    assert [job.problem for job in refused] == ["line 1: --num_inference_steps 'many': give an integer",
                                                "line 2: --seed -1: must be between 0 and 9223372036854775807"]


@pytest.mark.parametrize("manifest, message", [
    ("missing.csv", "manifest not found"),
    ("jobs.txt", "give a .csv or a .jsonl manifest"),
    ("typo.csv", "line 2: unknown column 'ouput'; did you mean output?"),
    ("twice.jsonl", "lines 1 and 2 both write out.mp4; give each job its own output_path"),
    ("broken.jsonl", "line 2 is not JSON"),
    ("split.jsonl", "do_multi_devices_inference splits one video across processes"),
    ("latin1.csv", "latin1.csv: not UTF-8 text; save the manifest as UTF-8"),
])
def test_a_manifest_that_cannot_work_stops_before_any_job(tmp_path, manifest, message):
    row = {"reference_image": "face.png", "audio": "speech.wav", "output": "out.mp4"}
    (tmp_path / "jobs.txt").write_text("reference_image\n")
    write_csv(tmp_path / "typo.csv", [{"reference_image": "face.png", "audio": "speech.wav", "ouput": "out.mp4"}])
    write_jsonl(tmp_path / "twice.jsonl", [row, dict(row, job="again")])
    (tmp_path / "broken.jsonl").write_text(json.dumps(row) + "\n{reference_image: face.png}\n")
    write_jsonl(tmp_path / "split.jsonl", [dict(row, do_multi_devices_inference=True)])
    (tmp_path / "latin1.csv").write_bytes("reference_image,audio,output\nJosé.png,speech.wav,out.mp4\n".encode("cp1252"))
    with pytest.raises(BatchError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_jobs(tmp_path / manifest, GenerationRequest(), {})


def test_bad_command_lines_are_one_line(setup, capsys):
    """A misspelt inference.py flag or a bad value stops the batch at once, as argparse does (status 2)."""
    for argv, message in ((["--manifest", "jobs.csv", "--num_inference_stepz", "3"], "unrecognized arguments: --num_inference_stepz 3"),
                          (["--manifest", "jobs.csv", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
                          (["--manifest", "jobs.csv", "--do_multi_devices_inference"], "--do_multi_devices_inference splits one video")):
        with pytest.raises(SystemExit) as exit_:
            batch_generate.main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    result = run_cli("scripts/batch_generate.py", "--manifest", setup["folder"] / "nowhere.csv")
    assert result.returncode == 2 and result.stderr.strip() == f"error: {setup['folder'] / 'nowhere.csv'}: manifest not found"
