"""The C normalizer (native/normalize.c, issue 14's speed of `explain -`) gives the text the
polars expressions give (normalize.py stays the reference): the classification's normalized
text and the masked digits of the answering host, over real replies, whole log lines,
generated logs' lines, hand-made cases of each mask and seeded mutations of all of them."""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest

from bounce_analyzer import normalize
from bounce_analyzer.generate.cli import main as generate
from bounce_analyzer.normalize import (
    hosts_alike_texts,
    normalized_for,
    normalized_texts,
    numbered_hosts_alike,
)

HERE = Path(__file__).parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "corpus" / "classification" / "patterns.tsv"

#: What each mask and step reads, written to hit its edges (the regexes are in normalize.py).
CASES = [
    # addresses: the run around `@`, an `@` at either end of a run, a NUL inside one
    "550 <Anna.Smith@Example.COM>: user unknown; a@b @x y@ @@ a@@b x\x00@y",
    # URLs: a query or fragment, none, one in brackets, https, a second one
    "see https://support.google.com/mail/?p=NoSuchUser&hl=en) and http://x.example/a#frag",
    "http://no-query.example/path https://a.example/?q=1 xhttp://b.example/?z",
    # times and dates: fractions, zones with and without a colon, a date alone, near misses
    "at 2026-11-28T10:45:12.311Z 2026-11-28 10:45:12+01:00 2026-11-28 10:45:12-0130 x",
    "2026-11-28T10:45:12,5 12026-11-28 2026-11-280 a2026-11-28 2026-1-28 2026-11-28_",
    # IPv4: the greedy groups backing off, too many digits, a boundary missing
    "[192.0.2.1] 1234.5.6.7 1.2.3.4567 1.2.3.456 10.0.0.1a 10.0.0.1.5 _1.2.3.4 256.1.1.1",
    # IPv6 and times: leading colons, seven groups and more, hex runs of five
    "2001:db8::1 fe80::1%eth0 ::1 a::1 10:45:12 1:2:3:4:5:6:7:8:9 abcde:1:2 1:2:3g x::",
    # ids: long mixed words, provider reason codes, digit words, Exchange's hex codes
    "SN1PR0101MB1234 URLBL011 IPBL0010 S3140 TSS04 OFR_405 abcdefgh12345 a12345bc ab12345c",
    "d9443c01a7336-1f3a1ed8b6esi 4F3A21B5C 201806281 000C05A6 00abcdefg 0012345 00123456",
    "00ab1g 00abg 0abcd 012345 12345-abcdefgh1 12345-abc-abcdefgh1-x a1b2c3d4e5 abcdefg1",
    "abc1defgh abcd12efgh ab1cdefgh1 abcde1234f abcde12345 x_1234567 ____1abc 1____",
    # white space, escaped line breaks and the codes that start a reply's lines
    "550-5.1.1 The email account\\n550-5.1.1 that you tried\\n550 5.1.1 to reach\t\t x  y",
    "  421-4.7.0 [TSS04] Messages\n421-4.7.0 from 203.0.113.5 421-4.7.0 temporarily deferred",
    "550-5.1.1\n550-5.1.1 550-x 250-5.7.1234 550-5.7.1 550-5.7.1x 550-",
    # the answering host, as Postfix and Exim wrap a reply
    "host mx3.shop41.example[198.51.7.9] said: 550 5.1.1 user unknown",
    "<a@b.example>: host mx1.mail2.example [192.0.2.1]: 550 rejected",
    "<<a@b.example>>: host 1a2b [x] host mx9.example[",
    "",
    "   ",
]

#: What the mutations insert: pieces of every mask, and the characters the masks stop at.
PIECES = [
    *"aZ09_-.:@/?#\\ \t\n<>()[]\"',;xXfF5",
    "550-5.1.1 ",
    "\\n421-4.7.0 ",
    "2026-11-28T10:45:12.311Z",
    "10:45:12",
    "192.0.2.1",
    "fe80::1",
    "https://x.example/a?b=c",
    "d9443c01a7336-1f3a1ed8b6esi",
    "000C05A6",
    "00abcdefg",
    "SN1PR0101MB1234",
    " 550 5.1.1 ",
    "host mx1.a[",
    "<address>: ",
]


def _normalizer_or_skip() -> ModuleType:
    module = normalize._normalizer()
    if module is None:
        reason = "the C normalizer is not built (no C compiler?) or is turned off"
        if os.environ.get("CI") == "true" and os.environ.get("BOUNCE_ANALYZER_NATIVE") != "0":
            pytest.fail(f"CI builds the C extensions, yet {reason}")
        pytest.skip(reason)
    return module


def _diagnostics(path: Path) -> list[str]:
    rows = pl.read_csv(path, separator="\t", quote_char=None, infer_schema=False)
    return rows.get_column("diagnostic").drop_nulls().to_list()


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Real replies (labelled rows, the shared corpus when it is there), every line of the
    sample logs and of small generated Postfix and Exim logs, the cases above, and seeded
    mutations of all of them."""
    found = [*CASES]
    for path in sorted((HERE / "data" / "diagnostics").glob("*.tsv")):
        found += _diagnostics(path)
    if SHARED.exists():
        found += _diagnostics(SHARED)
    for path in sorted((REPO / "sample_logs").rglob("*")):
        if path.is_file() and path.name != "README.md":
            found += path.read_text(encoding="utf-8", errors="replace").splitlines()
    work = tmp_path_factory.mktemp("logs")
    for seed, source in enumerate(("postfix", "exim")):
        log = work / f"{source}.log"
        generate([source, "--lines", "3000", "--seed", str(seed), "-o", str(log)])
        found += log.read_text(encoding="utf-8").splitlines()
    draw = random.Random(14)
    for _ in range(20_000):
        text = list(draw.choice(found)[:300])
        for _ in range(draw.randrange(1, 6)):
            at = draw.randrange(len(text) + 1)
            if draw.random() < 0.3 and text:
                del text[min(at, len(text) - 1)]
            else:
                text.insert(at, draw.choice(PIECES))
        found.append("".join(text))
    return found


def test_the_normalized_text_is_the_polars_one(texts: list[str]) -> None:
    module = _normalizer_or_skip()
    series = pl.Series("diagnostic", texts)
    expected = series.to_frame().select(normalized_for(series)).to_series().to_list()
    got = module.normalize(texts)
    compared = [(text, want, have) for text, want, have in zip(texts, expected, got, strict=True)]
    done = [row for row in compared if row[2] is not None]
    assert len(done) > 0.95 * len(texts)  # the ASCII ones: all but a few
    assert [row for row in done if row[1] != row[2]] == []


def test_the_answering_hosts_are_masked_as_in_polars(texts: list[str]) -> None:
    module = _normalizer_or_skip()
    normalized = [text for text in module.normalize(texts) if text is not None]
    normalized += [text.replace("<ip>", "x") for text in normalized[:5000]]
    series = pl.Series("normalized", normalized)
    expected = series.to_frame().select(numbered_hosts_alike(pl.col("normalized")))
    assert module.hosts_alike(normalized) == expected.to_series().to_list()


def test_texts_the_c_path_leaves_go_the_polars_way() -> None:
    _normalizer_or_skip()
    # not ASCII (C leaves them), a null, and ASCII: each as the expressions give it
    texts = pl.Series(
        "diagnostic",
        [
            "550 5.1.1 Benutzer unbekannt: müller@example.de 2026-11-28",
            None,
            "host MX1.Example[192.0.2.1] said: 550 No such user",
            "421 4.7.0 Ａ 2001:db8::1",
        ],
    )
    expected = texts.to_frame().select(normalized_for(texts)).to_series()
    assert normalized_texts(texts).to_list() == expected.to_list()
    assert normalized_texts(texts)[0] == "550 5.1.1 benutzer unbekannt: <address> <date>"
    hosts = hosts_alike_texts(expected)
    assert (
        hosts.to_list()
        == expected.to_frame()
        .select(numbered_hosts_alike(pl.col("diagnostic")))
        .to_series()
        .to_list()
    )
    assert hosts[2] == "host mx#.example[<ip>] said: 550 no such user"


def test_the_environment_turns_the_c_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOUNCE_ANALYZER_NATIVE", "0")
    assert normalize._normalizer() is None
    texts = pl.Series("diagnostic", ["host mx2.example[192.0.2.9] said: 550 5.1.1 a@b.example"])
    assert normalized_texts(texts).to_list() == ["host mx2.example[<ip>] said: 550 5.1.1 <address>"]
