"""Library log lines stay off the user's terminal: with bitsandbytes installed (it brings `kernels`, which warns
in every process that imports it), a bad input is still one line on stderr."""

import importlib.util
import logging

import pytest

from helpers.cli import ROOT, make_model_ckpts, run_cli, weight_flags
from modules.quiet import quiet_library_logs


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return make_model_ckpts(tmp_path_factory.mktemp("quiet") / "model_ckpts")


def test_a_bad_input_is_one_stderr_line_with_bitsandbytes_installed(ckpts, tmp_path):
    assert importlib.util.find_spec("bitsandbytes"), "requirements-test.txt installs bitsandbytes: this test needs it"
    missing = tmp_path / "missing.wav"
    result = run_cli(
        "inference.py", "--reference_image_path", ROOT / "test_samples" / "portrait.png", "--audio_path", missing,
        "--output_path", tmp_path / "out.mp4", *weight_flags(ckpts),
    )  # run_cli sets HF_HUB_OFFLINE=1: kernels 0.19 then warns "Skipping publisher trust check ..." on import
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: audio file not found"], result.stderr


@pytest.mark.parametrize("name", ["kernels._internals.hf_hub", "bitsandbytes.backends.cpu.ops", "transformers.modeling_utils", "diffusers.models.modeling_utils"])
def test_library_warnings_are_off_and_errors_on(name, monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.delenv("DIFFUSERS_VERBOSITY", raising=False)
    quiet_library_logs()
    logger = logging.getLogger(name)
    assert not logger.isEnabledFor(logging.WARNING) and logger.isEnabledFor(logging.ERROR)
    # The project's own warnings are its own stderr lines, untouched: see test_cli_exit_status_and_silent_audio_warning.

