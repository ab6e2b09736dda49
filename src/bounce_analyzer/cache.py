"""A small on-disk cache of what the program derives from files, so that a start reads it back.

`explain -` in a pipeline starts once per batch of messages: loading and checking the rules
(TOML and CSV parsed, every regex compiled once to check it) took 0.045 s of CPU at each start,
and the prefilter's analysis of the patterns 0.013 s more. `rules.load_rules` keeps the
built-in rules here once loaded, and reads them back while none of their files, and none of
the modules that load them, has changed; the classification keeps here the prefilter's
analysis of the patterns (their required literals, whether they are plain, whether they may
read the lower-cased text), the code tables' normalized messages, and the tables it prepares
from the rules (`classify._prepare_from_disk`: 0.015-0.025 s of CPU at each start, keyed by
the bytes of the rules' tables).

The values are pickled: the folder is made readable and writable by its owner alone, and what
it holds is trusted as the program's own files are.

A value is stored under a name with the fingerprint of what it was derived from; reading it
back with another fingerprint finds nothing, and the next store replaces it, so the folder
holds one file per name. The folder is `$BOUNCE_ANALYZER_CACHE` (empty: no cache), else
`$XDG_CACHE_HOME/bounce-analyzer`, else `~/.cache/bounce-analyzer`. The cache is only ever an
aid: a folder that cannot be read or written, or a damaged file, is the same as no cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path

#: The environment variable naming the cache folder (set and empty: no cache).
CACHE_ENV = "BOUNCE_ANALYZER_CACHE"


def cache_dir() -> Path | None:
    """The cache folder, or None when the environment turns the cache off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) if chosen else None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home folder to be found: no cache
            return None
    return Path(base) / "bounce-analyzer"


def fingerprint(paths: Iterable[Path], *extra: object) -> str:
    """A digest of each of `paths` (its name, size and modification time) and of `extra`."""
    parts: list[object] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # (a module inside an archive): its name alone
            parts.append(str(path))
            continue
        parts.append((str(path), stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(repr((parts, extra)).encode()).hexdigest()


def load(name: str, key: str) -> object | None:
    """The value stored as `name` with fingerprint `key`, or None."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        with (folder / f"{name}.pickle").open("rb") as file:
            stored_key, value = pickle.load(file)
    except Exception:  # a missing, unreadable or damaged file (or an old format) is no cache
        return None
    return value if stored_key == key else None


def store(name: str, key: str, value: object) -> None:
    """Store `value` as `name` with fingerprint `key`, replacing what was there, if possible."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # written aside and renamed: a reader sees the old file or the new one, never half
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                pickle.dump((key, value), file, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, folder / f"{name}.pickle")
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except Exception:  # a folder that cannot be written, a value that does not pickle: no cache
        return
