"""The rules ship inside the wheel: an installed (non-editable) copy finds them anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (built,) = out.glob("bounce_analyzer-*.whl")
    return built


def test_wheel_contains_the_rules_and_the_generator_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "bounce_analyzer/rules/categories.toml",
        "bounce_analyzer/rules/providers.toml",
        "bounce_analyzer/rules/patterns.toml",
        "bounce_analyzer/rules/blocklists.toml",
        "bounce_analyzer/rules/codes/gmail.csv",
        "bounce_analyzer/rules/codes/enhanced.csv",
        "bounce_analyzer/rules/codes/tables.toml",
        "bounce_analyzer/generate/replies.toml",
        "bounce_analyzer/generate/world.toml",
        "bounce_analyzer/generate/noise.toml",
        "bounce_analyzer/generate/mailboxes.toml",
    ):
        assert name in names


def test_installed_wheel_finds_its_rules_from_another_directory(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("BOUNCE_ANALYZER_RULES", None)
    where = subprocess.run(
        [sys.executable, "-c",
         "import bounce_analyzer.rules as r; print(r.__file__); print(r.builtin_rules_dir())"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(target)
    assert Path(where[1]) == target / "bounce_analyzer" / "rules"
    result = subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "explain", "--json",
         "550-5.1.1 The email account that you tried to reach does not exist.",
         "--recipient", "someone@gmail.com"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    answer = json.loads(result.stdout)
    assert answer["category"] == "user_unknown"
    assert answer["bounce_type"] == "hard"
    assert answer["provider"] == "google"
    assert answer["rule_id"].startswith("gmail:")
