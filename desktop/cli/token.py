"""`layerlift token`: print the bridge token, for plug-ins set up by hand.

The GIMP plug-in reads the token file itself; this is for other scripts and for checking.
The token is made on first use, in a file only this user can read.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "token", help="print the bridge's access token (made on first use)",
        description="Print the token that clients send in their hello message.",
    )
    parser.add_argument("--path", action="store_true", help="print the token file's path instead")
    return parser


def run(args: argparse.Namespace) -> int:
    from layerlift.bridge.auth import load_or_create_token, token_path

    token = load_or_create_token()
    print(token_path() if args.path else token)
    return 0
