"""The sources bounce-analyzer reads: one module each, one small interface (`base.Source`).

The registry maps a name (also the module name and the `--source` value) to the class;
modules are imported only when used, so that start-up stays fast.
"""

from __future__ import annotations

import importlib

from bounce_analyzer.errors import UnknownSourceError
from bounce_analyzer.sources.base import Source, SourceOutput

__all__ = ["SOURCES", "Source", "SourceOutput", "detect", "get_source"]

#: Source name -> "module:Class". Detection tries them in this order.
SOURCES: dict[str, str] = {
    "postfix": "bounce_analyzer.sources.postfix:Postfix",
    "exim": "bounce_analyzer.sources.exim:Exim",
    "sendgrid": "bounce_analyzer.sources.sendgrid:SendGrid",
    "mailgun": "bounce_analyzer.sources.mailgun:Mailgun",
}


def get_source(name: str, *, tz: str | None = None) -> Source:
    """A fresh instance of the source called `name` (`tz`: zone of offset-less timestamps)."""
    target = SOURCES.get(name)
    if target is None:
        known = ", ".join(SOURCES)
        raise UnknownSourceError(f"unknown source {name!r}: choose one of {known}")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    instance: Source = cls(tz=tz)
    return instance


def detect(head: bytes) -> str | None:
    """The name of the first source whose `sniff` accepts `head`, or None.

    A source module that fails to import raises its ImportError: a broken module is a bug to
    see, not a format that was not recognised.
    """
    for name in SOURCES:
        if get_source(name).sniff(head):
            return name
    return None
