"""`bench/startup.py --smoke` times every command's start once, on its one-line inputs, as the
console script runs it (issue 18; the figures are in bench/RESULTS.md, "Start-up per
command")."""

from __future__ import annotations

from pathlib import Path

from _bench import run_smoke


def test_startup_smoke_times_every_command(tmp_path: Path) -> None:
    results, printed = run_smoke("startup.py", tmp_path / "figures.json", "--work", str(tmp_path))
    assert results["repeat"] == 1
    commands = results["results"]
    assert {"--help", "--version", "explain TEXT", "report, a store of one event"} <= set(commands)
    for name, by_code in commands.items():
        figures = by_code["this code"]
        assert figures["cpu_s"] > 0 and figures["wall_s"] > 0 and figures["peak_rss_mb"] > 0, name
    # `--version` loads typer alone; a parse loads polars and pyarrow too
    version = commands["--version"]["this code"]["peak_rss_mb"]
    assert commands["parse, one line -> Parquet"]["this code"]["peak_rss_mb"] > 2 * version
    assert "medians of 1" in printed
    assert "status=bounced" in (tmp_path / "one.log").read_text()  # a bounce, classified
