"""`export` through the command line, on a log of both directions (issue 13).

The log (tests/data/postfix/synthetic/both-directions.log) is our server mx1.example.com
refusing other people's mail to our own addresses (NOQUEUE rejects: unknown users, a
Spamhaus-listed client, a relay attempt), then one newsletter of ours bouncing at Gmail and
Outlook (5.1.1/5.5.0: the addresses do not exist) and at a Proofpoint gateway (our IP is
listed: soft), the bounce notice delivered to our local sender, and a partner's message
that our server, a gateway, relays with smtp to the internal mailstore, which refuses a
departed user: mail to us that only `--local-domains` can tell from mail we send.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from bounce_analyzer.cli import app

runner = CliRunner()

NOW = "2026-11-28T00:00:00+00:00"


def _ingest(log: Path, store: Path, *options: str) -> None:
    result = runner.invoke(
        app, ["ingest", "--store", str(store), "--tz", "UTC", "--quiet", *options, str(log)]
    )
    assert result.exit_code == 0, result.output


def _export(store: Path, output: Path, what: str) -> pl.DataFrame:
    result = runner.invoke(
        app,
        ["export", "--store", str(store), "--since", "2026-11-01", "--until", "2026-12-01",
         "--what", what, "-o", str(output)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return pl.read_csv(output) if output.suffix == ".csv" else pl.read_parquet(output)


def test_suppressions_hold_only_our_outbound_hard_bounces(data_path: Path, tmp_path: Path) -> None:
    log = data_path / "postfix" / "synthetic" / "both-directions.log"
    _ingest(log, tmp_path / "store")
    events = _export(tmp_path / "store", tmp_path / "events.parquet", "events")
    # the store holds both directions: the rejects of our own addresses are hard failures too
    hard = events.filter(pl.col("bounce_type") == "hard").sort("recipient")
    assert hard.select("recipient", "direction").rows() == [
        ("admin@example.com", "inbound"),
        ("k.tanaka@outlook.com", "outbound"),
        # relayed with smtp to a server the log cannot tell is ours
        ("left.company@example.com", "outbound"),
        ("nobody.here@gmail.com", "outbound"),
        ("old.user@example.com", "inbound"),
    ]

    suppressed = _export(tmp_path / "store", tmp_path / "suppressions.csv", "suppressions")
    assert suppressed.select("recipient", "category", "hard_bounces").rows() == [
        ("k.tanaka@outlook.com", "user_unknown", 1),
        ("left.company@example.com", "user_unknown", 1),
        ("nobody.here@gmail.com", "user_unknown", 1),
    ]


def test_suppressions_never_hold_our_local_domains(data_path: Path, tmp_path: Path) -> None:
    log = data_path / "postfix" / "synthetic" / "both-directions.log"
    _ingest(log, tmp_path / "store", "--local-domains", "example.com")
    suppressed = _export(tmp_path / "store", tmp_path / "suppressions.csv", "suppressions")
    assert suppressed["recipient"].to_list() == ["k.tanaka@outlook.com", "nobody.here@gmail.com"]


def test_events_export_gives_inbound_events_the_inbound_advice(
    data_path: Path, tmp_path: Path
) -> None:
    from bounce_analyzer.rules import load_rules

    advice = {row["category"]: row for row in load_rules().categories.iter_rows(named=True)}
    log = data_path / "postfix" / "synthetic" / "both-directions.log"
    _ingest(log, tmp_path / "store")
    events = _export(tmp_path / "store", tmp_path / "events.parquet", "events")
    blocked = dict(
        events.filter(pl.col("category") == "blocked").select("direction", "solution").iter_rows()
    )
    # our server refusing a Spamhaus-listed client: nothing of ours to delist
    assert blocked["inbound"] == advice["blocked"]["advice_inbound"]
    # Proofpoint refusing our IP: delist it
    assert blocked["outbound"] == advice["blocked"]["advice"]
    unknown = events.filter(
        (pl.col("category") == "user_unknown") & (pl.col("direction") == "inbound")
    )
    assert set(unknown["solution"]) == {advice["user_unknown"]["advice_inbound"]}


@pytest.mark.parametrize(
    ("under", "code", "error"),
    [
        # `--partition-by date` writes a folder: a file of that name is a usage error (it was
        # a FileExistsError traceback)
        (False, 2, "Error: {target}: --partition-by date writes a folder, and it is a file\n"),
        # issue 15: a folder it cannot make (under a file) is said at once (it was a
        # FileNotFoundError traceback after the whole window had been read)
        (True, 1, "Error: cannot write {target}: not a directory\n"),
    ],
)
def test_partitions_that_cannot_be_written_are_one_line_before_anything_is_read(
    data_path: Path, tmp_path: Path, under: bool, code: int, error: str
) -> None:
    _ingest(data_path / "postfix" / "synthetic" / "both-directions.log", tmp_path / "store")
    existing = tmp_path / "exists.txt"
    existing.write_text("keep me\n")
    target = existing / "partitions" if under else existing
    result = runner.invoke(
        app,
        ["export", "--store", str(tmp_path / "store"), "--since", "2026-11-01",
         "--partition-by", "date", "--format", "parquet", "-o", str(target)],
    )  # fmt: skip
    assert result.exit_code == code, result.output
    assert result.output == error.format(target=target)
    assert existing.read_text() == "keep me\n"  # left as it was, and nothing beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.txt", "store"]
