"""The house: the public names, the layering of the subpackages, no import cycles, and napari and
Qt only under ``_widget/``. Imports are read from the source (``ast``), including those inside
functions, so a cycle hidden in a late import is found too."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_segany as sg

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_segany"
GUI_PACKAGES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy"}

#: What each part of the package may import of ours; everything else is a layering error.
ALLOWED = {
    "model": set(),
    "labels": set(),
    "engine": {"model"},
    "weights": {"model", "engine"},
    "volume": {"model", "engine", "labels"},
    "auto": {"model", "engine", "volume"},
    "files": {"engine"},
    "sample_data": set(),
    "finetune": {"model", "engine", "weights", "volume", "files"},
    "__init__": {"engine", "weights", "volume", "auto", "finetune"},
    "batch": {"__init__", "model", "engine", "weights", "volume", "auto", "files", "labels"},
    "cli": {"__init__", "model", "engine", "weights", "volume", "files", "labels", "sample_data", "_widget",
            "auto", "finetune", "batch"},
    "_widget": {"__init__", "model", "engine", "weights", "volume", "files", "labels", "sample_data", "auto",
                "finetune"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for base, prefix in ((PACKAGE, "napari_segany"), (ROOT / "training", "training")):
        for path in base.rglob("*.py"):
            parts = [prefix, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _in_type_checking(node, parents) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, modules) -> tuple[set[str], set[str]]:
    """(our modules that ``name`` imports, the top-level names of everything it imports)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours, tops = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _in_type_checking(node, parents):
            targets = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not _in_type_checking(node, parents):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [(base, [a.name for a in node.names])]
        else:
            continue
        for module, names in targets:
            tops.add(module.split(".")[0])
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            ours.update(subs)
            if module in modules and len(subs) < len(names or [None]):
                ours.add(module)
    return ours, tops


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_public_names_are_all_there():
    expected = {"Cancelled", "EmbeddingStore", "GridSettings", "ImageEmbedding", "Objects", "Prediction",
                "PropagationResult", "Predictor", "VolumeObjects", "Window", "ZoomPredictor", "load_model",
                "propagate", "segment_everything", "segment_volume", "finetune"}
    assert set(sg.__all__) == expected
    for name in expected:
        assert getattr(sg, name) is not None
    assert sg.__version__


def test_no_import_cycles_training_included():
    graph = {name: ours for name, (ours, _) in _graph().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_each_part_imports_only_the_layers_below_it():
    wrong = []
    for name, (ours, _) in _graph().items():
        if not name.startswith("napari_segany"):
            continue
        part = _part(name)
        for target in ours:
            if target.startswith("napari_segany") and _part(target) != part and _part(target) not in ALLOWED[part]:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_napari_and_qt_only_under_widget():
    wrong = sorted(name for name, (_, tops) in _graph().items()
                   if tops & GUI_PACKAGES and not name.startswith("napari_segany._widget"))
    assert wrong == []


def test_top_level_keeps_the_public_face_only():
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__")))
    assert top == ["__init__.py", "_models", "_widget", "auto", "batch", "cli", "engine", "files.py", "finetune",
                   "labels.py", "model", "napari.yaml", "sample_data.py", "volume", "weights"]
