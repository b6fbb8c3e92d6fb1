"""The guides cannot drift from the code: every command line in README.md and docs/ names a script that exists,
with flags its argparse accepts and sample files that exist; every English guide (README.md and docs/*.md) has its
Spanish, Japanese and German translation under docs/<lang>/ with the same name and the same code; every relative link
resolves; README.md stays an entry point. (The documented generations themselves run in test_inference_cli.py.)"""

import contextlib
import functools
import io
import re
import runpy
import shlex
import sys

import pytest

from helpers.cli import ROOT

LANGS = ("es", "ja", "de")
GUIDES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
TRANSLATIONS = {lang: [ROOT / "docs" / lang / guide.name for guide in GUIDES] for lang in LANGS}
OTHER_DOCS = [ROOT / "training_configs" / "README.md", ROOT / "model_ckpts" / "README.md"]
ALL_DOCS = GUIDES + [path for paths in TRANSLATIONS.values() for path in paths if path.is_file()] + OTHER_DOCS
# The entry points must show commands; a topic guide may be prose and tables only.
MUST_SHOW_COMMANDS = {"README.md", "FAQ.md"}
README_MAX_LINES = 260


def doc_id(path):
    return str(path.relative_to(ROOT))


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


@pytest.mark.parametrize("doc", ALL_DOCS, ids=doc_id)
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
    assert checked or doc in OTHER_DOCS or doc.name not in MUST_SHOW_COMMANDS, f"{doc.name} documents no command"


def code_blocks(path) -> list[tuple[str, list[str]]]:
    """Every fenced block as (its info string, its lines), comments left out: they are written in the guide's language
    (whole-line `#` comments of bash and Python, and Python's trailing `  # ...`)."""
    found, block = [], None
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if block is None:
                block = (line[3:].strip(), [])
            else:
                found.append(block)
                block = None
            continue
        if block is not None:
            if block[0] in ("bash", "python"):
                if line.lstrip().startswith("#"):
                    continue
                if block[0] == "python":
                    line = re.sub(r"\s+# .*$", "", line)
            block[1].append(line.rstrip())
    return found


@pytest.mark.parametrize("lang", LANGS)
def test_every_guide_is_translated_under_the_same_name(lang):
    english = {guide.name for guide in GUIDES}
    translated = {path.name for path in (ROOT / "docs" / lang).glob("*.md")}
    assert english - translated == set(), f"docs/{lang}/ lacks the translations of {sorted(english - translated)}"
    assert translated - english == set(), f"docs/{lang}/ has guides with no English original: {sorted(translated - english)}"


@pytest.mark.parametrize("lang", LANGS)
def test_translations_carry_the_english_commands_and_code(lang):
    for english, translated in zip(GUIDES, TRANSLATIONS[lang]):
        if not translated.is_file():
            continue  # reported by test_every_guide_is_translated_under_the_same_name
        where = f"{doc_id(translated)} is out of step with {doc_id(english)}"
        assert commands(translated) == commands(english), where
        assert code_blocks(translated) == code_blocks(english), where
    assert f"docs/{lang}/README.md" in (ROOT / "README.md").read_text()


def prose(path) -> str:
    """The text outside fenced code blocks."""
    kept, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return "\n".join(kept)


def anchors(path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", prose(path), flags=re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.lower())) for heading in headings}


def relative_links(path) -> list[str]:
    """Targets of the Markdown links and images outside code, web addresses left out."""
    targets = re.findall(r"\]\(([^)\s]+)\)", prose(path))
    return [target for target in targets if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def link_target(doc, link):
    file_part, _, anchor = link.partition("#")
    return (doc.parent / file_part).resolve() if file_part else doc, anchor


@pytest.mark.parametrize("doc", ALL_DOCS, ids=doc_id)
def test_every_relative_link_resolves(doc):
    for link in relative_links(doc):
        target, anchor = link_target(doc, link)
        assert target.exists(), f"{doc_id(doc)}: {link} points to no file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{doc_id(doc)}: {link}: {target.name} has no heading #{anchor}"


@pytest.mark.parametrize("lang", ("en",) + LANGS)
def test_readme_is_an_entry_point_linking_every_guide(lang):
    readme = ROOT / "README.md" if lang == "en" else ROOT / "docs" / lang / "README.md"
    lines = len(readme.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"{doc_id(readme)} has {lines} lines: move topics into guides under docs/"
    linked = {link_target(readme, link)[0] for link in relative_links(readme)}
    folder = ROOT / "docs" if lang == "en" else ROOT / "docs" / lang
    for guide in sorted(folder.glob("*.md")):
        if guide != readme:
            assert guide.resolve() in linked, f"{doc_id(readme)} does not link {doc_id(guide)}"
