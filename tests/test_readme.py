"""README's two commands exist, and CI runs README's test command verbatim."""

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
