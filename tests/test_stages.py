"""`stages.ahead` and `stages.ahead_map`: a stage run ahead in threads keeps order, errors and
early stops."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bounce_analyzer.stages import ahead, ahead_map


def _ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bounce-analyzer-ahead" and t.is_alive()]


def test_items_arrive_in_order_and_the_producer_stays_within_depth() -> None:
    produced: list[int] = []

    def numbers() -> Iterator[int]:
        for number in range(50):
            produced.append(number)
            yield number

    seen = []
    for number in ahead(numbers(), depth=2):
        time.sleep(0.001)
        # the producer is at most `depth` items ahead: made and waiting, or being made
        assert len(produced) <= number + 1 + 2
        seen.append(number)
    assert seen == list(range(50))


def test_the_error_that_ends_the_items_comes_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad line 3")

    seen = []
    with pytest.raises(ValueError, match="bad line 3"):
        for number in ahead(failing()):
            seen.append(number)
    assert seen == [1, 2]


def _two_at_once(items: Iterator[int]) -> Iterator[int]:
    return ahead_map(lambda number: number, items, workers=2)


#: A stage in a thread of its own, and one on two threads at once.
STAGES = pytest.mark.parametrize("stage", [ahead, _two_at_once], ids=["ahead", "ahead_map"])


@STAGES
def test_closing_early_stops_and_closes_the_producer(
    stage: Callable[[Iterator[int]], Iterator[int]],
) -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        # (`ahead_map` advances it from two threads in turn: a generator advanced by two at
        # once would raise)
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    items = stage(endless())
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer stops (an error, a break): the producer must not run on
    assert closed.wait(5)
    assert not _ahead_threads()


@STAGES
def test_a_consumer_error_does_not_leave_a_thread_behind(
    stage: Callable[[Iterator[int]], Iterator[int]],
) -> None:
    def numbers() -> Iterator[int]:
        yield from range(1000)

    with pytest.raises(RuntimeError):
        for number in stage(numbers()):
            if number == 5:
                raise RuntimeError("the writer failed")
    assert not _ahead_threads()


# --- ahead_map: one stage on several threads ------------------------------------------------


def test_map_results_arrive_in_order_whatever_call_ends_first() -> None:
    jitter = random.Random(18)
    delays = [jitter.random() / 500 for _ in range(60)]

    def slow_square(number: int) -> int:
        time.sleep(delays[number])  # (later items often end first)
        return number * number

    assert list(ahead_map(slow_square, iter(range(60)), workers=3)) == [n * n for n in range(60)]
    assert not _ahead_threads()


def test_map_calls_of_consecutive_items_overlap() -> None:
    both_in = threading.Barrier(2, timeout=10)

    def meet(number: int) -> int:
        both_in.wait()  # (breaks, and raises, unless two calls are in progress at once)
        return number

    assert list(ahead_map(meet, iter(range(6)), workers=2)) == list(range(6))


def test_map_stays_within_its_workers() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def note(number: int) -> int:
        with lock:
            started.append(number)
        return number

    for number in ahead_map(note, iter(range(40)), workers=2):
        time.sleep(0.002)
        with lock:
            # made or being made, not yet taken: at most `workers` beyond the one in hand
            assert len(started) <= number + 1 + 2
    assert sorted(started) == list(range(40))


def test_map_an_error_of_a_call_comes_in_its_item_place() -> None:
    def parse(number: int) -> int:
        if number == 4:
            raise ValueError("bad batch 4")
        return number

    seen = []
    with pytest.raises(ValueError, match="bad batch 4"):
        for number in ahead_map(parse, iter(range(10)), workers=2):
            seen.append(number)
    assert seen == [0, 1, 2, 3]
    assert not _ahead_threads()


def test_map_the_error_that_ends_the_items_comes_after_their_results() -> None:
    def failing() -> Iterator[int]:
        yield from range(5)
        raise OSError("input truncated")

    seen = []
    with pytest.raises(OSError, match="input truncated"):
        for number in ahead_map(lambda n: -n, failing(), workers=2):
            seen.append(number)
    assert seen == [0, -1, -2, -3, -4]
