"""The exceptions bounce-analyzer raises. The CLI turns each into one `Error: ...` line."""

from __future__ import annotations


class BounceAnalyzerError(Exception):
    """Base class of every error the library raises on purpose."""

    exit_code = 1


class UsageError(BounceAnalyzerError):
    """The user asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class RulesError(BounceAnalyzerError):
    """A rules file is missing, unreadable or invalid."""


class SettingsError(RulesError):
    """A setting of the rules folder (`direction.toml`) is invalid: like a bad option, a usage
    error (exit code 2)."""

    exit_code = 2


class UnknownSourceError(UsageError):
    """A --source name that no source module claims."""


class InputError(BounceAnalyzerError):
    """An input file cannot be opened or read."""


class OutputError(BounceAnalyzerError):
    """An output file cannot be created or written."""


class ParseError(BounceAnalyzerError):
    """A record a source claims cannot be parsed (raised only under --strict)."""


class StoreError(BounceAnalyzerError):
    """The event store is missing, locked or damaged."""


class ClusterError(BounceAnalyzerError):
    """The Dask cluster of an ingest cannot be reached or started, or lost a worker."""
