"""A report split into shares (issue 17: report memory that does not grow with the window)
gives the same answer as the report in one pass.

Above `report._PASS_EVENTS` events a report splits its messages into shares on disk
(`shares.split_by_hash`) and summarizes each alone. These tests force the split with a small
`_PASS_EVENTS` on generated stores (several seeds, both log formats, messages whose deferrals
are resolved on a later day), on a frame holding every event twice, and on the stores written
by earlier versions (tests/data/store_v1, store_v2), and compare every table of the report.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bounce_analyzer import report as report_module
from bounce_analyzer import shares as shares_module
from bounce_analyzer.errors import OutputError
from bounce_analyzer.ingest import ingest_paths
from bounce_analyzer.report import Report, summarize
from bounce_analyzer.rules import load_rules
from bounce_analyzer.shares import detached, split_by_hash
from bounce_analyzer.store import scan_events

DATA = Path(__file__).parent / "data"

#: Three days of logs: a message deferred on one day is often delivered or expired the next.
START = "2026-11-20T00:00:00+00:00"


def _assert_same(left: object, right: object, where: str = "report") -> None:
    """Every field of two reports (or of their sections) equal: frames cell by cell, in order."""
    if isinstance(left, pl.DataFrame):
        assert isinstance(right, pl.DataFrame), where
        try:
            assert_frame_equal(left, right)
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None
    elif dataclasses.is_dataclass(left) and not isinstance(left, type):
        for field in dataclasses.fields(left):
            _assert_same(getattr(left, field.name), getattr(right, field.name), field.name)
    else:
        assert left == right, where


def _report(events: pl.LazyFrame, *, direction: str, by: list[str]) -> Report:
    rules = load_rules()
    return summarize(
        events,
        by=by,
        top=1000,
        direction=direction,
        categories=rules.categories,
        blocklists=rules.blocklists,
    )


def _split_and_whole(
    events: pl.LazyFrame, monkeypatch: pytest.MonkeyPatch, *, direction: str, by: list[str]
) -> tuple[Report, Report, int]:
    """The report in one pass, and split into shares of about 150 events (and how many)."""
    whole = _report(events, direction=direction, by=by)
    count = int(events.select(pl.len()).collect().item())
    monkeypatch.setattr(report_module, "_PASS_EVENTS", 150)
    split = _report(events, direction=direction, by=by)
    return whole, split, -(-count // 150)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """A store of three days of generated logs for each source and seed."""
    found = {}
    for source in ("postfix", "exim"):
        for seed in (1, 2, 3):
            folder = tmp_path_factory.mktemp(f"{source}-{seed}")
            log = folder / f"{source}.log"
            subprocess.run(
                [sys.executable, "-m", "bounce_analyzer.generate", source, "--lines", "6000",
                 "--seed", str(seed), "--start", START, "--days", "3", "--tz", "UTC",
                 "-o", str(log)],
                check=True,
            )  # fmt: skip
            ingest_paths(folder / "store", [str(log)], tz="UTC")
            found[(source, seed)] = folder / "store"
    return found


@pytest.mark.parametrize("source", ["postfix", "exim"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_split_report_of_a_generated_store_is_the_one_pass_report(
    stores: dict[tuple[str, int], Path], source: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = scan_events(stores[(source, seed)])
    # the generated logs hold what the split must keep together: deferrals resolved on a
    # later day, Postfix's whole-message expiries (given to their recipients)
    days = events.group_by("message_ref").agg(pl.col("timestamp").dt.date().n_unique())
    assert days.filter(pl.col("timestamp") > 1).collect().height > 0
    assert events.filter(pl.col("event") == "deferred").collect().height > 0
    direction, by = ("all", ["provider", "event"]) if seed != 2 else ("outbound", ["date"])
    whole, split, shares = _split_and_whole(events, monkeypatch, direction=direction, by=by)
    assert shares > 5
    _assert_same(split, whole)
    assert whole.delays.resolutions.height > 0  # (the deferral resolutions are compared too)


def test_postfix_expiries_are_given_to_their_recipients_in_every_share(
    stores: dict[tuple[str, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postfix's `status=expired` of a whole message names no recipient: it ends each
    recipient of its message, which the split keeps in the same share."""
    events = scan_events(stores[("postfix", 1)])
    wholes = events.filter(pl.col("recipient").is_null() & (pl.col("event") == "expired"))
    assert wholes.collect().height > 0
    whole, split, _ = _split_and_whole(events, monkeypatch, direction="all", by=["event"])
    _assert_same(split, whole)


def test_a_frame_holding_each_event_twice_reports_alike_split(
    stores: dict[tuple[str, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Duplicates (a frame of files read twice): each copy is counted in both ways alike."""
    once = scan_events(stores[("exim", 3)])
    twice = pl.concat([once, once])
    whole, split, _ = _split_and_whole(twice, monkeypatch, direction="all", by=["provider"])
    _assert_same(split, whole)
    attempts = whole.totals.filter(pl.col("view") == "attempts")["total"].item()
    assert attempts == 2 * once.select(pl.len()).collect().item()


@pytest.mark.parametrize("store", ["store_v1", "store_v2"])
def test_a_store_of_an_earlier_version_reports_alike_split(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores written before the split (nothing in their layout changed) report the same
    whether split or not."""
    events = scan_events(DATA / store)
    count = events.select(pl.len()).collect().item()
    whole = _report(events, direction="all", by=["provider"])
    monkeypatch.setattr(report_module, "_PASS_EVENTS", max(1, count // 4))
    _assert_same(_report(events, direction="all", by=["provider"]), whole)


def test_the_split_keeps_each_key_in_one_share_in_its_order() -> None:
    frame = pl.DataFrame({"key": [f"m{i % 37}" for i in range(5000)], "row": range(5000)}).lazy()
    with split_by_hash(frame, pl.col("key"), 7) as shares:
        parts = [share.collect() for share in shares]
        assert len(shares) == 7
    assert sum(part.height for part in parts) == 5000
    owners = pl.concat(
        [part.select("key").unique().with_columns(pl.lit(n).alias("share")) for n, part in
         enumerate(parts)]
    )  # fmt: skip
    assert owners.height == 37  # each key in one share
    assert all(part["row"].is_sorted() for part in parts)
    assert sum(part.height > 0 for part in parts) > 1


def test_a_share_written_as_several_files_keeps_its_rows_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # files of 100 rows at most, row groups of 16: a share of ~700 rows is 7 or more files
    monkeypatch.setattr(shares_module, "_FILE_ROWS", 100)
    monkeypatch.setattr(shares_module, "_GROUP_ROWS", 16)
    keys = [f"m{i % 5}" for i in range(5000)]
    frame = pl.DataFrame({"key": keys, "row": range(5000), "text": [f"t{i}" for i in range(5000)]})
    with split_by_hash(frame.lazy(), pl.col("key"), 9) as shares:
        folders = [len(list(path.glob("*.parquet"))) for path in shares._paths]
        parts = [share.collect() for share in shares]
    assert max(folders) >= 7
    assert sum(part.height for part in parts) == 5000
    assert all(part["row"].is_sorted() for part in parts)
    assert_frame_equal(pl.concat(parts).sort("row"), frame)
    # 5 keys in 9 shares: some shares are empty, with the frame's columns
    empty = [part for part in parts if part.is_empty()]
    assert empty and all(part.schema == frame.schema for part in empty)


def test_more_shares_than_one_sink_writes_are_written_in_rounds_with_the_same_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2 partitions a sink: 9 shares take three rounds (parts of 5, 3 and 1 shares)
    keys = [f"m{i % 41}" for i in range(5000)]
    frame = pl.DataFrame({"key": keys, "row": range(5000), "text": [f"t{i}" for i in range(5000)]})
    with split_by_hash(frame.lazy(), pl.col("key"), 9) as shares:
        at_once = [share.collect() for share in shares]
    monkeypatch.setattr(shares_module, "_FAN_OUT", 2)
    monkeypatch.setattr(shares_module, "_FILE_ROWS", 100)
    with split_by_hash(frame.lazy(), pl.col("key"), 9) as shares:
        in_rounds = [share.collect() for share in shares]
        folder = shares._paths[0].parent
        left = [path for path in folder.rglob("*.parquet") if path.parent not in shares._paths]
    assert left == []  # each part removed once written into its shares
    assert len(in_rounds) == 9
    for one, other in zip(at_once, in_rounds, strict=True):
        assert_frame_equal(one, other)
    assert sum(part.height > 0 for part in in_rounds) > 5


def test_the_shares_are_removed_after_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with split_by_hash(pl.LazyFrame({"key": ["a", "b", "c"]}), pl.col("key"), 2) as shares:
        assert len(list(tmp_path.iterdir())) == 1
        assert sum(share.collect().height for share in shares) == 3
    assert list(tmp_path.iterdir()) == []


def test_a_temporary_folder_that_cannot_be_made_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone"
    monkeypatch.setattr("tempfile.tempdir", str(missing))
    with (
        pytest.raises(OutputError, match=r"cannot write a report's working files in .*gone: "),
        split_by_hash(pl.LazyFrame({"key": ["a"]}), pl.col("key"), 2),
    ):
        pass


def test_a_detached_frame_is_the_same_frame() -> None:
    frame = pl.DataFrame({"text": ["x" * 40, None, "y"], "n": [1, 2, 3]})
    assert_frame_equal(detached(frame.group_by("text", maintain_order=True).first()),
                       frame)  # fmt: skip


def test_an_empty_window_of_a_split_report_is_the_empty_report(
    stores: dict[tuple[str, int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    since = datetime(2027, 1, 1, tzinfo=UTC)
    events = scan_events(stores[("exim", 1)], since=since)
    whole = summarize(events, since=since, held=[], holder="the store")
    monkeypatch.setattr(report_module, "_PASS_EVENTS", 1)
    split = summarize(events, since=since, held=[], holder="the store")
    _assert_same(split, whole)
    assert split.notes and "holds none" in split.notes[0]
