"""The benchmarks, one module per report: `run(args) -> dict`, printed as JSON by scripts/benchmark_inference.py
(the GPU report: gpu.py, behind scripts/benchmark_gpu.py). Figures are measured here, never asserted in tests."""
