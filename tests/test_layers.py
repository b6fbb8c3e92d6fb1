"""The packages are layers: each imports only the layers before it (imports inside functions too), and nothing
under them imports the scripts (inference.py, train.py, scripts/)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"modules": 0, "pipelines": 1, "media": 2, "motion": 3, "training": 4, "evaluation": 4, "app": 4}
SCRIPTS = {"inference", "train", "scripts", "tests"}


def imported_packages(path: Path, root: Path = ROOT) -> set[str]:
    """The top-level names `path` imports, relative imports resolved to its own package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(path.relative_to(root).parts[0] if node.level else node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", [name for name in LAYERS if (ROOT / name).is_dir()])
def test_imports_point_down_the_layers(package):
    wrong = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_packages(path):
            if name in SCRIPTS or (name in LAYERS and name != package and LAYERS[name] >= LAYERS[package]):
                wrong.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert not wrong, f"imports running back up: {wrong}"


def test_the_walk_sees_imports_inside_functions(tmp_path):
    (tmp_path / "pipelines").mkdir()
    probe = tmp_path / "pipelines" / "probe.py"
    probe.write_text("def later():\n    import inference\n    from app.generation import VideoGenerator\n    from .context import video_length\n")
    assert imported_packages(probe, root=tmp_path) == {"inference", "app", "pipelines"}
