"""The on-disk cache (cache.py) and the built-in rules kept in it between starts."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bounce_analyzer import cache, classify, rules
from bounce_analyzer.prefilter import required_literals
from bounce_analyzer.rules import builtin_rules_dir, load_rules


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(where))
    return where


def test_a_value_comes_back_only_with_its_key(folder: Path) -> None:
    cache.store("thing", "key-1", {"a": [1, 2]})
    assert cache.load("thing", "key-1") == {"a": [1, 2]}
    assert cache.load("thing", "key-2") is None
    assert cache.load("other", "key-1") is None
    cache.store("thing", "key-2", "newer")
    assert cache.load("thing", "key-2") == "newer"
    assert cache.load("thing", "key-1") is None
    assert sorted(p.name for p in folder.iterdir()) == ["thing.pickle"]


def test_a_damaged_file_is_no_cache(folder: Path) -> None:
    cache.store("thing", "key", 1)
    (folder / "thing.pickle").write_bytes(b"\x80\x05not a pickle")
    assert cache.load("thing", "key") is None


def test_an_empty_setting_turns_the_cache_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, "")
    assert cache.cache_dir() is None
    cache.store("thing", "key", 1)
    assert cache.load("thing", "key") is None


def test_a_folder_that_cannot_be_written_is_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    cache.store("thing", "key", 1)  # no error
    assert cache.load("thing", "key") is None


def test_the_xdg_cache_home_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "bounce-analyzer"


def test_the_fingerprint_follows_the_files(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("a = 1\n")
    before = cache.fingerprint([path], "extra")
    assert cache.fingerprint([path], "extra") == before
    assert cache.fingerprint([path], "other") != before
    path.write_text("a = 12\n")
    assert cache.fingerprint([path], "extra") != before


def _fresh_load() -> rules.Rules:
    """`load_rules()` as a new process runs it: nothing remembered in memory."""
    rules._CACHE.clear()
    return load_rules()


@pytest.fixture
def builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the built-in rules, as the built-in folder."""
    copy = tmp_path / "rules"
    shutil.copytree(builtin_rules_dir(), copy)
    monkeypatch.setattr(rules, "builtin_rules_dir", lambda: copy)
    return copy


def test_the_builtin_rules_come_back_from_the_cache(folder: Path, builtin: Path) -> None:
    loaded = _fresh_load()
    assert len(list(folder.glob("rules-*.pickle"))) == 1
    again = _fresh_load()
    assert again is not loaded  # read back from the disk, not from memory
    for field in ("categories", "patterns", "codes", "provider_domains", "blocklists"):
        assert_frame_equal(getattr(again, field), getattr(loaded, field))
    assert again.direction == loaded.direction


def test_a_changed_rules_file_is_loaded_again(folder: Path, builtin: Path) -> None:
    _fresh_load()
    categories = builtin / "categories.toml"
    text = categories.read_text(encoding="utf-8")
    old = _fresh_load().categories.filter(pl.col("category") == "mailbox_full")
    description = old["description"].item()
    categories.write_text(text.replace(description, "Changed: " + description), encoding="utf-8")
    changed = _fresh_load().categories.filter(pl.col("category") == "mailbox_full")
    assert changed["description"].item() == "Changed: " + description
    # one file per rules folder: the new rules replaced the old ones
    assert len(list(folder.glob("rules-*.pickle"))) == 1


def test_only_the_builtin_rules_alone_are_cached(folder: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    rules._CACHE.clear()
    load_rules(user)
    load_rules(builtin_dir=builtin_rules_dir())
    assert not folder.exists()


def _literals_of(regexes: list[str]) -> dict[str, frozenset[str] | None]:
    """The required literals of each of `regexes`, as the classification's analysis (kept
    in the disk cache) gives them."""
    return {regex: analysis.literals for regex, analysis in classify._analysed(regexes).items()}


def test_the_literals_of_patterns_come_back_from_the_cache(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    regexes = ["over quota|quota exceeded", r"user (is )?unknown", r"\d+"]
    first = _literals_of(regexes)
    assert first == {regex: required_literals(regex) for regex in regexes}

    def not_again(regex: str) -> None:
        raise AssertionError(f"{regex} analysed again")

    monkeypatch.setattr(classify, "required_literals", not_again)
    assert _literals_of(regexes) == first
    # a regex the cache does not hold is analysed, and kept beside the others
    monkeypatch.undo()
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    assert _literals_of(["mailbox full"]) == {"mailbox full": frozenset({"mailbox full"})}
    monkeypatch.setattr(classify, "required_literals", not_again)
    assert _literals_of([*regexes, "mailbox full"])["mailbox full"] is not None


def test_no_home_folder_is_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert cache.cache_dir() is None


def test_a_value_that_cannot_be_stored_is_not(folder: Path) -> None:
    cache.store("thing", "key", lambda: None)  # functions defined in place do not pickle
    assert cache.load("thing", "key") is None


def test_the_normalized_messages_of_the_code_tables_come_back_from_the_cache(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code tables' messages, normalized and cut into tokens once (`_prepare`), are read
    back at the next start, the same; other messages are worked out again."""
    messages = pl.Series(["550 5.1.1 User <a@b.example> unknown", None, "Mailbox full 2026-11-28"])
    first = classify._normalized_messages(messages)
    assert first[0].to_list() == ["550 5.1.1 user <<address>> unknown", None, "mailbox full <date>"]
    assert [set(words or ()) for words in first[1].to_list()] == [
        {"user", "address", "unknown"},
        set(),
        {"mailbox", "full", "date"},
    ]

    def not_again(text: pl.Expr) -> pl.Expr:
        raise AssertionError("normalized again")

    monkeypatch.setattr(classify, "normalize_message", not_again)
    again = classify._normalized_messages(messages)
    assert all(got.equals(expected) for got, expected in zip(again, first, strict=True))
    with pytest.raises(AssertionError, match="normalized again"):
        classify._normalized_messages(messages.head(2))


def _kept(prepared: object) -> dict[str, object]:
    return {name: getattr(prepared, name) for name in sorted(classify._KEPT)}


def _same(got: object, expected: object) -> bool:
    if isinstance(expected, pl.DataFrame):
        return isinstance(got, pl.DataFrame) and got.equals(expected)
    if isinstance(expected, list | tuple):
        return (
            isinstance(got, type(expected))
            and len(got) == len(expected)
            and all(_same(a, b) for a, b in zip(got, expected, strict=True))
        )
    return got == expected


def test_the_prepared_rules_come_back_from_the_cache(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the engine prepares of the rules (`_prepare`) is read back at the next start, the
    same, with a memory of its own; rules whose tables differ are prepared again."""
    loaded = load_rules()
    fresh = classify._prepare_from_disk(loaded)
    assert (folder / "prepared.pickle").exists()

    def not_again(rules: object) -> object:
        raise AssertionError("prepared again")

    monkeypatch.setattr(classify, "_prepare", not_again)
    again = classify._prepare_from_disk(loaded)
    assert again.memory is not fresh.memory and again.memory.decisions is None
    assert all(
        _same(got, expected)
        for got, expected in zip(_kept(again).values(), _kept(fresh).values(), strict=True)
    )
    frame = pl.DataFrame(
        {"diagnostic": ["550 5.1.1 <a@b.example>: User unknown", "452 4.2.2 Mailbox full"]}
    )
    answers = []
    for prepared in (again, fresh):
        monkeypatch.setattr(classify, "_PREPARED", {loaded: prepared})
        answers.append(classify.classify(frame, loaded))
    assert_frame_equal(*answers)
    assert answers[0]["category"].to_list() == ["user_unknown", "mailbox_full"]
    # one pattern fewer: another key, prepared again
    other = replace(loaded, patterns=loaded.patterns.head(-1))
    with pytest.raises(AssertionError, match="prepared again"):
        classify._prepare_from_disk(other)
