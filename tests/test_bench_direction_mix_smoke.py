"""`bench/direction_mix.py --smoke`: the measurement of issue 13 runs end to end on a few
thousand generated lines plus the samples, and its figures add up."""

from __future__ import annotations

from pathlib import Path

from _bench import run_smoke


def test_direction_mix_smoke_prints_figures_that_add_up(tmp_path: Path) -> None:
    figures, printed = run_smoke("direction_mix.py", tmp_path / "mix.json")
    assert (figures["postfix_lines"], figures["exim_lines"]) == (3_000, 2_000)
    assert figures["sample_lines"] == 1_016 + 625
    assert 0 < figures["failed"] < figures["events"]
    assert 0 < figures["inbound_failed"] <= figures["failed"]
    assert figures["inbound_share"] == round(figures["inbound_failed"] / figures["failed"], 4)
    assert figures["failed_outbound"] <= figures["failed"]
    assert 0 <= figures["suppression_rows_own_domains"] <= figures["suppression_rows"]
    assert {"example.com", "news.example.com", "mx1.example.com"} <= set(figures["own_domains"])
    lines = printed.splitlines()
    assert lines[0].startswith("input ") and "3,000 Postfix + 2,000 Exim lines" in lines[0]
    assert lines[-1].split() == ["for", "our", "own", "domains",
                                 f"{figures['suppression_rows_own_domains']:,}"]  # fmt: skip
