"""The C tokenizers in tests: each native test needs its source's extension."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from bounce_analyzer import native


def extension_or_skip(source: str) -> ModuleType:
    """The C tokenizer of `source`, built with the interface this code expects. Without it the
    test is skipped, except under CI (`CI=true`), which builds it: there it fails."""
    module = native.built(source)
    if module is None:
        reason = f"the C extension of the {source} source is not built (no C compiler?)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI builds the C extensions, yet {reason}")
        pytest.skip(reason)
    return module
