"""`stages.ahead`: a stage run ahead in a thread keeps order, errors and early stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from bounce_analyzer.stages import ahead


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


def test_closing_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            number = 0
            while True:
                yield number
                number += 1
        finally:
            closed.set()

    items = ahead(endless())
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer stops (an error, a break): the producer must not run on
    assert closed.wait(5)
    assert not _ahead_threads()


def test_a_consumer_error_does_not_leave_a_thread_behind() -> None:
    def numbers() -> Iterator[int]:
        yield from range(1000)

    with pytest.raises(RuntimeError):
        for number in ahead(numbers()):
            if number == 5:
                raise RuntimeError("the writer failed")
    assert not _ahead_threads()
