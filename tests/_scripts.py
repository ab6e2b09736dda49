"""The repository's scripts (tools/, bench/) loaded as modules for the tests: they are not
part of the package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load(name: str, path: str) -> ModuleType:
    """The script at `path` (from the repository's root) as the module `name`, loaded once
    (dataclasses look their module up by name in `sys.modules`)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
