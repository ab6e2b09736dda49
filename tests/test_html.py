"""`report --format html` and `report -o FILE` through the real command line: the page's
structure (a golden outline: headings, tables and their headers, charts and their titles; not
the SVG's bytes, which change with matplotlib's version), that it needs nothing outside
itself, that log texts are escaped, and where the file goes.

The browser's view of the page is tests/test_html_browser.py's. After an intended change of
the page, rewrite the outline with `pytest tests/test_html.py --update-golden` and review the
diff of tests/golden/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _cli import invoke
from _samples import BOUNCED, copy_sample_logs, date_files
from bounce_analyzer.html import CHARTS, structure

GOLDEN = Path(__file__).resolve().parent / "golden"
WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of sample_logs/ whose files are dated 2026-11-28."""
    return copy_sample_logs(tmp_path_factory.mktemp("html"))


def _page(samples: Path, tmp_path: Path, *options: str) -> str:
    target = tmp_path / "report.html"
    result = invoke(
        "report", str(samples), *WINDOW, "--format", "html", "-o", str(target), *options
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the page went to the file
    return target.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("direction", "golden"),
    [("outbound", "report-html.txt"), ("all", "report-all-html.txt")],
)
def test_the_page_has_the_structure_of_its_golden_outline(
    samples: Path, tmp_path: Path, update_golden: bool, direction: str, golden: str
) -> None:
    outline = "\n".join(structure(_page(samples, tmp_path, "--direction", direction))) + "\n"
    if update_golden:
        (GOLDEN / golden).write_text(outline, encoding="utf-8")
    assert outline == (GOLDEN / golden).read_text(encoding="utf-8")


def test_the_page_needs_nothing_outside_itself(samples: Path, tmp_path: Path) -> None:
    page = _page(samples, tmp_path)
    assert page.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<script" not in page.lower()  # readable where no script runs (a mail client)
    # nothing fetched: no link, no source, no url() (the SVG's own namespaces are names only)
    assert not re.search(r"<link|\ssrc=|url\(\s*['\"]?(?:https?:)?//", page, flags=re.I)
    assert "default-src 'none'" in page
    assert page.count("<svg") == len(CHARTS)
    for name, title in CHARTS:
        assert f'<figure data-chart="{name}"><figcaption>{title}</figcaption><svg' in page


def test_texts_from_remote_servers_are_escaped(tmp_path: Path) -> None:
    """A reply can hold any text a remote server chose to write: markup in it is shown as
    text, never run or drawn."""
    line = BOUNCED.replace(
        "550 5.1.1 User unknown",
        '550 5.1.1 <img src=x onerror="alert(1)"> User unknown <b>&amp;</b>',
    )
    log = tmp_path / "mail.log"
    log.write_text(line + "\n", encoding="utf-8")
    date_files(tmp_path)
    page = _page(log, tmp_path)
    assert "<img" not in page and "<b>" not in page
    # (the message as the report masks it: lower case, numbers as #)
    assert (
        "<code>[550 5.1.1] &lt;img src=x onerror=&quot;alert(#)&quot;&gt; user unknown "
        "&lt;b&gt;&amp;amp;&lt;/b&gt;</code>"
    ) in page


def test_output_to_a_missing_folder_is_one_error_line(samples: Path, tmp_path: Path) -> None:
    target = tmp_path / "no such folder" / "report.html"
    result = invoke("report", str(samples), *WINDOW, "--format", "html", "-o", str(target))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot write {target}: no such file or directory"
    assert not target.parent.exists()


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json"])
def test_output_writes_every_format_as_stdout_would_show_it(
    samples: Path, tmp_path: Path, fmt: str
) -> None:
    shown = invoke("report", str(samples), *WINDOW, "--format", fmt)
    target = tmp_path / f"report.{fmt}"
    written = invoke("report", str(samples), *WINDOW, "--format", fmt, "-o", str(target))
    assert shown.exit_code == written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == shown.stdout
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left beside it


def test_output_never_overwrites_an_input(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BOUNCED + "\n", encoding="utf-8")
    result = invoke("report", str(log), *WINDOW, "--format", "html", "-o", str(log))
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ")
    assert log.read_text(encoding="utf-8") == BOUNCED + "\n"


def test_the_delay_chart_takes_the_median_and_p95_of_delivered_attempts() -> None:
    """Deliveries only (a bounce's delay is not a delivery's), by provider and by domain,
    within the window and of the direction shown; every hour of the day is in the hourly
    table the chart draws, empty ones with zeros."""
    from datetime import UTC, datetime

    import polars as pl

    from bounce_analyzer.delays import hourly
    from bounce_analyzer.report import in_window
    from bounce_analyzer.series import chart_series

    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    delays = [1.0, 2.0, 3.0, 4.0, 100.0]
    events = pl.LazyFrame(
        {
            "timestamp": [at] * 7 + [datetime(2026, 11, 1, tzinfo=UTC)],
            "event": ["delivered"] * 5 + ["bounced", "delivered", "delivered"],
            "direction": ["outbound"] * 6 + ["inbound", "outbound"],
            "provider": ["google"] * 8,
            "recipient_domain": ["gmail.com"] * 8,
            "delay_s": [*delays, 5000.0, 7000.0, 9000.0],
        },
        schema_overrides={"timestamp": pl.Datetime("us", "UTC")},
    )
    series = chart_series(events, since=datetime(2026, 11, 20, tzinfo=UTC))
    # p95 of 1, 2, 3, 4, 100: 4 + 0.8 * 96
    assert series.provider_delays.rows()[0][0] == "google"
    assert series.provider_delays.rows()[0][1:] == pytest.approx((5, 3.0, 80.8, 100.0))
    assert series.domain_delays.rows()[0][1:] == pytest.approx((5, 3.0, 80.8, 100.0))
    hours = hourly(in_window(events, since=datetime(2026, 11, 20, tzinfo=UTC))).collect()
    assert hours.height == 24
    assert hours.filter(pl.col("hour") == 10).rows() == [(10, 6, 5, 0, 1, 0, 0.1667)]
    assert series.provider_daily.rows() == [(at.date(), "google", 6, 1, 0.1667)]


def _chart_texts(page: str, chart: str) -> list[str]:
    """The texts of a chart (matplotlib writes each beside its glyphs as an SVG comment)."""
    start = page.index(f'<figure data-chart="{chart}">')
    return re.findall(r"<!-- (.*?) -->", page[start : page.index("</figure>", start)])


def test_an_empty_chart_says_what_the_window_lacks(samples: Path, tmp_path: Path) -> None:
    """SendGrid's events carry no delay: its delay charts say so, not that the window has no
    events; a window of deliveries alone has no failure category to draw."""
    page = _page(samples / "sendgrid", tmp_path)
    for chart in ("provider_delays", "domain_delays", "queue_times"):
        assert _chart_texts(page, chart) == ["no delivered attempt with a delay in the window"]
    assert "no events in the window" not in _chart_texts(page, "daily")
    delivered = tmp_path / "logs" / "mail.log"
    delivered.parent.mkdir()
    delivered.write_text(
        BOUNCED.replace("dsn=5.1.1, status=bounced", "dsn=2.0.0, status=sent") + "\n",
        encoding="utf-8",
    )
    date_files(delivered.parent)
    page = _page(delivered.parent, tmp_path)
    assert _chart_texts(page, "categories") == ["no failed or deferred attempts in the window"]
    assert "delivered" in _chart_texts(page, "daily")


def test_the_delay_charts_read_in_durations_on_a_log_scale(samples: Path, tmp_path: Path) -> None:
    """A median of two seconds beside a p95 of twenty minutes: on seconds in a straight line
    the median's bar was too thin to see. The axis is logarithmic, its ticks durations up to
    twice the longest p95 (the sample logs': 24m16s, Yahoo)."""
    page = _page(samples, tmp_path)
    for chart in ("provider_delays", "domain_delays"):
        texts = _chart_texts(page, chart)
        assert [t for t in texts if t[0].isdigit()] == ["1s", "10s", "1m", "10m"], texts
        assert "time from our receipt of the message to its delivery (log scale)" in texts


def test_no_line_of_the_page_passes_what_a_mail_may_hold(samples: Path, tmp_path: Path) -> None:
    """The README's cron line mails the page as it is: a mail's lines may not pass 998
    characters (RFC 5322), and Postfix breaks a longer one at its limit, in the middle of a
    tag. Each table was one line of up to 25,616 characters; now a row is a line, and a reply
    of a thousand characters is broken between its words, reading the same."""
    page = _page(samples, tmp_path)
    assert max(map(len, page.encode().splitlines())) <= 998
    # 2,400 characters of words the masking keeps (no digits), each with a character of two
    # bytes: a line of 998 characters would be more octets
    words = " ".join(f"wörd{chr(97 + n % 26)}{chr(97 + n // 26)}" for n in range(300))
    log = tmp_path / "long" / "mail.log"
    log.parent.mkdir()
    log.write_text(BOUNCED.replace("User unknown", f"User unknown {words}") + "\n", "utf-8")
    date_files(log.parent)
    page = _page(log.parent, tmp_path)
    assert max(map(len, page.encode().splitlines())) <= 998
    code = re.search(r"<code>(\[550 5\.1\.1\] user unknown w.*?)</code>", page, flags=re.S)
    assert code is not None and "\n" in code.group(1)
    assert " ".join(code.group(1).split()) == f"[550 5.1.1] user unknown {words}"


@pytest.mark.parametrize(
    ("fmt", "suffix", "mime"), [("html", "html", "text/html"), ("markdown", "md", "text/plain")]
)
def test_the_readmes_cron_line_mails_the_page_as_a_mail_reader_opens_it(
    samples: Path, tmp_path: Path, fmt: str, suffix: str, mime: str
) -> None:
    """The README's lines that mail the HTML and the Markdown report, run by a shell as cron
    runs them, with this test's store, logs and window, and a file for sendmail: one part of
    its type in UTF-8 whose lines a mail may hold, the report whole."""
    import email
    import os
    import subprocess
    import sys
    from email.message import Message

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    line = next(
        line
        for line in readme.splitlines()
        if line.endswith("/usr/sbin/sendmail -t") and f"--format {fmt} " in line
    )
    command = line.split(" ", 5)[5]  # (after cron's five time fields)
    mail = tmp_path / "mail.eml"
    for theirs, ours in (
        ("/srv/bounces", str(tmp_path / "store")),
        ("/var/log/mail.log*", f"{samples}/postfix/mail.log*"),
        ("--since 24h", "--since 2026-11-20 --until 2026-11-28"),
        (f"/var/tmp/bounces.{suffix}", str(tmp_path / f"bounces.{suffix}")),
        ("/usr/sbin/sendmail -t", f"cat > {mail}"),
    ):
        assert theirs in command
        command = command.replace(theirs, ours)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["/bin/sh", "-c", command], env={**os.environ, "PATH": path}, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    message: Message = email.message_from_bytes(mail.read_bytes())
    assert (message["To"], message["Subject"]) == ("postmaster", "bounces")
    assert message.get_content_type() == mime
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "8bit"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    page = body.decode("utf-8")
    assert page == (tmp_path / f"bounces.{suffix}").read_text(encoding="utf-8")
    if fmt == "html":
        assert page.startswith("<!doctype html>") and page.count("<svg") == len(CHARTS)
    else:
        assert page.startswith("# bounce-analyzer report") and "×" in page  # not ASCII
    assert max(map(len, mail.read_bytes().splitlines())) <= 998
