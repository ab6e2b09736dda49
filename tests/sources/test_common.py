"""What the sources share: the registry, detection by content, the machine's zone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounce_analyzer import smtp
from bounce_analyzer.sources import SOURCES, detect
from bounce_analyzer.sources.exim import Exim
from bounce_analyzer.sources.mailgun import Mailgun
from bounce_analyzer.sources.postfix import Postfix
from bounce_analyzer.sources.sendgrid import SendGrid

from ._helpers import assert_adds_up, consecutive_batches


def test_a_source_module_that_fails_to_import_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken source module is a bug to see, not a format that was not recognised."""
    monkeypatch.setitem(SOURCES, "broken", "bounce_analyzer.sources.no_such_module:Broken")
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        detect(b"no known format\n")


def test_a_head_of_no_known_format_is_none() -> None:
    assert detect(b"no known format\n") is None


@pytest.mark.parametrize("source", [SendGrid, Mailgun])
@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_json_sources_never_raise_and_counts_add_up(
    source: type[SendGrid | Mailgun], data: bytes, cut: int
) -> None:
    """Any bytes, cut into two batches at any line end."""
    cut = data.rfind(b"\n", 0, cut) + 1
    for out in source().parse(consecutive_batches(data[:cut], data[cut:], path="events.json")):
        assert_adds_up(out)


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
