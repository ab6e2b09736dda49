"""Stages side by side: an iterator run in a thread of its own, ahead of its consumer.

Reading, parsing and classifying a batch are separate stages; polars releases the interpreter
lock while it works, so a stage run ahead of the next one uses the other core. The pipeline
runs its stages this way, and the Postfix and Exim sources split their own parse in two the
same way. A stage whose items do not depend on each other (the pipeline's conforming of a
source's outputs) may run on several threads at once, its items still handed over in order
(`ahead_map`). This module knows nothing of batches or frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def ahead(items: Iterator[_T], *, depth: int = 1) -> Iterator[_T]:
    """`items`, produced by a thread of their own up to `depth` items ahead of the consumer.

    Reading, parsing and classifying then overlap: polars releases the interpreter lock while
    it works, so the stages run on separate cores. Items and the exception that ends `items`
    arrive in order; closing the returned iterator stops and closes `items`. At most `depth`
    items are made and not yet taken (waiting, or being made), so memory stays bounded: the
    producer starts on the next item once the consumer has taken one of them, rather than
    making one more and holding it while it waits (with `depth` 1, two items alive at a
    boundary instead of three: a batch's tables and events each, in the sources' stages).
    """
    return ahead_map(_same, items, workers=1, depth=depth)


def _same(item: _T) -> _T:
    return item


def ahead_map(
    function: Callable[[_T], _R], items: Iterator[_T], *, workers: int = 2, depth: int = 0
) -> Iterator[_R]:
    """`function` of each of `items`, in their order, made by `workers` threads of their own
    ahead of the consumer: the calls of consecutive items overlap one another as well as the
    consumer's work (`function` must hold no state from one item to the next; `items` is
    advanced by one thread at a time, so it may).

    As `ahead`: at most `depth` results (default: `workers`) made or being made and not yet
    taken, so memory stays bounded; the error that ends `items`, or that a call raises,
    arrives in its item's place; closing the returned iterator stops the threads (each ends
    the call it is in) and closes `items`.
    """
    taking = threading.Lock()  # (one thread at a time advances `items`)
    made: dict[int, tuple[str, object]] = {}  # by the item's place
    ready = threading.Condition()
    slots = threading.Semaphore(depth or workers)  # results that may be made and not yet taken
    stop = threading.Event()
    places = iter(range(2**62))
    ended = threading.Event()  # `items` ended (or raised): no more places are given

    def slot() -> bool:
        while not stop.is_set() and not ended.is_set():
            if slots.acquire(timeout=0.1):
                return True
        return False

    def work() -> None:
        while slot():
            with taking:
                if ended.is_set():
                    return
                place = next(places)
                outcome: tuple[str, object] | None = None
                try:
                    item = next(items)
                except StopIteration:
                    outcome = ("done", None)
                except BaseException as error:  # handed over: the consumer raises it
                    outcome = ("error", error)
                if outcome is not None:
                    ended.set()
            if outcome is None:
                try:
                    outcome = ("item", function(item))
                except BaseException as error:
                    outcome = ("error", error)
                del item
            with ready:
                made[place] = outcome
                ready.notify_all()
            del outcome  # (the consumer's now)

    threads = [
        threading.Thread(target=work, name="bounce-analyzer-ahead", daemon=True)
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        place = 0
        while True:
            with ready:
                while place not in made:
                    ready.wait()
                kind, value = made.pop(place)
            place += 1
            if kind == "item":
                slots.release()  # (a thread may start on the next)
                yield value  # type: ignore[misc]
                del value
            elif kind == "error":
                assert isinstance(value, BaseException)
                raise value
            else:
                return
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        made.clear()
        close = getattr(items, "close", None)
        if close is not None:
            close()
