"""Imports run one way: each package imports only from itself and the packages below it.

The order, from the bottom, is the one ``docs/architecture.md`` states. Every import is
checked, also those inside functions (an upward import there would be a hidden cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "bayescellseg"
# From the bottom; names on one level may import each other.
LEVELS: tuple[frozenset[str], ...] = tuple(
    frozenset(level.split())
    for level in (
        "errors settings malloc progress prediction_folder",
        "io",
        "metrics",
        "data samples",
        "model",
        "postprocess",
        "inference",
        "train",
        "report",
        "export trust",
        "evaluation",
        "pipelines",
        "cli napari __init__ __main__",
    )
)
RANK = {name: k for k, level in enumerate(LEVELS) for name in level}


def _unit(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _top_level_name(name: str) -> str | None:
    """The unit ``from bayescellseg import name`` loads (None: the version constant)."""
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file():
        return name
    return None if name == "__version__" else "__init__"  # a name of the public API


def _imported_units(tree: ast.AST) -> list[tuple[str, int]]:
    """``(unit, line)`` of every ``bayescellseg`` import in a module (functions included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "bayescellseg":
            units = [_top_level_name(a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            units = [node.module.split(".")[1]] if node.module.startswith("bayescellseg.") else []
        elif isinstance(node, ast.Import):
            units = [a.name.split(".")[1] for a in node.names if a.name.startswith("bayescellseg.")]
        else:
            units = []
        found.extend((unit, node.lineno) for unit in units if unit is not None)
    return found


def upward_imports() -> list[str]:
    """``"<file>:<line> <package> imports <package>"`` for every import against the order."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        for target, line in _imported_units(ast.parse(path.read_text(encoding="utf-8"))):
            if target not in RANK or unit not in RANK:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} {unit} -> {target}: unranked")
            elif RANK[target] > RANK[unit]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} {unit} imports {target}")
    return problems


def test_every_package_is_ranked() -> None:
    units = {_unit(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"add to LEVELS: {sorted(units - set(RANK))}"


def test_imports_run_one_way() -> None:
    problems = upward_imports()
    assert not problems, "imports against the documented order:\n  " + "\n  ".join(problems)
