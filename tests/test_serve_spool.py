"""The spool of `serve` on its own: files, first lines, rotation, torn tails, its size."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bounce_analyzer.errors import UsageError
from bounce_analyzer.sources import detect
from bounce_analyzer.webhooks.spool import Spool, SpoolFull, TornTail, first_line, spool_files

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


def test_open_moves_a_torn_tail_aside_and_keeps_the_whole_lines(tmp_path: Path) -> None:
    torn = tmp_path / "sendgrid-20261207T000000000000Z-1.ndjson"
    tail = b'[{"event":"bou' + b"x" * 100_000  # longer than a block read back from the end
    torn.write_bytes(LINE * 3 + tail)
    whole = tmp_path / "mailgun-20261207T000000000000Z-1.ndjson"
    whole.write_bytes(LINE)
    spool = Spool(tmp_path, max_bytes=10**6)
    moved = spool.open()
    spool.close()
    spool.release()
    aside = tmp_path / ".torn" / "sendgrid-20261207T000000000000Z-1.torn"
    assert moved == [TornTail(path=torn, aside=aside, size=len(tail))]
    assert torn.read_bytes() == LINE * 3
    assert aside.read_bytes() == tail
    assert whole.read_bytes() == LINE
    assert spool.size == len(LINE) * 4  # the tail set aside is not the spool's


def test_a_file_cut_in_its_first_line_is_moved_aside_whole(tmp_path: Path) -> None:
    torn = tmp_path / "mailgun-20261207T000000000000Z-1.ndjson"
    torn.write_bytes(b'{"event-data":{"ev')
    spool = Spool(tmp_path, max_bytes=10**6)
    [moved] = spool.open()
    spool.close()
    spool.release()
    assert not torn.exists() and spool_files(tmp_path) == []
    assert moved.aside.read_bytes() == b'{"event-data":{"ev'


def test_files_removed_by_others_free_room_without_a_restart(tmp_path: Path) -> None:
    """Issue 16: the count was of the bytes the server wrote, so spool files deleted by an
    operator (or an ingest and clean-up of one's own) still filled the spool until a restart."""
    left = tmp_path / "sendgrid-20261206T000000000000Z-1.ndjson"
    left.write_bytes(LINE * 4)
    spool = Spool(tmp_path, max_bytes=len(LINE) * 5)
    spool.open()
    try:
        spool.write_blocking("sendgrid", LINE)
        with pytest.raises(SpoolFull):
            spool.check_room()
        left.unlink()  # an operator's clean-up
        spool.check_room()  # the limit is reached: the folder is counted again
        assert spool.size == sum(path.stat().st_size for path in spool_files(tmp_path))
    finally:
        spool.close()
        spool.release()


def test_rotation_counts_the_folder_again(tmp_path: Path) -> None:
    left = tmp_path / "sendgrid-20261206T000000000000Z-1.ndjson"
    left.write_bytes(LINE * 4)
    spool = Spool(tmp_path, max_bytes=10**6, rotate_s=0)  # every write opens a new file
    spool.open()
    try:
        spool.write_blocking("sendgrid", LINE)
        left.unlink()
        spool.write_blocking("sendgrid", LINE)
        assert spool.size == sum(path.stat().st_size for path in spool_files(tmp_path))
    finally:
        spool.close()
        spool.release()


def test_a_file_is_no_spool(tmp_path: Path) -> None:
    (tmp_path / "spool").touch()
    with pytest.raises(UsageError) as caught:
        Spool(tmp_path / "spool", max_bytes=10**6).open()
    assert str(caught.value) == f"{tmp_path / 'spool'}: cannot use as the spool: not a folder"


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
