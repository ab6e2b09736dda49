"""The HTML report as a person sees it: written by the real command line from the bundled
sample logs, opened in headless Chromium (Debian's /usr/bin/chromium, driven by playwright,
which never downloads a browser of its own here), at a phone's and a desktop's width.

It checks what a reader meets: the page loads from the file alone (every request is routed,
and any that is not the file itself fails the test), the console has no error, each chart is
an SVG with a title, nothing is wider than the screen but the tables' own scrolling boxes, and
the numbers in the page's tables are `report --format json`'s.

Without chromium the test skips, with the reason, unless CI is set: CI must not pass without
running it (.ci/run installs chromium).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _cli import invoke
from _samples import copy_sample_logs
from bounce_analyzer.html import CHARTS
from bounce_analyzer.render import DURATION_COLUMNS, duration

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOW = ["--since", "2026-11-20", "--until", "2026-11-28T12:00", "--tz", "UTC", "--quiet"]
#: Where the desktop screenshot is kept (docs/REPORTS.md shows it); rewritten by
#: `pytest tests/test_html_browser.py --update-golden`.
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "report-html.png"
WIDTHS = {"phone": (390, 844), "desktop": (1280, 900)}


def _browser_or_skip() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not missing:
        return
    reason = f"the browser test needs {' and '.join(missing)}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: under CI it must run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The HTML report of the sample logs in a file, and the same report as JSON."""
    folder = tmp_path_factory.mktemp("browser")
    samples = copy_sample_logs(folder)
    target = folder / "report.html"
    result = invoke("report", str(samples), *WINDOW, "--format", "html", "-o", str(target))
    assert result.exit_code == 0, result.output
    result = invoke("report", str(samples), *WINDOW, "--format", "json")
    assert result.exit_code == 0, result.output
    return target, json.loads(result.stdout)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def _open(browser: Any, page_file: Path, width: int, height: int) -> tuple[Any, list[str]]:
    """The page at `width`; the problems seen while it loaded (console errors, page errors,
    requests for anything but the file)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    url = page_file.as_uri()

    def route(request_route: Any) -> None:
        if request_route.request.url == url:
            request_route.continue_()
        else:
            problems.append(f"request left the page: {request_route.request.url}")
            request_route.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    return page, problems


@pytest.mark.parametrize("screen", list(WIDTHS))
def test_the_page_reads_whole_at_phone_and_desktop_widths(
    pages: tuple[Path, dict[str, Any]],
    browser: Any,
    screen: str,
    tmp_path: Path,
    update_golden: bool,
) -> None:
    page_file, _ = pages
    width, height = WIDTHS[screen]
    page, problems = _open(browser, page_file, width, height)
    shot = tmp_path / f"{screen}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a page was drawn, not a blank
    if screen == "desktop" and update_golden:  # the header and the charts, for the docs
        page.screenshot(
            path=str(SCREENSHOT),
            full_page=True,
            clip={"x": 0, "y": 0, "width": width, "height": 1560},
        )
    assert problems == []
    # every chart is there as an SVG, with its title, and fits the screen
    charts = page.eval_on_selector_all(
        "figure[data-chart]",
        """figures => figures.map(f => ({
            name: f.dataset.chart,
            caption: f.querySelector('figcaption').textContent,
            title: f.querySelector('svg > title')?.textContent,
            width: f.querySelector('svg').getBoundingClientRect().width,
        }))""",
    )
    assert [(c["name"], c["caption"], c["title"]) for c in charts] == [
        (name, title, title) for name, title in CHARTS
    ]
    assert all(0 < chart["width"] <= width for chart in charts), charts
    # the page itself never scrolls sideways: wide tables scroll inside their own box
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.context.close()


def _numbers(page: Any, table: str) -> list[dict[str, str]]:
    """A table's rows as {column: the text of its cell}."""
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        f'table[data-table="{table}"] tbody tr',
        """rows => rows.map(r => Object.fromEntries(
            [...r.querySelectorAll('td')].map(c => [c.dataset.column, c.textContent])))""",
    )
    return rows


def _shown(value: Any, column: str) -> str:
    """A JSON value as the page shows it."""
    if column in ("failure_rate", "share"):
        return "-" if value is None else f"{100 * value:.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("totals", ("view", "delivered", "deferred", "failed", "hard", "soft", "failure_rate")),
        ("groups", ("provider", "messages", "failed", "hard", "soft", "failure_rate", "attempts")),
        ("categories", ("category", "count", "share", "failed", "deferred", "hard", "soft")),
        ("recipient_domains", ("recipient_domain", "messages", "failed", "failure_rate")),
        ("blocklists", ("blocklist", "attempts", "failed", "deferred")),
    ],
)
def test_the_numbers_in_the_page_are_the_json_reports(
    pages: tuple[Path, dict[str, Any]], browser: Any, table: str, columns: tuple[str, ...]
) -> None:
    page_file, document = pages
    page, problems = _open(browser, page_file, *WIDTHS["desktop"])
    shown = _numbers(page, table)
    assert document[table], f"the sample report has no {table}: nothing to compare"
    assert [{c: row[c] for c in columns} for row in shown] == [
        {c: _shown(row[c], c) for c in columns} for row in document[table]
    ]
    if table == "totals":  # the events column is the JSON's total
        assert [row["events"] for row in shown] == [f"{r['total']:,}" for r in document["totals"]]
    assert problems == []
    page.context.close()


def test_each_category_shows_its_advice_and_top_messages(
    pages: tuple[Path, dict[str, Any]], browser: Any
) -> None:
    page_file, document = pages
    page, _ = _open(browser, page_file, *WIDTHS["phone"])
    shown = page.eval_on_selector_all(
        "h3[data-category]",
        """heads => heads.map(h => {
            const advice = h.nextElementSibling.classList.contains('advice')
                ? h.nextElementSibling.textContent : null;
            const table = (advice ? h.nextElementSibling.nextElementSibling
                                  : h.nextElementSibling).querySelector('table');
            return [h.dataset.category, advice,
                    [...table.querySelectorAll('tbody td[data-column=count]')]
                        .map(c => c.textContent)];
        })""",
    )
    expected = [
        [row["category"], row.get("advice"), [f"{m['count']:,}" for m in row["top_messages"]]]
        for row in sorted(document["categories"], key=lambda row: row["category"])
        if row["top_messages"]
    ]  # (in the order of the text report: by category)
    assert shown == expected
    assert all(advice for _, advice, _ in shown)  # the sample's categories all have advice
    page.context.close()


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("hourly", ("hour", "attempts", "delivered", "deferred", "failed", "failure_rate")),
        ("provider_delays", ("provider", "delivered", "median_delay_s", "p95_delay_s")),
        ("domain_delays", ("recipient_domain", "delivered", "median_delay_s", "max_delay_s")),
        ("queue_times", ("queue_time", "delivered", "share")),
        ("resolutions", ("provider", "deferred", "delivered", "failed", "median_to_delivery_s")),
        ("sending_hosts", ("source", "host", "attempts", "failed", "blocks", "failure_rate")),
    ],
)
def test_the_delays_in_the_page_are_the_json_reports(
    pages: tuple[Path, dict[str, Any]], browser: Any, table: str, columns: tuple[str, ...]
) -> None:
    """The delay, hourly and sending-host tables (issue 15): durations as the text report
    shows them (`render.duration`), the hours with traffic (the JSON has all 24)."""
    page_file, document = pages
    page, problems = _open(browser, page_file, *WIDTHS["desktop"])
    shown = _numbers(page, table)
    rows = [row for row in document[table] if table != "hourly" or row["attempts"]]
    assert rows, f"the sample report has no {table}: nothing to compare"

    def as_shown(value: Any, column: str) -> str:
        if column in DURATION_COLUMNS:
            return "-" if value is None else duration(value)
        if column == "host":  # (none logged: Exim's mainlog, an ESP's event never sent)
            return "-" if value is None else str(value)
        return _shown(value, column)

    assert [{c: row[c] for c in columns} for row in shown] == [
        {c: as_shown(row[c], c) for c in columns} for row in rows
    ]
    assert problems == []
    page.context.close()
