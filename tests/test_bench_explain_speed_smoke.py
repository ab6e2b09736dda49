"""`bench/explain_speed.py --smoke` (issue 14): builds its messages, times `explain -` (and
Sisimai's `match` where perl can load it, else says it skipped it) and writes its figures."""

from __future__ import annotations

import json
from pathlib import Path

from _bench import run_smoke


def test_explain_speed_smoke_writes_its_figures(tmp_path: Path) -> None:
    work = tmp_path / "work"
    # (the labelled rows as HEAD holds them: a shallow clone need not hold the pinned commit)
    figures, printed = run_smoke(
        "explain_speed.py", tmp_path / "speed.json", "--out", str(work), "--labels-at", "HEAD"
    )
    built = figures["input"]
    assert built["messages"] == 2_000
    assert 1_000 < built["distinct"] <= 2_000  # addresses, IPs and ids vary, as in real logs
    assert built["logged_pool"] > 0 and built["labelled_pool"] > 0
    messages = (work / "messages.txt").read_text(encoding="utf-8").splitlines()
    assert len(messages) == 2_000 and all(message.strip() for message in messages)
    ours = figures["runs"][0]
    assert ours["name"] == "bounce-analyzer" and ours["output_lines"] == 2_000
    assert ours["wall_s"] > 0 and ours["cpu_s"] > 0
    assert len(figures["load_average_start"]) == 3 and len(figures["load_average_end"]) == 3
    answers = (work / "explain.ndjson").read_text(encoding="utf-8").splitlines()
    assert [json.loads(answer)["input"] for answer in answers] == messages
    # bounce-analyzer's cache (the loaded rules) is the run's own, not the machine's
    assert (work / "cache").is_dir() and any((work / "cache").iterdir())
    lines = printed.splitlines()
    assert lines[0].startswith("input 2,000 messages (")
    if figures["skipped"] is None:
        sisimai = figures["runs"][1]
        assert sisimai["name"] == "sisimai match" and sisimai["output_lines"] == 2_000
        assert figures["ratio"]["wall"] > 0
        assert lines[-1].startswith("ratio (sisimai / bounce-analyzer): ")
    else:
        assert figures["ratio"] is None and len(figures["runs"]) == 1
        assert f"SKIPPED sisimai: {figures['skipped']}" in lines
