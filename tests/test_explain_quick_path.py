"""`bounce-analyzer explain -` with no other option runs without the command line's modules and
their option parser (issue 14, speed of `explain -`; `__main__.main`): the same answers, errors
and exit codes as through them, in a real process (the parser's path is taken as soon as any
option is given)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# real replies (tests/data/diagnostics/messages.tsv) and a JSON line, as a pipeline feeds them
LINES = [
    "host gmail-smtp-in.l.google.com[142.250.153.27] said: 550-5.1.1 The email account that "
    "you tried to reach does not exist. (in reply to RCPT TO command)",
    '{"diagnostic": "452 4.2.2 Mailbox full", "recipient": "anna@yahoo.com"}',
    "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
]


def _explain(
    stdin: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bounce_analyzer", "explain", "-", *options],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_the_quick_path_answers_as_the_parser_path() -> None:
    quick = _explain("\n".join(LINES) + "\n")
    parsed = _explain("\n".join(LINES) + "\n", "--direction", "outbound")
    assert quick.returncode == 0, quick.stderr
    assert quick.stdout == parsed.stdout
    answers = [json.loads(line) for line in quick.stdout.splitlines()]
    assert [answer["category"] for answer in answers] == ["user_unknown", "mailbox_full", "blocked"]
    assert answers[2]["blocklist"] == "spamhaus"


def test_the_quick_path_does_not_load_the_command_line() -> None:
    # the console script's entry, as the installed script runs it
    quick = (
        "import sys; from bounce_analyzer.__main__ import main; "
        "sys.argv = ['bounce-analyzer', 'explain', '-']; main(); "
        "print(sorted(m for m in ('typer', 'bounce_analyzer.cli') if m in sys.modules), "
        "file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", quick],
        input=LINES[0] + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["category"] == "user_unknown"
    assert done.stderr.strip() == "[]"


def test_the_quick_path_reports_errors_as_the_parser_path(tmp_path: Path) -> None:
    bad_line = "550 5.1.1 User unknown\n{not json\n"
    quick = _explain(bad_line)
    parsed = _explain(bad_line, "--direction", "outbound")
    assert (quick.returncode, quick.stderr) == (parsed.returncode, parsed.stderr)
    assert quick.returncode == 2
    assert quick.stderr == "Error: <stdin>:2: not a JSON object: {not json\n"
    missing = {"BOUNCE_ANALYZER_RULES": str(tmp_path / "nowhere")}
    quick = _explain("550 5.1.1 User unknown\n", env=missing)
    parsed = _explain("550 5.1.1 User unknown\n", "--direction", "outbound", env=missing)
    assert (quick.returncode, quick.stderr) == (parsed.returncode, parsed.stderr)
    assert quick.stderr == f"Error: {tmp_path / 'nowhere'}: rules folder does not exist\n"
    assert quick.returncode != 0 and "Traceback" not in quick.stderr


#: `explain TEXT...` command lines: the words of a message (joined with a space), one not
#: UTF-8, control characters (escaped for a terminal), a bare code.
WORDS = [
    ["550-5.1.1", "The", "email", "account", "that", "you", "tried", "to", "reach", "does", "not"],
    [LINES[2]],
    ["452 4.2.2 Mailbox full for jos\udce9@example.org"],
    ["550 rejected \x1b[31mred\x1b[0m \u202e"],
    ["5.7.26"],
    [""],
]
#: The console script's entry with the command line's parser alone: `cli.main`.
PARSED = "import sys; from bounce_analyzer.cli import main; sys.argv[0] = 'bounce-analyzer'; main()"


def _words(
    *argv: str, parsed: bool, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    entry = ["-c", PARSED] if parsed else ["-m", "bounce_analyzer"]
    return subprocess.run(
        [sys.executable, *entry, "explain", *argv],
        capture_output=True,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        timeout=120,
    )


def test_explain_words_quickly_as_the_parser_does() -> None:
    """`explain TEXT...` without an option runs without the command line's modules too
    (`__main__._plain_explain`): the same explanation, byte for byte."""
    for words in WORDS:
        argv = [os.fsencode(word).decode("utf-8", "surrogateescape") for word in words]
        quick, parsed = _words(*argv, parsed=False), _words(*argv, parsed=True)
        assert (quick.returncode, quick.stdout, quick.stderr) == (
            parsed.returncode,
            parsed.stdout,
            parsed.stderr,
        ), words
        assert quick.returncode == 0 and b"category:" in quick.stdout, quick.stderr
    loaded = (
        "import sys; from bounce_analyzer.__main__ import main; "
        "sys.argv = ['bounce-analyzer', 'explain', '550', 'user', 'unknown']; main(); "
        "print(sorted(m for m in ('typer', 'bounce_analyzer.cli') if m in sys.modules), "
        "file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", loaded], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert "user_unknown" in done.stdout


def test_explain_words_quickly_fails_as_the_parser_does(tmp_path: Path) -> None:
    env = {"BOUNCE_ANALYZER_RULES": str(tmp_path / "missing")}
    quick = _words("550", "user", "unknown", parsed=False, env=env)
    parsed = _words("550", "user", "unknown", parsed=True, env=env)
    assert (quick.returncode, quick.stdout, quick.stderr) == (
        parsed.returncode,
        parsed.stdout,
        parsed.stderr,
    )
    assert quick.returncode == 1
    assert quick.stderr.decode() == f"Error: {tmp_path / 'missing'}: rules folder does not exist\n"
