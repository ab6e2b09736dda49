"""Shared fixtures: where the repository's data lives, and a fixed clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bounce_analyzer import smtp

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_terminal_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without `$COLUMNS` and `$LINES`, as under a plain `pytest` in CI:
    pytest-xdist's workers inherit COLUMNS=80, which would narrow the tables the CLI prints."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture
def repo_path() -> Path:
    return REPO


@pytest.fixture
def sample_logs_path() -> Path:
    return REPO / "sample_logs"


@pytest.fixture
def data_path() -> Path:
    return Path(__file__).resolve().parent / "data"


@pytest.fixture
def now() -> datetime:
    """The fixed clock of every report test."""
    return datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _unreadable(*_: object, **__: object) -> None:
    raise OSError("no such file")


@pytest.fixture
def unnamed_zone(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """A machine whose zone nothing names (no TZ, no /etc/localtime link into a zoneinfo
    folder, no /etc/timezone): call it with the machine's offset from UTC in seconds."""

    def offset(seconds: int) -> None:
        monkeypatch.setenv("TZ", "Not/AZone")
        monkeypatch.setattr(smtp.os.path, "realpath", lambda path: path)
        monkeypatch.setattr(smtp, "open", _unreadable, raising=False)
        moment = time.struct_time((*time.localtime()[:9], "X", seconds))
        monkeypatch.setattr(smtp.time, "localtime", lambda *_: moment)

    return offset


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite tests/golden/* from the current output (then review the diff).",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden-file tests rewrite their expected files instead of comparing."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="module")
def folder_layout() -> Iterator[None]:
    """New stores are made in the version-1 folder layout, for the tests of its internals
    (`pytestmark = pytest.mark.usefixtures("folder_layout")`)."""
    from bounce_analyzer import store

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "NEW_STORE_VERSION", 1)
        yield


# The S3-compatible server of the tests of stores on S3 (tests/_s3.py).
from _s3 import bucket, s3_endpoint  # noqa: E402, F401
