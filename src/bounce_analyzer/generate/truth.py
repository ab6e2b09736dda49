"""What a correct parser must find in a generated input (`Truth`), and the truth rows each
source counts into it: one row per event, with its domain, codes and template."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from bounce_analyzer.generate.world import (
    MAILBOX_INDEX,
    REJECTS,
    REPLIES,
    REPLY_INDEX,
    NoiseLine,
    per_reply,
)
from bounce_analyzer.schema import DIRECTIONS, EVENTS

#: The event a reply's status gives.
EVENT_OF = {"sent": "delivered", "deferred": "deferred", "bounced": "bounced"}


@dataclass
class Truth:
    """What a correct parser must find in a generated input.

    `records` is what was written (lines, or JSON events); `event_records` how many of them
    give an event (the rest are `skipped`: connects, queue bookkeeping, opens...). `events`
    counts events by type (every name in `schema.EVENTS`); `by_domain` by recipient domain and
    type (events of a whole message, which name no recipient, are not in it); `by_code` by
    (event, smtp_code, enhanced_code), where smtp_code is the remote server's reply code
    (None for the MTA's own failures: timeouts, DNS, expiry) and
    enhanced_code is Postfix's dsn=, the ESP's status / enhanced-code, or the code in the text.
    `templates` gives, per distinct diagnostic template, its event, codes, count and the
    category it obviously belongs to (None where not obvious). `by_direction` counts events by
    the way their mail went (`schema.DIRECTIONS`) and type.
    """

    source: str
    seed: int
    records: int = 0
    event_records: int = 0
    messages: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENTS, 0))
    by_domain: dict[str, dict[str, int]] = field(default_factory=dict)
    by_code: dict[tuple[str, int | None, str | None], int] = field(default_factory=dict)
    templates: dict[str, dict[str, object]] = field(default_factory=dict)
    by_direction: dict[str, dict[str, int]] = field(
        default_factory=lambda: {d: dict.fromkeys(EVENTS, 0) for d in DIRECTIONS}
    )

    @property
    def skipped(self) -> int:
        """Records that are understood and are not delivery outcomes."""
        return self.records - self.event_records

    def to_json(self) -> str:
        """The truth as JSON (by_code as a list of records)."""
        body = {
            "source": self.source,
            "seed": self.seed,
            "records": self.records,
            "event_records": self.event_records,
            "skipped": self.skipped,
            "messages": self.messages,
            "events": self.events,
            "by_domain": self.by_domain,
            "by_code": [
                {"event": e, "smtp_code": c, "enhanced_code": x, "count": n}
                for (e, c, x), n in sorted(self.by_code.items(), key=lambda kv: str(kv[0]))
            ],
            "templates": self.templates,
            "by_direction": self.by_direction,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    def count(self, events: pl.DataFrame) -> None:
        """Count truth rows: a frame with columns event, domain, smtp_code, enhanced_code,
        template and direction, one row per event record."""
        self.event_records += events.height
        for event, n in events.group_by("event").len().iter_rows():
            self.events[str(event)] += int(n)
        for direction, event, n in events.group_by("direction", "event").len().iter_rows():
            self.by_direction[str(direction)][str(event)] += int(n)
        for domain, event, n in events.group_by("domain", "event").len().iter_rows():
            if domain is None:  # an event of a whole message (Exim's rejected after DATA)
                continue
            per = self.by_domain.setdefault(str(domain), dict.fromkeys(EVENTS, 0))
            per[str(event)] += int(n)
        for event, code, enhanced, n in (
            events.group_by("event", "smtp_code", "enhanced_code").len().iter_rows()
        ):
            key = (str(event), None if code is None else int(code), enhanced)
            self.by_code[key] = self.by_code.get(key, 0) + int(n)
        for template, n in events.group_by("template").len().iter_rows():
            if template is None:
                continue
            entry = self.templates.get(str(template))
            if entry is None:
                entry = dict(_template_facts(str(template)))
                entry["count"] = 0
                self.templates[str(template)] = entry
            count = entry["count"]
            assert isinstance(count, int)
            entry["count"] = count + int(n)


def _template_facts(template: str) -> dict[str, object]:
    """The event, codes and obvious category of a reply, reject or mailbox template."""
    mailbox = MAILBOX_INDEX.get(template)
    if mailbox is not None:
        return {
            "event": EVENT_OF[mailbox.status],
            "smtp_code": mailbox.code,
            "enhanced_code": mailbox.dsn,
            "category": mailbox.category,
        }
    reject = REJECTS.get(template)
    if reject is not None:
        return {
            "event": "rejected",
            "smtp_code": reject.smtp_code,
            "enhanced_code": reject.enhanced_code,
            "category": reject.category,
        }
    reply = REPLIES[REPLY_INDEX[template]]
    return {
        "event": EVENT_OF[reply.status],
        "smtp_code": reply.code,
        "enhanced_code": reply.dsn,
        "category": reply.category,
    }


def attempt_events(att: pl.DataFrame, enhanced: Sequence[str | None] = ()) -> pl.DataFrame:
    """Truth rows (event, domain, smtp_code, enhanced_code, template, direction) for outbound
    attempt rows.

    `enhanced`: per reply, the enhanced code the record shows (default: Postfix's dsn=).
    """
    return att.select(
        pl.col("status").replace_strict(EVENT_OF).alias("event"),
        pl.col("domain"),
        per_reply([r.code for r in REPLIES], pl.Int64).alias("smtp_code"),
        per_reply(enhanced or [r.dsn for r in REPLIES], pl.String).alias("enhanced_code"),
        per_reply([r.id for r in REPLIES], pl.String).alias("template"),
        pl.lit("outbound").alias("direction"),
    )


def event_rows(frame: pl.DataFrame, event: str, enhanced_code: str | None = None) -> pl.DataFrame:
    """Truth rows of one outbound `event` for each row of `frame`: no reply code, no template."""
    return frame.select(
        pl.lit(event).alias("event"),
        pl.col("domain"),
        pl.lit(None, pl.Int64).alias("smtp_code"),
        pl.lit(enhanced_code, pl.String).alias("enhanced_code"),
        pl.lit(None, pl.String).alias("template"),
        pl.lit("outbound").alias("direction"),
    )


def mailbox_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Truth rows for lines of our server about our own mailboxes or the content filter's hop:
    a frame with columns domain, template (a mailboxes.toml id) and direction."""
    facts = {name: _template_facts(name) for name in MAILBOX_INDEX}
    template = pl.col("template")
    return frame.select(
        template.replace_strict({k: v["event"] for k, v in facts.items()}).alias("event"),
        pl.col("domain"),
        template.replace_strict(
            {k: v["smtp_code"] for k, v in facts.items()}, return_dtype=pl.Int64
        ).alias("smtp_code"),
        template.replace_strict(
            {k: v["enhanced_code"] for k, v in facts.items()}, return_dtype=pl.String
        ).alias("enhanced_code"),
        template,
        pl.col("direction"),
    )


def noise_events(noise: pl.DataFrame, table: Sequence[NoiseLine]) -> pl.DataFrame:
    """Truth rows for the reject lines among the noise (column tpl: the line's shape): our
    server refusing other servers' clients (inbound)."""
    rejects = noise.with_columns(
        pl.lit(pl.Series([line.reject and line.reject.id for line in table], dtype=pl.String))
        .gather(pl.col("tpl"))
        .alias("template")
    ).filter(pl.col("template").is_not_null())
    domains = {k: v.domain for k, v in REJECTS.items() if v.domain is not None}
    return rejects.select(
        pl.lit("rejected").alias("event"),
        pl.when(pl.col("template").str.contains(".after_data", literal=True))
        .then(None)
        .when(pl.col("template").str.ends_with(".relay"))
        .then(pl.col("helo"))
        .otherwise(pl.col("template").replace_strict(domains, default=pl.lit("example.com")))
        .alias("domain"),
        pl.col("template")
        .replace_strict({k: v.smtp_code for k, v in REJECTS.items()}, return_dtype=pl.Int64)
        .alias("smtp_code"),
        pl.col("template")
        .replace_strict({k: v.enhanced_code for k, v in REJECTS.items()}, return_dtype=pl.String)
        .alias("enhanced_code"),
        pl.col("template"),
        pl.lit("inbound").alias("direction"),
    )
