"""The layout is the architecture: each folder of components/ is a layer, and imports only run
down (the Pulumi components at the top; then the node state, the remote steps, the rendered
files, the model, and the config at the bottom). A move keeps every rendered file's bytes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"
# Bottom to top; "" is the folder itself (the Pulumi components and the stack loaders).
LAYERS = ["config", "model", "files", "remote", "nodestate", ""]


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else ""


def imports(path: Path) -> list[str]:
    """The components modules `path` imports, as dotted names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
                names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            found += [n for n in names if n.startswith("components")]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("components")]
    return found


def test_each_layer_is_a_folder_with_a_one_line_docstring():
    for layer in LAYERS[:-1]:
        init = COMPONENTS / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "\n" not in doc, f"{init}: one line saying what the layer holds"


def test_imports_run_only_down_the_layers():
    wrong = []
    for path in sorted(COMPONENTS.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        here = LAYERS.index(layer_of(module))
        for target in imports(path):
            if LAYERS.index(layer_of(target)) > here:
                wrong.append(f"{path.relative_to(ROOT)} imports {target} (a layer above it)")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_sees_an_import_that_runs_back_up(tmp_path):
    bad = tmp_path / "components" / "config" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..files.render import render_node\nfrom . import errors\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert imports(bad) == ["components.files.render", "components.config.errors"]
    finally:
        ROOT = saved
    assert LAYERS.index(layer_of("components.files.render")) > LAYERS.index(layer_of("components.config.bad"))


def test_every_shipped_stack_renders_the_recorded_bytes():
    """tests/golden/rendered.sha256 holds the hashes of every rendered file (recorded before the
    layout moved); `python -m tests.golden --write` records them again after a meant change."""
    proc = subprocess.run([sys.executable, "-m", "tests.golden"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    recorded = (ROOT / "tests" / "golden" / "rendered.sha256").read_text().splitlines()
    now = proc.stdout.splitlines()
    changed = sorted(set(recorded) ^ set(now))
    assert not changed, "rendered files differ from the record:\n" + "\n".join(changed[:20])


# The stack-file readers and where their project folder argument goes.
STACK_READERS = {"read_stack": (1, "project_dir"), "list_stacks": (0, "project_dir"), "stack_path": (1, "project_dir"),
                 "other_stacks": (0, "project_dir")}


def test_tests_read_only_tracked_stack_files():
    """Tests read the stack files git tracks (tests/conftest.py: tracked_project), never the project
    folder itself, where a developer's Pulumi.lab.yaml, own stacks or a lab test's stack file lie."""
    wrong = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in STACK_READERS:
                index, keyword = STACK_READERS[name]
                given = node.args[index] if len(node.args) > index else \
                    next((k.value for k in node.keywords if k.arg == keyword), None)
                if given is None or (isinstance(given, ast.Name) and given.id in ("ROOT", "PROJECT_DIR")):
                    wrong.append(f"tests/{path.name}:{node.lineno}: {name} reads the project folder")
            words = [e.value for e in getattr(node.args[0], "elts", []) if isinstance(e, ast.Constant)] \
                if node.args else []
            if "components" in words and "render" in words and "--project" not in words:
                wrong.append(f"tests/{path.name}:{node.lineno}: render without --project")
    assert not wrong, "\n".join(wrong)
