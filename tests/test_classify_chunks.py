"""An event's answer does not depend on the other events classified with it (issue 14).

The pipeline classifies a file in many calls and `explain -` a stream in chunks, so the same
events are cut differently from one run to the next. Each event must get the same answer in
one call, in chunks of any size, in any order, and with or without what the engine remembers
from earlier calls: a key's decision is a function of the key alone. Over generated Postfix and
Exim logs (three seeds each), sample_logs/ and the labelled rows of tests/data/diagnostics/.
"""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from bounce_analyzer import classify as classify_module
from bounce_analyzer.blocklists import blocklist_of
from bounce_analyzer.classify import INPUT_COLUMNS, _prepared, classify
from bounce_analyzer.explain import explain_stream
from bounce_analyzer.generate import generate_exim, generate_postfix
from bounce_analyzer.normalize import grouped_texts
from bounce_analyzer.pipeline import ParseRun
from bounce_analyzer.retry import retry_after
from bounce_analyzer.rules import Rules, load_rules

TESTS = Path(__file__).resolve().parent
SAMPLE_LOGS = TESTS.parent / "sample_logs"
LABELLED = TESTS / "data" / "diagnostics"
NOW = datetime(2026, 11, 28, tzinfo=UTC)
START = datetime(2026, 11, 27, tzinfo=UTC)
SEEDS = (1, 2, 3)
#: What the engine answers for each event.
ANSWERS = [
    "smtp_code",
    "enhanced_code",
    "provider",
    "category",
    "category_group",
    "bounce_type",
    "permanent",
    "rule_id",
    "direction",
    "blocklist",
    "retry_after",
]
#: The facts the engine reads, and what decides the direction.
FACTS = [*INPUT_COLUMNS, "recipient", "sender", "sender_domain", "client_host", "transport"]


def _log(folder: Path, kind: str, seed: int) -> Path:
    path = folder / f"{kind}-{seed}.log"
    write = generate_exim if kind == "exim" else generate_postfix
    with path.open("wb") as out:
        write(out, lines=1500, seed=seed, start=START, days=1)
    return path


def _events(path: Path) -> pl.DataFrame:
    events = pl.concat([chunk.events for chunk in ParseRun([str(path)], tz="UTC", now=NOW)])
    return events.select(name for name in FACTS if name in events.columns)


def _labelled() -> pl.DataFrame:
    rows: list[dict[str, str]] = []
    for path in sorted(LABELLED.glob("*.tsv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows += csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    return pl.DataFrame(rows).select(
        pl.lit("bounced").alias("event"),
        pl.col("smtp_code").replace("", None).cast(pl.Int16),
        pl.col("enhanced_code").replace("", None),
        "diagnostic",
        pl.col("recipient").str.extract(r"@(.+)$", 1).alias("recipient_domain"),
        pl.col("relay_host").replace("", None),
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("chunks")
    return [_log(folder, kind, seed) for kind in ("postfix", "exim") for seed in SEEDS]


#: How Postfix and Exim log a remote server's reply (sample_logs/), with addresses and hosts
#: of several lengths: one key, texts that differ where the key masks them.
ENVELOPES = [
    "host mx3.shop41.example[198.51.100.7] said: {text} (in reply to RCPT TO command)",
    "host mail.example.org[192.0.2.1] said: {text} (in reply to RCPT TO command)",
    "SMTP error from remote mail server after RCPT TO:<anna@shop41.example>: {text}",
    "SMTP error from remote mail server after RCPT TO:<maria-helena.carvalho12345@"
    "mailbox.example-provider.co.uk>: {text}",
]


@pytest.fixture(scope="module")
def events(logs: list[Path]) -> pl.DataFrame:
    """The facts of every event of the generated logs and sample_logs/, the labelled rows,
    bare and as Postfix and Exim log them, and the generated Exim logs' lines whole (as
    `explain` reads a pasted line: the issue's `H=(helo) [ip] F=<sender> rejected RCPT
    <rcpt>: 192.0.2.1 is listed at zen.spamhaus.org`), in one frame."""
    samples = sorted(path for path in SAMPLE_LOGS.rglob("*") if path.is_file())
    frames = [_events(path) for path in [*logs, *samples] if path.suffix != ".md"]
    labelled = _labelled()
    wrapped = [
        labelled.with_columns(pl.format(envelope.replace("{text}", "{}"), "diagnostic"))
        for envelope in ENVELOPES
    ]
    lines = pl.DataFrame(
        {
            "event": "rejected",
            "diagnostic": [
                line
                for path in logs
                if path.name.startswith("exim")
                for line in path.read_text(encoding="utf-8").splitlines()
            ],
        }
    )
    return pl.concat([*frames, labelled, *wrapped, lines], how="diagonal_relaxed")


def _shared_keys(texts: pl.Series, *, most: int) -> pl.Series:
    """The positions of at most `most` of `texts` that share their normalized text with a
    different text, none first of its key (the events whose answer could depend on which of
    them a call meets first; at most three of each key, spread over the keys and the texts)."""
    grouped = grouped_texts(texts)
    frame = pl.DataFrame({"text": texts, "key": grouped}).with_row_index("at")
    shared = frame.filter(
        (pl.col("text").n_unique().over("key") > 1)
        & pl.col("key").is_not_null()
        & (pl.col("text") != pl.col("text").first().over("key"))
    )
    picked = shared.unique("text", keep="first", maintain_order=True).filter(
        pl.int_range(pl.len()).over("key") < 3
    )
    return picked["at"].gather_every(max(1, -(-picked.height // most))).sort()


def _forget(rules: Rules) -> None:
    """What the engine remembered of earlier calls with `rules`, forgotten."""
    memory = _prepared(rules).memory
    with memory.lock:
        memory.decisions = None


def _in_chunks(
    frame: pl.DataFrame, size: int, rules: Rules, *, remember: bool = True
) -> pl.DataFrame:
    parts = []
    for start in range(0, frame.height, size):
        if not remember:
            _forget(rules)
        parts.append(classify(frame.slice(start, size), rules))
    return pl.concat(parts)


def _differences(expected: pl.DataFrame, got: pl.DataFrame, texts: pl.Series) -> list[str]:
    """The events whose answers differ, one line each (the first ten)."""
    differ = pl.concat(
        [expected.select(ANSWERS), got.select(ANSWERS).rename(lambda name: f"{name}_got")],
        how="horizontal",
    ).select(pl.any_horizontal(pl.col(name).ne_missing(pl.col(f"{name}_got")) for name in ANSWERS))
    rows = differ.to_series().arg_true().to_list()
    return [f"{texts[row]!r}: {expected.row(row)} != {got.row(row)}" for row in rows[:10]] + (
        [f"... {len(rows)} in all"] if len(rows) > 10 else []
    )


@pytest.fixture(scope="module")
def whole(events: pl.DataFrame) -> pl.DataFrame:
    """Every event classified in one call, by rules that remember nothing yet."""
    return classify(events, replace(load_rules())).select(ANSWERS)


@pytest.fixture(scope="module")
def tricky(events: pl.DataFrame) -> pl.Series:
    """Where small chunks are tried (a call costs some milliseconds whatever its size)."""
    return _shared_keys(events["diagnostic"], most=600)


def test_the_frame_holds_keys_of_several_texts(events: pl.DataFrame, tricky: pl.Series) -> None:
    # the property is only tried where it can fail: texts that are one key
    assert events.height > 3000
    assert len(tricky) > 300


def test_chunks_give_the_answers_of_one_call(events: pl.DataFrame, whole: pl.DataFrame) -> None:
    chunked = _in_chunks(events, 333, replace(load_rules()))
    assert _differences(whole, chunked, events["diagnostic"]) == []


def test_small_chunks_give_the_answers_of_one_call(
    events: pl.DataFrame, whole: pl.DataFrame, tricky: pl.Series
) -> None:
    chunked = _in_chunks(events[tricky], 7, replace(load_rules()))
    assert _differences(whole[tricky], chunked, events["diagnostic"].gather(tricky)) == []


def test_events_alone_give_the_answers_of_one_call(
    events: pl.DataFrame, whole: pl.DataFrame, tricky: pl.Series
) -> None:
    # one event a call, remembering nothing from the calls before: each key decided by an
    # event that is not the first of its key in the frame
    alone_rows = tricky.head(120)
    alone = _in_chunks(events[alone_rows], 1, replace(load_rules()), remember=False)
    texts = events["diagnostic"].gather(alone_rows)
    assert _differences(whole[alone_rows], alone, texts) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_any_order_gives_the_same_answers(
    events: pl.DataFrame, whole: pl.DataFrame, seed: int
) -> None:
    order = pl.Series(range(events.height)).shuffle(seed=seed)
    rules = replace(load_rules())
    shuffled = _in_chunks(events[order], 333, rules)
    back = shuffled[order.arg_sort()]
    assert _differences(whole, back, events["diagnostic"]) == []


def test_remembered_decisions_are_the_ones_made_afresh(
    events: pl.DataFrame, whole: pl.DataFrame
) -> None:
    # a second pass looks every key up in what the first remembered
    rules = replace(load_rules())
    classify(events, rules)
    remembered = _prepared(rules).memory.decisions
    assert remembered is not None and remembered.height > 1000
    assert _differences(whole, classify(events, rules), events["diagnostic"]) == []


# --- explain - ---------------------------------------------------------------------------------


def _explained(lines: list[str], per_chunk: int, rules: Rules) -> list[dict[str, object]]:
    stream = io.StringIO("".join(f"{line}\n" for line in lines))
    return [
        json.loads(answer)
        for chunk in explain_stream(stream, rules=rules, lines_per_chunk=per_chunk)
        for answer in chunk.splitlines()
    ]


@pytest.fixture(scope="module")
def explain_lines(logs: list[Path]) -> list[str]:
    """Whole log lines, as a person pastes them (`H=(helo) [ip] F=<sender> rejected RCPT
    <rcpt>: 192.0.2.1 is listed at zen.spamhaus.org`), and the labelled texts."""
    lines = [
        line
        for path in logs
        for line in path.read_text(encoding="utf-8").splitlines()
        if path.name.startswith("exim")
    ]
    return lines + [text.replace("\n", " ") for text in _labelled()["diagnostic"].to_list()]


@pytest.mark.parametrize("per_chunk", [7, 333])
def test_explain_gives_the_same_answers_in_any_chunks(
    explain_lines: list[str], per_chunk: int
) -> None:
    lines = explain_lines
    if per_chunk < 100:
        lines = [lines[at] for at in _shared_keys(pl.Series(lines), most=600).to_list()]
    expected = _explained(explain_lines, 100_000, replace(load_rules()))
    if lines is not explain_lines:
        at = {line: row for row, line in enumerate(explain_lines)}
        expected = [expected[at[line]] for line in lines]
    got = _explained(lines, per_chunk, replace(load_rules()))
    assert len(got) == len(expected) == len(lines)
    differ = [
        (line, want["rule_id"], had["rule_id"])
        for line, want, had in zip(lines, expected, got, strict=True)
        if want != had
    ]
    assert differ[:10] == []


def test_explain_of_one_line_alone(explain_lines: list[str]) -> None:
    rules = replace(load_rules())
    expected = _explained(explain_lines, 100_000, rules)
    differ = []
    for row in _shared_keys(pl.Series(explain_lines), most=60).to_list():
        _forget(rules)
        if _explained([explain_lines[row]], 1, rules)[0] != expected[row]:
            differ.append(explain_lines[row])
    assert differ[:10] == []


# --- the memory ---------------------------------------------------------------------------------


def test_the_memory_is_bounded(
    events: pl.DataFrame, whole: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # past its bound the memory forgets its oldest keys, and the answers stay the same
    monkeypatch.setattr(classify_module, "_DECISIONS_REMEMBERED", 50)
    rules = replace(load_rules())
    chunked = _in_chunks(events, 333, rules)
    remembered = _prepared(rules).memory.decisions
    assert remembered is not None and remembered.height == 50
    assert remembered.select(classify_module._KEY).is_unique().all()
    assert _differences(whole, chunked, events["diagnostic"]) == []


def test_pairs_past_the_hosts_bound_keep_their_provider(
    events: pl.DataFrame, whole: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a call with more new (recipient domain, relay host) pairs than the memory keeps answers
    # each from what it worked out, not from the memory, which another thread may also have
    # replaced meanwhile (a KDDI row once got no provider under 4 threads, and so `user_unknown`
    # for `filtered`)
    pairs = events.select(classify_module._HOST).unique().height
    assert pairs > 20
    monkeypatch.setattr(classify_module, "_REMEMBERED", 10)
    rules = replace(load_rules())
    alone = classify(events, rules).select(ANSWERS)
    assert _prepared(rules).memory.hosts.height == 10
    assert _differences(whole, alone, events["diagnostic"]) == []


def test_calls_in_threads_share_the_memory(events: pl.DataFrame, whole: pl.DataFrame) -> None:
    # the pipeline classifies in threads of its own: calls at the same time with one Rules
    # object remember each key once and give the answers of one call
    rules = replace(load_rules())
    starts = range(0, events.height, 1000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(lambda start: classify(events.slice(start, 1000), rules), starts))
    remembered = _prepared(rules).memory.decisions
    assert remembered is not None
    assert remembered.select(classify_module._KEY).is_unique().all()
    assert _differences(whole, pl.concat(parts), events["diagnostic"]) == []


# --- the work done aside -----------------------------------------------------------------------


def test_facts_worked_out_aside_are_the_ones_of_one_thread(
    events: pl.DataFrame, whole: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a call with many distinct texts finds their codes, blocklists and waits in a thread
    # beside the one that normalizes them (classify._aside); in one thread, the same answers
    assert events["diagnostic"].n_unique() > classify_module._ASIDE_FROM
    monkeypatch.setattr(classify_module, "_ASIDE_FROM", events.height + 1)
    alone = classify(events, replace(load_rules())).select(ANSWERS)
    assert _differences(whole, alone, events["diagnostic"]) == []


def test_an_error_aside_is_raised_in_the_caller(
    events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(texts: pl.Series) -> pl.Series:
        raise RuntimeError(f"no wait in {len(texts)} texts")

    monkeypatch.setattr(classify_module, "retry_after_of", broken)
    with pytest.raises(RuntimeError, match="no wait in"):
        classify(events, replace(load_rules()))


def test_help_pages_are_read_where_a_text_holds_p_equals() -> None:
    # only the texts holding `p=` in any case are read (`_help_pages`): the same pages as
    # the expression over every text
    texts = pl.Series(
        "diagnostic",
        [
            "550-5.1.1 https://support.google.com/mail/?p=NoSuchUser d9443c01a7336 - gsmtp",
            "550 5.7.1 see HTTPS://EXAMPLE.COM/HELP?LANG=EN&P=Blocked_IP for details",
            "421 4.7.0 try again later, see https://postmaster.example/?id=7",
            "452 p=quota but no link",
            None,
            "550 5.2.1 The email account that you tried to reach is disabled. "
            "https://support.google.com/mail/?p=DisabledUser",
        ],
    )
    expected = texts.to_frame().select(classify_module._help_page(pl.col("diagnostic")))
    got = classify_module._help_pages(texts)
    assert got.to_list() == expected.to_series().to_list()
    assert got.to_list()[:2] == ["p=nosuchuser", "p=blocked_ip"]


def test_lists_and_waits_read_where_a_name_or_an_asking_word_is(events: pl.DataFrame) -> None:
    # `_named_and_waits` reads only the texts one pass finds a list's name or an asking word
    # in: the same lists and waits as blocklists.py and retry.py over every text, on every
    # event's text (deliveries' too) and the labelled rows, with names, waits, both, neither
    rules = load_rules()
    both = [
        "451 4.7.1 192.0.2.1 is listed at zen.spamhaus.org, try again in 15 minutes",
        "421 Blocked for 300 seconds: see http://www.spamcop.net/bl.shtml?192.0.2.1",
    ]
    texts = pl.concat([events["diagnostic"], pl.Series("diagnostic", [None, "", *both])])
    named, waits = classify_module._named_and_waits(texts, rules)
    expected = texts.to_frame().select(
        blocklist_of(pl.col("diagnostic"), rules.blocklists).alias("blocklist"),
        retry_after(pl.col("diagnostic")).alias("retry_after"),
    )
    assert named.to_list() == expected["blocklist"].to_list()
    assert waits.to_list() == expected["retry_after"].to_list()
    # (the set holds each case, and most texts hold neither)
    assert named.drop_nulls().n_unique() > 5 and waits.drop_nulls().n_unique() > 5
    assert named.tail(2).to_list() == ["spamhaus", "spamcop"]
    assert waits.tail(2).to_list() == [900, 300]
    assert (named.is_null() & waits.is_null()).sum() > len(texts) // 2


def test_given_providers_no_pattern_is_of_are_remembered_as_one() -> None:
    """A given `provider` column can name anything (`explain -` of JSON lines): what the
    patterns may decide for a provider that none of them is of is remembered once, as for
    none, and answers as for a provider the engine found (other)."""
    rules = load_rules()
    texts = ["550 5.1.1 <a@b.example>: Recipient address rejected: User unknown"] * 60
    named = pl.DataFrame({"diagnostic": texts, "provider": [f"acme{i}" for i in range(60)]})
    found = pl.DataFrame({"diagnostic": texts, "recipient_domain": ["b.example"] * 60})
    _forget(rules)
    given = classify(named, rules)
    assert given["provider"].to_list() == named["provider"].to_list()
    remembered = _prepared(rules).memory.eligible
    assert not any(provider is not None and "acme" in provider for provider, _ in remembered)
    own = classify(found, rules)
    assert own["provider"].unique().to_list() == ["other"]
    assert given.drop("provider").equals(own.drop("provider", "recipient_domain"))
    assert given["category"].unique().to_list() == ["user_unknown"]
