"""Dependencies point one way: serving and training use the core (features/), never each other's code nor the CLI.

Read from the source (every import, also those inside functions), so that a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cxpredict", "features", "serving", "training")
#: The CLI (``cxpredict/``) sits on top: it calls into both sides (lazily, one command each).
CORE_EXEMPT = {"cxpredict.cli"}


def _source(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, anywhere in the file (``from a import b`` counts ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES and _source(m) is not None}


def _modules(package: str) -> list[str]:
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / package).rglob("*.py")
    )


def _closure(module: str) -> set[str]:
    """``module`` and every project module it imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_imports(_source(current)))  # type: ignore[arg-type]
    return seen


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    out = {}
    for module in _modules(package):
        if module in CORE_EXEMPT:
            continue
        bad = {m for m in _imports(_source(module)) if m.split(".")[0] in forbidden}  # type: ignore[arg-type]
        if bad:
            out[module] = bad
    return out


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training import registry\n    import serving.ab\n")
    assert _imports(module) == {"training", "training.registry", "serving.ab"}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("serving", ("training", "cxpredict")),
        ("training", ("serving", "cxpredict")),
        ("features", ("training", "serving", "cxpredict")),
        ("cxpredict", ("training", "serving")),
    ],
)
def test_packages_import_only_downwards(package: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(package, forbidden) == {}


def test_the_serve_parent_never_loads_the_worker() -> None:
    # `cxpredict serve` resolves models in MLflow; the BentoML workers answer requests: neither loads the other.
    parent = _closure("serving.cli_serve")
    assert {"serving.manifest", "serving.startup", "features.registry"} <= parent
    assert parent & {"serving.runtime", "serving.service", "serving.metrics", "serving.preflight"} == set()
    assert _closure("serving.service") & {"serving.manifest", "features.registry", "serving.cli_serve"} == set()


def test_the_core_has_no_import_cycles() -> None:
    """No module of the core reaches itself through its imports (not even through one inside a function)."""
    # A package importing its own submodules (``from features.importers import hillstrom``) names itself: not a cycle.
    imports = {m: _imports(_source(m)) - {m} for m in _modules("features")}  # type: ignore[arg-type]
    cycles = {m for m, deps in imports.items() if any(m in _closure(dep) for dep in deps)}
    assert cycles == set()
