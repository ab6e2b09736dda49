"""The C helper (native/normalize.c, issue 14's speed of `explain -`) gives what the polars
expressions give (normalize.py and extract.py stay the reference): the classification's
normalized text, the masked digits of the answering host and the codes found in a text, over
real replies, whole log lines, generated logs' lines, hand-made cases of each mask and code
and seeded mutations of all of them."""

from __future__ import annotations

import io
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import polars as pl
import pytest

from bounce_analyzer import classify, extract, native
from bounce_analyzer.generate.cli import main as generate
from bounce_analyzer.normalize import grouped_texts, normalized_for, numbered_hosts_alike
from bounce_analyzer.rules import load_rules

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
    # codes: versions taken out first, where a reply code may stand, enhanced codes one after
    # another (each match takes the character after it), of each class
    "Version 2.4.1 550 x; ver.2.1 550-5.1.1; v.1.2 said:550 4.7.0; release 1.2.3.4 421",
    "xv1.2 550 VER 1.2 (550 5.1.1) '550' \"421 x :  550 : 550x #5.1.1. =5.1.1.x 4.7.12345",
    "5.1.1 5.1.2 4.2.2 -2.0.0 ,4.4.7 ;5.8.1 say 5.1.1.2 5.1.10 .5.1.1 2.0.0-4.4.4 5.8.1",
    # the answering host, as Postfix and Exim wrap a reply
    "host mx3.shop41.example[198.51.7.9] said: 550 5.1.1 user unknown",
    "<a@b.example>: host mx1.mail2.example [192.0.2.1]: 550 rejected",
    "<<a@b.example>>: host 1a2b [x] host mx9.example[",
    # sixteen bytes at a time: spaces, upper case and digits at and across the blocks' edges
    "ABCDEFGHIJKLMNO  PQRSTUVWXYZABCD  EFGHIJKLMNOPQRS\tTUVWXYZABCDEFG1 host 12345678901234567",
    "abcdefghijklmnopqrstuvwxyzabcdef 550-5.1.1 abcdefghijklmno 550-5.1.1 xyz 421-4.7.0 ",
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
    "version ",
    "ver.",
    "said:",
    "4.",
    ".5",
]


def _normalizer_or_skip() -> ModuleType:
    module = native.helper("normalize")
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


def _grouped_by_polars(series: pl.Series) -> pl.Series:
    """The polars path's grouped texts (the reference): the normalized text, then the answering
    host's digits masked."""
    normalized = series.to_frame().select(normalized_for(series)).to_series().alias("normalized")
    return normalized.to_frame().select(numbered_hosts_alike(pl.col("normalized"))).to_series()


def test_the_grouped_text_is_the_polars_one(texts: list[str]) -> None:
    # the normalized text with the answering host's digits masked, in one call of the helper
    module = _normalizer_or_skip()
    series = pl.Series("diagnostic", texts)
    expected = _grouped_by_polars(series).to_list()
    got = native.arrow_series("grouped", module.grouped(series)).to_list()
    compared = [(text, want, have) for text, want, have in zip(texts, expected, got, strict=True)]
    done = [row for row in compared if row[2] is not None]
    assert len(done) > 0.95 * len(texts)  # the ASCII ones: all but a few
    assert [row for row in done if row[1] != row[2]] == []
    assert sum(1 for text in got if text and text.startswith("host ") and "#" in text) > 50


def test_the_normalized_columns_are_arrow_arrays_polars_takes() -> None:
    """`grouped` hands its column over as an Arrow array (no Python string a text): empty, all
    null, with and without nulls; arrays polars never took are freed with their capsules (the
    sanitizers' run checks the memory). `codes` hands its five over so too."""
    module = _normalizer_or_skip()
    for texts, expected in (
        ([], []),
        ([None, "Grüße", None], [None, None, None]),
        (["550 User Unknown", None], ["550 user unknown", None]),
        (["A  B"] * 20_000, ["a b"] * 20_000),  # data past the first allocation
    ):
        column = native.arrow_series("grouped", module.grouped(pl.Series(texts, dtype=pl.String)))
        assert column.dtype == pl.String
        assert column.to_list() == expected
    dropped = module.grouped(pl.Series(["host mx1.a[192.0.2.1] said: 550 5.1.1 no"]))
    del dropped
    texts = ["550 5.1.1 no", "Grüße", None, "said: 421 x 4.7.0", "no code"]
    found = pl.DataFrame(
        [
            native.arrow_series(name, pair)
            for name, pair in zip(extract.FOUND_CODES, module.codes(pl.Series(texts)), strict=True)
        ]
    )
    assert found.rows() == [
        (550, "5.1.1", None, None, "5.1.1"),
        (-1, None, None, None, None),
        (-1, None, None, None, None),
        (421, "4.7.0", None, "4.7.0", None),
        (None, None, None, None, None),
    ]
    assert [len(module.codes(pl.Series(rows, dtype=pl.String))) for rows in ([], ["x"])] == [5, 5]
    # a column of many chunks, sliced (the views' offset), long texts in the data buffers
    chunked = pl.concat([pl.Series(["x" * 40 + " 550 5.1.1", None]), pl.Series(["421 y"] * 3)])
    chunked = chunked.slice(1, 4)
    assert chunked.n_chunks() == 2
    replies = native.arrow_series("r", module.codes(chunked)[0]).to_list()
    assert replies == [-1, 421, 421, 421]
    with pytest.raises(TypeError, match="String column"):
        module.codes(pl.Series([1, 2]))


def test_the_codes_are_the_polars_ones(texts: list[str]) -> None:
    module = _normalizer_or_skip()
    series = pl.Series("diagnostic", texts)
    expected = extract._found_by_polars(series)
    got = pl.DataFrame(
        [
            native.arrow_series(name, pair)
            for name, pair in zip(extract.FOUND_CODES, module.codes(series), strict=True)
        ]
    )
    assert got.schema == dict.fromkeys(extract.FOUND_CODES, pl.String) | {"_found_smtp": pl.Int16}
    read = (got["_found_smtp"] != -1).fill_null(True).arg_true()
    assert len(read) > 0.95 * len(texts)
    got = got[read]
    assert expected[read]["_found_smtp"].count() > 1000  # codes were found, and compared
    mismatched = (
        pl.concat([got, expected[read].rename(lambda name: name + "_polars")], how="horizontal")
        .with_columns(pl.Series("text", texts)[read])
        .filter(
            pl.any_horizontal(
                pl.col(name).ne_missing(pl.col(name + "_polars")) for name in extract.FOUND_CODES
            )
        )
    )
    assert mismatched.to_dicts() == []
    assert extract.found_codes(series).equals(expected)


@pytest.mark.parametrize("path", ["c", "polars"])
def test_the_grouped_texts_are_the_polars_ones_on_either_path(
    texts: list[str], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the classification runs (`grouped_texts`): the helper's `grouped` on the ASCII
    # texts and polars on the texts C leaves, or polars alone
    if path == "c":
        _normalizer_or_skip()
    else:
        monkeypatch.setenv("BOUNCE_ANALYZER_NATIVE", "0")
    series = pl.Series(
        "diagnostic",
        [*texts, None, "550 5.1.1 Benutzer unbekannt: müller@example.de 2026-11-28"],
    )
    expected = _grouped_by_polars(series)
    got = grouped_texts(series)
    assert got.name == "diagnostic"
    assert got.to_list() == expected.to_list()
    assert got[-1] == "550 5.1.1 benutzer unbekannt: <address> <date>"


def test_the_helper_runs_beside_other_threads(texts: list[str]) -> None:
    _normalizer_or_skip()
    # `grouped` and `codes` read the rows without the interpreter's lock (classify.py runs
    # them beside its polars work): two of each at once give what each gives alone
    series = pl.Series("diagnostic", texts)
    grouped = grouped_texts(series)
    codes = extract.found_codes(series)
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = [pool.submit(grouped_texts, series) for _ in range(2)]
        pending += [pool.submit(extract.found_codes, series) for _ in range(2)]
        answers = [future.result() for future in pending]
    for got in answers[:2]:
        assert isinstance(got, pl.Series)
        assert got.equals(grouped)
    for got in answers[2:]:
        assert isinstance(got, pl.DataFrame)
        assert got.equals(codes)


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
    grouped = grouped_texts(texts)
    assert grouped.to_list() == _grouped_by_polars(texts).to_list()
    assert grouped[0] == "550 5.1.1 benutzer unbekannt: <address> <date>"
    assert grouped[1] is None
    assert grouped[2] == "host mx#.example[<ip>] said: 550 no such user"


def test_the_environment_turns_the_c_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOUNCE_ANALYZER_NATIVE", "0")
    assert native.helper("normalize") is None
    texts = pl.Series("diagnostic", ["host mx2.example[192.0.2.9] said: 550 5.1.1 a@b.example"])
    assert grouped_texts(texts).to_list() == ["host mx#.example[<ip>] said: 550 5.1.1 <address>"]


def test_explain_answers_the_same_on_both_paths(
    texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`explain -`'s answers, byte for byte, with the C helper and with the polars path alone,
    on a sample of the texts above (each classified whole: codes, keys, rules, answers)."""
    _normalizer_or_skip()
    from bounce_analyzer.explain import explain_bytes
    from bounce_analyzer.rules import load_rules

    rules = load_rules()
    # (a line that starts with `{` is a JSON input: the sample logs' JSON lines are not)
    lines = [
        " ".join(text.split()).lstrip("{") or "-" for text in random.Random(18).sample(texts, 6000)
    ]
    source = "\n".join(lines) + "\n"

    def answers() -> bytes:
        out = io.BytesIO()
        explain_bytes(io.BytesIO(source.encode("utf-8")), out, rules=rules)
        return out.getvalue()

    with_c = answers()
    monkeypatch.setenv("BOUNCE_ANALYZER_NATIVE", "0")
    assert native.helper("normalize") is None
    assert answers() == with_c
    assert with_c.count(b"\n") == len(lines)


def test_the_version_line_names_the_helper() -> None:
    _normalizer_or_skip()
    line = native.describe()
    assert line.startswith("parser: C path for ") and "the classification's texts" in line
    assert "polars path for the classification's texts" not in line


def test_the_answer_lines_are_polars_json() -> None:
    """native/normalize.c's `answer_lines` writes each input as polars writes a JSON string
    (every ASCII character, escaped or not, and others), then the rest of its answer; as many
    whole lines as fit; and refuses what is not its input rather than reading past it."""
    fast = _normalizer_or_skip()
    texts = [
        "".join(chr(code) for code in range(128)),
        "Überlastung \u2028 \ufffd 稍后再试 \U0001f600 \x7f",
        "",
        '550 5.1.1 "x" \\',
    ]
    inputs = pl.Series("input", texts)
    rests = [b',"n":1}\n', b',"n":null}\n']
    index = pl.Series("_rest", [1, 0, 1, 0], dtype=pl.UInt32)
    frame = pl.DataFrame(
        {"input": texts, "n": [None, 1, None, 1]}, schema_overrides={"n": pl.Int64}
    )
    expected = io.BytesIO()
    frame.write_ndjson(expected)
    out = bytearray(4096)
    size, line = fast.answer_lines(inputs, rests, index, out, 0)
    assert (bytes(out[:size]), line) == (expected.getvalue(), 4)
    # whole lines, as many as surely fit (an input takes at most six bytes a byte), from the
    # line asked for
    for room in (800, 1000, 1200):
        some = bytearray(room)
        size, line = fast.answer_lines(inputs, rests, index, some, 1)
        assert 1 <= line - 1 <= 3
        lines = expected.getvalue().split(b"\n")[1:line]
        assert bytes(some[:size]) == b"".join(part + b"\n" for part in lines)
    assert fast.answer_lines(inputs, rests, index, bytearray(8), 0) == (0, 0)
    assert fast.answer_lines(inputs, rests, index, out, 4) == (0, 4)
    # a slice of a column (the arrays' offset)
    size, line = fast.answer_lines(inputs.slice(2, 2), rests, index.slice(1, 2), out, 0)
    assert bytes(out[:size]) == b"".join(
        part + b"\n"
        for part in (b'{"input":"","n":1}', b'{"input":"550 5.1.1 \\"x\\" \\\\","n":null}')
    )
    assert fast.answer_lines(inputs[:0], rests, index[:0], out, 0) == (0, 0)
    u32 = pl.UInt32
    for bad_index, line in (
        (pl.Series([2, 0, 0, 0], dtype=u32), 0),
        (pl.Series([0], dtype=u32), 0),
        (pl.Series([0, None, 0, 0], dtype=u32), 0),
        (index, 5),
        (index, -1),
    ):
        with pytest.raises(ValueError):
            fast.answer_lines(inputs, rests, bad_index, out, line)
    with pytest.raises(ValueError):
        fast.answer_lines(pl.Series([None], dtype=pl.String), rests, index[:1], out, 0)
    with pytest.raises(ValueError):  # two chunks
        fast.answer_lines(pl.concat([inputs, inputs], rechunk=False), rests, index, out, 0)
    with pytest.raises(TypeError):
        fast.answer_lines(texts, rests, index, out, 0)
    with pytest.raises(TypeError):
        fast.answer_lines(inputs, rests, index.cast(pl.Int64), out, 0)


def test_the_literal_pairs_are_polars_ones(texts: list[str]) -> None:
    """The patterns whose required literals each text holds (classify's prefilter): the C
    helper's pairs are the pairs polars' overlapping Aho-Corasick finds and joins to the
    patterns, on real and generated texts (lower-cased, as the engine reads them), literals
    inside others, at a text's very end, and a text of fewer bytes than a literal."""
    module = _normalizer_or_skip()
    rules = load_rules()
    prepared = classify._prepared(rules)
    lower = pl.Series(
        "lower",
        [*texts, "address", "ad", "", "user unknown", "x" * 3 + "quota"],
    ).str.to_lowercase()
    lower = lower.filter(lower.str.len_bytes() == lower.str.len_chars())
    frame = lower.to_frame().with_row_index("_at")
    found = native.literal_pairs(
        lower, prepared.literal_list, prepared.literal_targets, prepared.patterns.height
    )
    assert found is not None
    expected = (
        frame.select(
            "_at",
            pl.col("lower").str.extract_many(prepared.literal_list, overlapping=True).alias("l"),
        )
        .explode("l")
        .join(prepared.literals, left_on="l", right_on="literal")
        .select("_at", pl.col("pattern_index").alias("target"))
        .unique()
        .sort("_at", "target")
    )
    assert expected.height > 10_000  # literals were found, and compared
    assert found.equals(found.unique(maintain_order=True))  # each pair once
    assert found.sort("_at", "target").equals(expected)
    # a literal of three bytes, one inside another, and its targets, at the end of a text
    words = [b"abc", b"abcdefghij", b"cde"]
    rows, got = module.literal_pairs(pl.Series(["xxabcdefghij", "abc", "ab", None, "é abc"]),
                                     words, [[0], [1, 2], [2]], 3)  # fmt: skip
    pairs = list(zip(native.arrow_series("r", rows), native.arrow_series("t", got), strict=True))
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0)]
    with pytest.raises(TypeError, match="three bytes or more"):
        module.literal_pairs(pl.Series(["abc"]), [b"ab"], [[0]], 1)
    with pytest.raises(ValueError, match="out of range"):
        module.literal_pairs(pl.Series(["abc"]), [b"abc"], [[1]], 1)
