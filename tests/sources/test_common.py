"""What the sources share: the registry, detection by content, the machine's zone."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bounce_analyzer import smtp
from bounce_analyzer.sources import SOURCES, detect
from bounce_analyzer.sources.exim import Exim
from bounce_analyzer.sources.postfix import Postfix


def test_a_source_module_that_fails_to_import_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken source module is a bug to see, not a format that was not recognised."""
    monkeypatch.setitem(SOURCES, "broken", "bounce_analyzer.sources.no_such_module:Broken")
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        detect(b"no known format\n")


def test_a_head_of_no_known_format_is_none() -> None:
    assert detect(b"no known format\n") is None


@pytest.mark.parametrize("tz", ["Asia/Tokyo", ":Europe/Paris", "Not/AZone", None])
def test_postfix_and_exim_pick_the_same_zone(
    monkeypatch: pytest.MonkeyPatch, tz: str | None
) -> None:
    """Without --tz both read stamps in the machine's zone, the one `smtp.local_zone` names."""
    if tz is None:
        monkeypatch.delenv("TZ", raising=False)
    else:
        monkeypatch.setenv("TZ", tz)
    assert Postfix().tz == Exim()._tz == smtp.local_zone()


def test_postfix_and_exim_fall_back_to_the_same_offset(
    unnamed_zone: Callable[[int], None],
) -> None:
    """Where nothing names the machine's zone, both take its offset (Exim took UTC before)."""
    unnamed_zone(2 * 3600)
    assert Postfix().tz == Exim()._tz == "Etc/GMT-2"
