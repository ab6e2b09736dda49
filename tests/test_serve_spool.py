"""The spool of `serve` on its own: files, first lines, rotation, torn tails, its size."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bounce_analyzer.errors import UsageError
from bounce_analyzer.sources import detect
from bounce_analyzer.webhooks.spool import Spool, SpoolFull, first_line, spool_files

LINE = b'[{"event":"bounce","email":"a@example.net","timestamp":1764547200,"sg_event_id":"x"}]\n'


@pytest.mark.parametrize("source", ["sendgrid", "mailgun"])
def test_a_spool_file_is_detected_as_its_source_from_its_first_line(source: str) -> None:
    assert detect(first_line(source, f"{source}-20261207T000000000000Z-1.ndjson", 1)) == source


def test_age_rotation_closes_files_and_remove_frees_their_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**6, rotate_s=0)  # every write opens a new file
    spool.open()
    try:
        for _ in range(3):
            spool.write_blocking("sendgrid", LINE)
        files = spool_files(tmp_path)
        assert len(files) == 3
        assert spool.size == sum(path.stat().st_size for path in files)
        closed = spool.closed_files()
        assert closed == files[:2]  # the newest is still open
        spool.remove(files)  # the open one is kept
        assert spool_files(tmp_path) == files[2:]
        assert spool.size == files[2].stat().st_size
    finally:
        spool.close()
        spool.release()


def test_full_spool_refuses_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.open()
    try:
        spool.check_room()
        spool.write_blocking("sendgrid", LINE * 2)
        with pytest.raises(SpoolFull, match="the limit is 200"):
            spool.check_room()
    finally:
        spool.close()
        spool.release()


def test_open_ends_a_torn_line_and_counts_it(tmp_path: Path) -> None:
    torn = tmp_path / "sendgrid-20261207T000000000000Z-1.ndjson"
    torn.write_bytes(LINE + b'[{"event":"bou')
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.open()
    spool.close()
    spool.release()
    assert torn.read_bytes() == LINE + b'[{"event":"bou\n'
    assert spool.size == torn.stat().st_size


def test_one_spool_one_server(tmp_path: Path) -> None:
    first = Spool(tmp_path, max_bytes=10**6)
    first.open()
    try:
        with pytest.raises(UsageError, match="another server is using this spool"):
            Spool(tmp_path, max_bytes=10**6).open()
    finally:
        first.close()
        first.release()
    again = Spool(tmp_path, max_bytes=10**6)
    again.open()  # free once released
    again.close()
    again.release()


def test_concurrent_writers_share_syncs_and_lose_no_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10**9)
    spool.open()
    try:
        threads = [
            threading.Thread(
                target=lambda: [spool.write_blocking("sendgrid", LINE) for _ in range(50)]
            )
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        spool.close()
        spool.release()
    [path] = spool_files(tmp_path)
    assert path.read_bytes().count(LINE) == 400
    assert spool.stats.lines_batches == 400
    # Writers that wait while a sync runs share the next one (a group commit).
    assert spool.stats.syncs < 400
