"""Stages side by side: an iterator run in a thread of its own, ahead of its consumer.

Reading, parsing and classifying a batch are separate stages; polars releases the interpreter
lock while it works, so a stage run ahead of the next one uses the other core. The pipeline
runs its stages this way, and the Postfix and Exim sources split their own parse in two the
same way. This module knows nothing of batches or frames.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

_T = TypeVar("_T")


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
    handoff: queue.Queue[tuple[str, object]] = queue.Queue()
    slots = threading.Semaphore(depth)  # items that may be made and not yet taken
    stop = threading.Event()

    def slot() -> bool:
        while not stop.is_set():
            if slots.acquire(timeout=0.1):
                return True
        return False

    def produce() -> None:
        try:
            while slot():
                try:
                    item = next(items)
                except StopIteration:
                    handoff.put(("done", None))
                    break
                handoff.put(("item", item))
                del item  # (the consumer's now)
        except BaseException as error:  # handed over: the consumer raises it
            handoff.put(("error", error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="bounce-analyzer-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "item":
                slots.release()  # (the producer may start on the next)
                yield value  # type: ignore[misc]
                del value
            elif kind == "error":
                assert isinstance(value, BaseException)
                raise value
            else:
                return
    finally:
        stop.set()
        worker.join()
