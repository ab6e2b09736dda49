"""bounce-analyzer: why does your mail bounce?

The library API; the `bounce-analyzer` command is a thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from bounce_analyzer.errors import (
    BounceAnalyzerError,
    InputError,
    ParseError,
    RulesError,
    StoreError,
    UnknownSourceError,
    UsageError,
)

__all__ = [
    "BounceAnalyzerError",
    "InputError",
    "ParseError",
    "RulesError",
    "StoreError",
    "UnknownSourceError",
    "UsageError",
    "__version__",
]
