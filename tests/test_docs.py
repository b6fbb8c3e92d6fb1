"""The guides cannot drift from the code: every command line in README.md and docs/ names a script that exists
with flags its argparse accepts; the translations carry the same commands as the English guide; and README's
generation commands run, with tiny checkpoints standing in for the weights and small files for the inputs."""

import functools
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from cli_helpers import ROOT, SIZE, make_inputs, make_model_ckpts, run_cli, weight_flags, write_lossless_video
from marker_detector import draw_marker

GUIDES = [ROOT / "README.md", ROOT / "docs" / "FAQ.md"]
TRANSLATIONS = {lang: [ROOT / "docs" / lang / "README.md", ROOT / "docs" / lang / "FAQ.md"] for lang in ("es", "ja", "de")}
OTHER_DOCS = [ROOT / "training_configs" / "README.md", ROOT / "model_ckpts" / "README.md"]
ALL_DOCS = GUIDES + [path for paths in TRANSLATIONS.values() for path in paths] + OTHER_DOCS


def commands(path) -> list[str]:
    """Command lines of the ```bash blocks (comments and blank lines left out; `a && b` gives both)."""
    found, in_block = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if in_block and line.strip() and not line.lstrip().startswith("#"):
            found += [part.strip() for part in line.split("&&")]
    return found


def project_script(command: str):
    """(script path, its arguments) when the command runs one of this project's scripts, else None."""
    tokens = [t for t in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S*", t)]
    for i, token in enumerate(tokens):
        if token.endswith((".py", ".sh")) and not token.startswith("-"):
            return token, tokens[i + 1:]
    return None


@functools.cache
def accepted_flags(script: str) -> set[str]:
    if script.endswith(".sh"):
        return set()
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, f"{script} --help failed: {result.stderr[-1000:]}"
    return set(re.findall(r"(?<![\w-])(--[A-Za-z0-9_]+)", result.stdout))


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_uses_real_scripts_and_flags(doc):
    checked = 0
    for command in commands(doc):
        found = project_script(command)
        if found is None:
            continue
        script, args = found
        assert (ROOT / script).is_file(), f"{doc.name}: {script} does not exist ({command})"
        flags = accepted_flags(script)
        for arg in args:
            if arg.startswith("--"):
                assert arg in flags, f"{doc.name}: {script} has no flag {arg} ({command})"
            elif arg.startswith(("test_samples/", "training_configs/", "scripts/")):
                assert (ROOT / arg).exists(), f"{doc.name}: {arg} does not exist ({command})"
        checked += 1
    assert checked or doc in OTHER_DOCS, f"{doc.name} documents no command"


@pytest.mark.parametrize("lang", TRANSLATIONS)
def test_translations_carry_the_english_commands(lang):
    for english, translated in zip(GUIDES, TRANSLATIONS[lang]):
        assert commands(translated) == commands(english), f"{translated.relative_to(ROOT)} is out of step with {english.name}"
    assert f"docs/{lang}/README.md" in (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Small files for the guide's placeholder names, and tiny checkpoints with a marker face detector."""
    folder = tmp_path_factory.mktemp("docs")
    inputs = make_inputs(folder)
    frames = np.stack([draw_marker(np.full((SIZE, SIZE, 3), 60, np.uint8), 16 + 8 * (i // 12), 32) for i in range(36)])
    video = write_lossless_video(folder / "other.mp4", frames, 24, inputs["audio"])
    names = {"face.png": inputs["image"], "speech.wav": inputs["audio"], "long_speech.wav": inputs["audio"],
             "kps.pth": inputs["kps"], "other.pth": inputs["kps"], "other.mp4": video, "talk.mp4": video,
             **{output: folder / output for output in ("out.mp4", "audio.wav", "kps_preview.png")}}
    return names, make_model_ckpts(folder / "model_ckpts")


def test_readme_commands_run_with_tiny_checkpoints(stand_ins):
    """README's generation, keypoint-extraction and preview commands, with stand-in files and tiny weights."""
    names, ckpts = stand_ins
    small = {
        "inference.py": ["--image_width", SIZE, "--image_height", SIZE, "--num_inference_steps", 2, "--device", "cpu", *weight_flags(ckpts)],
        "scripts/extract_kps_sequence_and_audio.py": ["--width", SIZE, "--height", SIZE, "--insightface_model_path", ckpts / "insightface_models"],
        "scripts/preview_kps.py": ["--image_width", SIZE, "--image_height", SIZE],
    }
    runs = [c for c in commands(ROOT / "README.md") if c.startswith("python ") and project_script(c)[0] in small]
    assert len(runs) >= 10
    for command in runs:
        script, args = project_script(command)
        outputs = [names[a] for a in args if a in ("out.mp4", "audio.wav", "kps_preview.png")]
        for output in outputs:
            output.unlink(missing_ok=True)
        result = run_cli(script, *[names.get(a, a) for a in args], *small[script])
        assert result.returncode == 0 and all(o.is_file() for o in outputs), f"{command}\n{result.stderr[-2000:]}"
