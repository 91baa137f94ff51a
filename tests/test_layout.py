"""The package layout: layers import only downwards, and notebooks and the CLI use public names."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Each component of the package and its layer; a module may import its own component or a
#: component of a lower layer, never one beside or above it. A new module must be placed here.
LAYERS: dict[str, float] = {
    "interp._version": 0,
    "interp.errors": 0,
    "interp._atomic": 0,
    # jaxtyping aliases and the shared dimension names (batch, pos, d_model, ...).
    "interp._types": 0,
    "interp._checks": 0.5,
    "interp.sites": 1,
    "interp.min_samples": 1,
    "interp.data": 1,
    "interp.testing": 1,
    "interp.chat": 2,
    "interp.zoo": 2,
    "interp.model": 3,
    "interp.native": 3,
    # The one save/load of learned artifacts: checksums, finiteness, model identity (uses
    # interp.model for the identity and interp._atomic for the swap).
    "interp._artifact": 3.5,
    "interp.activations": 4,
    "interp.generation": 4,
    "interp.store": 5,
    "interp.directions": 5,
    "interp.evaluation": 5,
    "interp.organism": 6,
    "interp.probes": 5,
    "interp.interventions": 6,
    "interp.projection": 6,
    "interp.plots": 7,
    "interp.refusal_direction": 8,
    "interp.safeswitch": 8,
    "interp.dro": 8,
    "interp.safeinfer": 8,
    "interp.cast": 8,
    # Above the method packages (it adapts them), below the report (which shows it).
    "interp.comparison": 8.5,
    "interp.report": 9,
    "interp": 10,
    "interp.cli": 11,
    "interp.__main__": 12,
}


def _component(module: str) -> str:
    parts = module.split(".")
    return "interp" if len(parts) == 1 else f"interp.{parts[1]}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every interp import, function-level ones too."""
    return _imports_in(path.read_text())


def _imports_in(source: str) -> list[tuple[str, list[str], int]]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "interp"
        ):
            out.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            out.extend(
                (a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "interp"
            )
    return out


def _edges(sources: dict[str, str] | None = None):
    """(file, line, importing component, imported component) over the package's modules."""
    if sources is None:
        paths = sorted((REPO / "interp").rglob("*.py"))
        sources = {str(p.relative_to(REPO)): p.read_text() for p in paths}
    for rel, text in sources.items():
        source = _component(_module_name(REPO / rel))
        for module, names, line in _imports_in(text):
            if module == "interp":  # a submodule, or a name of the root namespace
                targets = [f"interp.{n}" if f"interp.{n}" in LAYERS else "interp" for n in names]
            else:
                targets = [module]
            for target in targets:
                yield rel, line, source, _component(target)


def _violations(sources: dict[str, str] | None = None) -> list[str]:
    return [
        f"{rel}:{line}: {source} (layer {LAYERS[source]}) imports {target} "
        f"(layer {LAYERS.get(target)})"
        for rel, line, source, target in _edges(sources)
        if source != target and not LAYERS.get(target, 99) < LAYERS[source]
    ]


def test_every_component_has_a_layer():
    components = {_component(_module_name(p)) for p in (REPO / "interp").rglob("*.py")}
    assert components - set(LAYERS) == set()
    assert len(components) >= 20  # the walk found the package


def test_layers_import_only_downwards():
    assert sum(1 for _ in _edges()) > 100  # the walk saw the package's imports
    assert _violations() == []


def test_the_layer_check_catches_upward_and_sideways_imports():
    """Not vacuous: an import of a higher layer, or of a method package beside, is caught."""
    sources = {
        "interp/data/promptset.py": "def f():\n    from interp.report import Report\n",
        "interp/dro/anchor.py": "from interp.safeswitch import SafeSwitch\n",
        "interp/generation.py": "from interp import sites\nfrom interp.native import x\n",
    }
    found = _violations(sources)
    assert len(found) == 2
    assert "interp.data (layer 1) imports interp.report" in found[0]
    assert "interp.dro (layer 8) imports interp.safeswitch" in found[1]


def test_nothing_below_the_report_imports_it():
    users = {source for _, _, source, target in _edges() if target == "interp.report"}
    assert users <= {"interp.report", "interp.cli"}


def _public(module: str, name: str) -> bool:
    if any(part.startswith("_") for part in module.split(".")) or name.startswith("_"):
        return name == "__version__" and module == "interp"
    mod = importlib.import_module(module)
    if hasattr(mod, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None:
        return True  # a public submodule
    exported = getattr(mod, "__all__", None)
    return name in exported if exported is not None else hasattr(mod, name)


@pytest.mark.parametrize(
    "path",
    [*sorted((REPO / "notebooks").glob("*.py")), *sorted((REPO / "interp" / "cli").glob("*.py"))],
    ids=lambda p: p.name,
)
def test_notebooks_and_the_cli_use_public_names_only(path):
    private = [
        f"{path.name}:{line}: {module}.{name}"
        for module, names, line in _imports(path)
        for name in names
        if not _public(module, name)
    ]
    assert private == []
    assert _imports(path)  # the file does import interp: the check ran on something
