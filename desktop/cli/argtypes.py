"""Argument types and exit codes every subcommand shares, so each says the same thing."""

from __future__ import annotations

import argparse
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments; unreadable input uses it too
EXIT_INTERRUPTED = 130


def int_in_range(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse `type` for a whole number in [low, high] with a sentence when it is not."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") \
                from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be {low}-{high}, got {value}")
        return value

    return parse
