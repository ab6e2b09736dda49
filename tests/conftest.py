"""Shared fixtures: where the repository's data lives, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
