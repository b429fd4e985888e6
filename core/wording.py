"""Counts in words, the same on every surface (console, CLI, crawler messages)."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """Return a count with its noun, plural unless the count is one: '1 table', '96 partitions'."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def changes(counts: dict[str, int]) -> str:
    """Return what changed, from counts keyed 'noun verb' ('1 table added, 3 partitions added'), or 'no changes'."""
    phrases = [f"{plural(n, key.split()[0])} {key.split()[1]}" for key, n in counts.items() if n]
    return ", ".join(phrases) or "no changes"
