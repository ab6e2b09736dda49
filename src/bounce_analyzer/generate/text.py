"""Text from columns: templates with `{column}` placeholders as polars expressions, a value
picked from a list by an index column, and Postfix's way of writing seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl


def pick(values: Sequence[str], index: pl.Expr) -> pl.Expr:
    """The value of `values` at each row's `index`."""
    return pl.lit(pl.Series(list(values), dtype=pl.String)).gather(index)


def render(template: str) -> pl.Expr:
    """A concat_str expression for a template with `{column}` placeholders (`{{` is a brace)."""
    parts: list[pl.Expr] = []
    literal = ""
    i = 0
    while i < len(template):
        char = template[i]
        if char in "{}" and template[i : i + 2] in ("{{", "}}"):
            literal += char
            i += 2
        elif char == "{":
            close_at = template.index("}", i)
            if literal:
                parts.append(pl.lit(literal))
                literal = ""
            parts.append(pl.col(template[i + 1 : close_at]).cast(pl.String))
            i = close_at + 1
        else:
            literal += char
            i += 1
    if literal:
        parts.append(pl.lit(literal))
    return pl.concat_str(parts) if parts else pl.lit("")


def render_by_template(frame: pl.DataFrame, texts: Mapping[int, str], alias: str) -> pl.DataFrame:
    """Add column `alias`: each row's template (column tpl) rendered with its own columns."""
    pieces = []
    for (tpl,), part in frame.partition_by("tpl", as_dict=True, maintain_order=True).items():
        pieces.append(part.with_columns(render(texts[int(tpl)]).alias(alias)))
    if not pieces:
        return frame.with_columns(pl.lit(None, pl.String).alias(alias))
    return pl.concat(pieces, how="vertical")


def seconds_text(seconds: pl.Expr) -> pl.Expr:
    """Postfix's delay style: 0.26, 1.7, 43, 0."""
    return (
        pl.when(seconds < 0.005)
        .then(pl.lit("0"))
        .when(seconds < 1)
        .then(seconds.round(2).cast(pl.String))
        .when(seconds < 10)
        .then(seconds.round(1).cast(pl.String))
        .otherwise(seconds.round(0).cast(pl.Int64).cast(pl.String))
    )
