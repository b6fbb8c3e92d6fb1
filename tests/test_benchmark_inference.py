"""The GPU benchmark's report is ready for a lent device: run here on the CPU at reduced size, it writes every
figure it promises (speed is not asserted: it is measured by running the benchmark, not by tests)."""

import json

from scripts.benchmark_inference import main


def test_gpu_report_runs_at_reduced_size_and_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--report", "gpu", "--device", "cpu", "--size", "tiny", "--width", "32", "--height", "32",
                 "--context_frames", "8", "--no_compile", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report  # printed and written alike
    assert (report["report"], report["device"], report["window_frames"]) == ("gpu", "cpu", 8)
    assert set(report["unet_call_seconds"]) == {"fp16 eager", "bf16 eager"}
    assert all(seconds > 0 for seconds in report["unet_call_seconds"].values())
    assert set(report["accelerator_seconds_per_video_second_at_25_steps"]) == set(report["unet_call_seconds"])
    # fp16 against fp32 on the same random weights and noise: close, and finite everywhere.
    assert report["nan_or_inf"] is False and 0 < report["fp16_vs_fp32_video_relative_error"] < 0.02
    # Whether the regrouped up-samplers (on for the CPU only) pay on the device, in fp16.
    assert [row["network"] for row in report["upsampling"]] == ["vae decoder", "denoising unet"]
    assert all(row["relative_difference"] < 0.01 for row in report["upsampling"])


def test_upsampling_report_compares_both_up_samplers_in_both_networks(tmp_path, capsys):
    out = tmp_path / "upsampling.json"
    assert main(["--report", "upsampling", "--device", "cpu", "--size", "tiny", "--width", "32", "--height", "32",
                 "--context_frames", "4", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert [row["network"] for row in report["rows"]] == ["vae decoder", "denoising unet"]
    for row in report["rows"]:
        assert row["up_samplers"] == 3 and set(row["seconds"]) == {"Upsample2D", "PhaseUpsample2D"}
        assert all(seconds > 0 for seconds in row["seconds"].values())
        assert 0 < row["relative_difference"] < 1e-5  # the same sums regrouped: float32 rounding only
