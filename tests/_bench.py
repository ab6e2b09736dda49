"""The benchmark scripts' `--smoke` runs, as the tests of bench/ start them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def run_smoke(script: str, json_path: Path, *args: str) -> tuple[Any, str]:
    """Run `bench/SCRIPT --smoke --json JSON_PATH ARGS` with this interpreter; assert it
    succeeded and return (what it wrote to JSON_PATH, what it printed)."""
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--smoke", "--json", str(json_path), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(json_path.read_text(encoding="utf-8")), done.stdout
