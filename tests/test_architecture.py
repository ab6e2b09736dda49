"""The import graph keeps the layers of docs/ARCHITECTURE.md: every arrow runs downward.

Each module of the package has a layer; a module imports only modules of lower layers, or
modules of its own subpackage (the sources among themselves, the generator's parts among
themselves). A new module must be given its layer here and in the document.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "bounce_analyzer"

#: The layers, lowest first (as docs/ARCHITECTURE.md draws them).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "options", "startup"),
    (
        "schema",
        "smtp",
        "stages",
        "shares",
        "timewindow",
        "prefilter",
        "cache",
        "native",
        "location",
    ),
    ("reading", "extract", "normalize", "rules", "blocklists", "retry"),
    ("sources",),
    ("direction",),
    ("classify",),
    ("delays",),
    ("pipeline", "writers", "report"),
    ("series", "compare"),
    ("store",),
    ("html",),
    ("ingest", "render", "export", "explain", "check", "metrics", "migrate"),
    ("webhooks", "cluster"),
    ("cli", "__init__"),
    ("__main__",),
]
#: The generator is a tool of tests and benchmarks: it reads the schema's names, nothing else.
GENERATOR_MAY_IMPORT = {"schema"}


def _rank(name: str) -> int:
    top = name.split(".")[0]
    for rank, members in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{name} has no layer in tests/test_architecture.py")


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """The package's modules `path` imports (at any depth of the file, lazily or not)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "bounce_analyzer":
                found.update(alias.name for alias in node.names if alias.name != "__version__")
            elif node.module.startswith("bounce_analyzer."):
                found.add(node.module.removeprefix("bounce_analyzer."))
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix("bounce_analyzer.")
                for alias in node.names
                if alias.name.startswith("bounce_analyzer.")
            )
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_every_import_runs_downward(path: Path) -> None:
    name = _module_name(path)
    top = name.split(".")[0]
    for imported in _imports(path):
        imported_top = imported.split(".")[0]
        if imported_top == top:
            continue  # within one subpackage
        if top == "generate":
            assert imported_top in GENERATOR_MAY_IMPORT, f"{name} imports {imported}"
            continue
        assert _rank(imported) < _rank(name), (
            f"{name} (layer {_rank(name)}) imports {imported} (layer {_rank(imported)})"
        )


def test_report_is_a_pure_function_of_events() -> None:
    # (shares: the temporary files a report larger than one pass splits its messages into)
    allowed = {"delays", "errors", "normalize", "options", "schema", "shares"}
    assert _imports(PACKAGE / "report.py") <= allowed


def test_store_only_stores() -> None:
    imported = _imports(PACKAGE / "store.py")
    assert not imported & {"pipeline", "ingest", "classify", "sources", "rules"}, imported


def test_the_rule_catches_an_upward_arrow(tmp_path: Path) -> None:
    upward = tmp_path / "reading.py"
    upward.write_text("from bounce_analyzer.sources.base import Source\n", encoding="utf-8")
    assert _imports(upward) == {"sources.base"}
    assert _rank("sources.base") > _rank("reading")
