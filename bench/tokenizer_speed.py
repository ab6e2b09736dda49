"""The C tokenizers alone, and the reader's newline count, over one log's batches (issue 18).

A log is cut into the batches `parse` reads (16 MiB, `reading.read_batches`), copied into
memory once; then each round runs only the source's tokenizer over all of them (`tokenize`
for Postfix, `cut` for Exim, counting the lines themselves as before the reader's count was
handed to them) and, apart, the newline count of every batch, the C one
(`native.count_newlines`: the tokenizer's `newlines`) and `bytes.count`. CPU seconds of
this process, the least of the rounds: the figures of bench/RESULTS.md, "The tokenizers per
byte".

    python bench/tokenizer_speed.py postfix /work/s21/po1m.log --rounds 5

`--module FILE` times another build of the tokenizer (a `.so` of the same module, say one
made from an older commit with the same flags), for before/after rounds run alternately.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from types import ModuleType

from bounce_analyzer import native, reading

BATCH_BYTES = 16 << 20


def _modules(source: str, path: str | None) -> tuple[ModuleType, ModuleType]:
    """The built tokenizer (whose `newlines` counts), and the one to time: it, or the build
    at `path` (which takes the module's place in `sys.modules`: `native` no longer finds the
    built one after)."""
    built = native.built(source)
    if built is None:
        raise SystemExit(f"the C tokenizer of {source} is not built here")
    if path is None:
        return built, built
    spec = importlib.util.spec_from_file_location(built.__name__, path)
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    return built, other


def _least(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["postfix", "exim"])
    parser.add_argument("log")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--module", help="the tokenizer's .so to time (default: the built one)")
    args = parser.parse_args()
    built, tokenizer = _modules(args.source, args.module)
    source = reading.expand_inputs([args.log])[0]
    batches = [
        (bytes(batch.data), batch.first_line)
        for batch in reading.read_batches(source, batch_bytes=BATCH_BYTES)
    ]

    def tokenize() -> None:
        for data, first_line in batches:
            if args.source == "postfix":
                tokenizer.tokenize(data, first_line, b"")
            else:
                tokenizer.cut(data)

    def count_c() -> None:
        for data, _ in batches:
            built.newlines(data)  # (what native.count_newlines calls)

    def count_python() -> None:
        for data, _ in batches:
            data.count(b"\n")

    print(
        f"{args.source}: {len(batches)} batches; least CPU of {args.rounds} rounds: "
        f"tokenizer {_least(args.rounds, tokenize):.3f} s, "
        f"newlines counted in C {_least(args.rounds, count_c):.4f} s, "
        f"by bytes.count {_least(args.rounds, count_python):.4f} s"
    )


if __name__ == "__main__":
    main()
