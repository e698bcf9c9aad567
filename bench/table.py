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
