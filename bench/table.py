"""The two-column table every benchmark prints (imported by the bench scripts)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    print(f"{'measure'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * value_width}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def print_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table of several columns (one row per measured case), right-aligned values."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    first, *rest = range(len(header))
    print(
        "  ".join([header[first].ljust(widths[first]), *(header[i].rjust(widths[i]) for i in rest)])
    )
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join([row[first].ljust(widths[first]), *(row[i].rjust(widths[i]) for i in rest)])
        )
