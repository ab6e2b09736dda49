"""The registry of sources: names to classes, and detection by content."""

from __future__ import annotations

import pytest

from bounce_analyzer.sources import SOURCES, detect


def test_a_source_module_that_fails_to_import_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken source module is a bug to see, not a format that was not recognised."""
    monkeypatch.setitem(SOURCES, "broken", "bounce_analyzer.sources.no_such_module:Broken")
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        detect(b"no known format\n")


def test_a_head_of_no_known_format_is_none() -> None:
    assert detect(b"no known format\n") is None
