"""The GPU report (scripts/benchmark_gpu.py) is ready for a lent device: run here on the CPU at reduced size, it writes every
figure it promises (speed is not asserted: it is measured by running the benchmark, not by tests)."""

import json

from pipelines.context import video_length
from scripts.benchmark_gpu import main as gpu_main
from scripts.benchmark_inference import main


def test_gpu_report_runs_at_reduced_size_and_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_main(["--size", "tiny", "--device", "cpu", "--width", "32", "--height", "32", "--context_frames", "8",
                     "--e2e_seconds", "1", "--e2e_steps", "2", "--memory_seconds", "0.5", "1", "--audio_seconds", "1",
                     "--decode_batch_sizes", "1", "2", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report  # printed and written alike
    sections = ["environment", "build", "unet_fp16", "unet_bf16", "best_levers", "precision", "precision_by_network_fp16",
                "precision_by_network_bf16", "decoding", "filter_and_audio", "presets", "end_to_end", "memory", "derived"]
    assert [name for name in report if name != "elapsed_seconds"] == sections
    assert not [name for name in sections if "error" in report[name] or "skipped" in report[name]]
    for dtype in ("fp16", "bf16"):
        assert report[f"unet_{dtype}"]["seconds_per_window"]["eager"] > 0
    assert report["unet_fp16"]["tflop_per_window_call"] > 0
    # fp16 and bf16 against fp32 on the same random weights and noise: close, and finite everywhere.
    assert report["precision"]["nan_or_inf"] == [] and 0 < report["precision"]["relative_error_vs_strict_fp32"]["fp16"] < 0.02
    assert set(report["decoding"]["seconds_per_frame"]) == {f"{v} batch {b}" for v in ("Upsample2D", "PhaseUpsample2D") for b in (1, 2)}
    assert report["presets"]["published"]["unet_calls"] > report["presets"]["balanced"]["unet_calls"] > report["presets"]["fast"]["unet_calls"]
    assert report["end_to_end"]["frames"] == video_length(30, 8, 4) and report["end_to_end"]["steps"] == 2  # 1 s, whole windows
    assert [row["save_gpu_memory"] for row in report["memory"]["runs"]] == [False, False, True, True]
    assert {"published_31s_example_estimate_seconds", "gpu_seconds_per_video_second_end_to_end"} <= set(report["derived"])


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
