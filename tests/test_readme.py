"""README's two commands exist and install the pinned versions (constraints.txt), and CI runs README's test command
verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(label):
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- {label} -->")
    return next(line.strip() for line in lines[start + 1:] if line.strip() and not line.startswith("```"))


def test_ci_runs_the_readme_test_command():
    command = readme_command("test command")
    assert "pytest" in command and "torch==2.13.0" in command
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_main_command_uses_shipped_samples():
    command = readme_command("main command")
    assert "inference.py" in command
    for token in command.split():
        if token.startswith("test_samples/"):
            assert (ROOT / token).is_file(), token


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_readme_commands_install_the_pinned_versions():
    for label in ("main command", "test command"):
        assert "-c constraints.txt" in readme_command(label), label
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalized(name)] = version
    # torch stays out, so that a CUDA build installed first (2.13.0+cu128) is kept.
    assert "torch" not in pins and "triton" not in pins and not any(name.startswith(("nvidia-", "cuda-")) for name in pins)
    for requirements in ROOT.glob("requirements*.txt"):
        for line in requirements.read_text().splitlines():
            found = re.match(r"([A-Za-z0-9_.-]+)", line)
            if found and not line.startswith("-r") and normalized(found[1]) != "torch":
                assert normalized(found[1]) in pins, f"{requirements.name}: {found[1]} is not in constraints.txt"
