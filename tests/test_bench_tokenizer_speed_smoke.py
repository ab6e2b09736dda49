"""`bench/tokenizer_speed.py` times the C tokenizers alone and the reader's newline count
(issue 18; the figures are in bench/RESULTS.md, "The tokenizers per byte")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from _bench import REPO
from bounce_analyzer import native


@pytest.mark.parametrize(("source", "log"), [("postfix", "mail.log"), ("exim", "mainlog")])
def test_tokenizer_speed_times_a_sample_log(source: str, log: str) -> None:
    if native.built(source) is None:
        pytest.skip(f"the C tokenizer of {source} is not built here (the polars path runs)")
    path = Path(REPO) / "sample_logs" / source / log
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tokenizer_speed.py"), source, str(path),
         "--rounds", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = re.fullmatch(
        rf"{source}: 1 batches; least CPU of 2 rounds: tokenizer (\S+) s, newlines counted "
        r"in C (\S+) s, by bytes.count (\S+) s\n",
        done.stdout,
    )
    assert figures is not None, done.stdout
    assert all(float(figure) >= 0 for figure in figures.groups())
