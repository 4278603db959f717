"""`layerlift pair`: a short one-time code that a client (the Photoshop panel) trades for the token.

UXP panels cannot read the token file, so the user types this code into the panel once; the
panel sends it in a `pair` message and keeps the token it gets back. The code works once,
for a couple of minutes, and a few wrong guesses void it.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pair", help="print a short-lived code to pair the Photoshop panel",
        description="Print a one-time pairing code; type it into the LayerLift panel.",
    )
    parser.add_argument("--ttl", type=float, default=None,
                        help="seconds the code stays valid (default 120)")
    return parser


def run(args: argparse.Namespace) -> int:
    from layerlift.bridge.auth import PAIRING_TTL, create_pairing_code, load_or_create_token

    ttl = args.ttl if args.ttl and args.ttl > 0 else PAIRING_TTL
    load_or_create_token()
    code, expires = create_pairing_code(ttl)
    minutes = max(1, round((expires - time.time()) / 60))
    print(f"Pairing code: {code[:3]} {code[3:]}  (valid for about {minutes} min, works once)")
    return 0
