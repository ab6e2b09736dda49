"""`bench/serve_load.py --smoke`: two seconds of signed SendGrid batches against a real
server; every acknowledged batch is a line of the spool (issue 16; the full run's figures are
in bench/RESULTS.md)."""

from __future__ import annotations

from pathlib import Path

from _bench import run_smoke


def test_serve_load_smoke(tmp_path: Path) -> None:
    figures, printed = run_smoke("serve_load.py", tmp_path / "serve.json")
    assert figures["requests_ok"] > 0
    assert figures["statuses"] == {"200": figures["requests_ok"]}
    assert figures["spool_lines_match"]
    assert figures["fsyncs"] <= figures["requests_ok"]
    assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert " events/s " in printed
