"""The guides cannot drift from the code: every command line in README.md and docs/ names a script that exists,
with flags its argparse accepts and sample files that exist; the translations carry the same commands as the
English guide. (The documented generations themselves run in test_inference_cli.py.)"""

import contextlib
import functools
import io
import re
import runpy
import shlex
import sys

import pytest

from cli_helpers import ROOT

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
    """The flags the script's `--help` lists, run in this process (the imports are shared, so it is quick)."""
    if script.endswith(".sh"):
        return set()
    help_text, argv = io.StringIO(), sys.argv
    try:
        sys.argv = [str(ROOT / script), "--help"]
        with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / script), run_name="__main__")
    finally:
        sys.argv = argv
    assert exit_.value.code in (0, None), f"{script} --help failed"
    return set(re.findall(r"(?<![\w-])(--[A-Za-z0-9_]+)", help_text.getvalue()))


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
