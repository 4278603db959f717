"""Who may talk to the bridge: the token file, pairing codes, and Host/Origin checks.

The threat is not a remote attacker (we listen on loopback) but a web page in the user's
browser: it can open `ws://127.0.0.1:PORT` (WebSockets are not bound by CORS) or reach it
through DNS rebinding. So: a token only the user's processes can read, compared in constant
time; a Host header that must name loopback and our port; and no web Origin at all (a UXP
panel's `uxp://` Origin is not a web origin: no browser page can send that scheme).

The Photoshop panel cannot read files, so the tray (or `layerlift pair`) shows a short code
that the panel exchanges once for the token. Codes live in a 0600 file so that the CLI that
creates one and the server that redeems it can be different processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from layerlift.inference import paths
from layerlift.inference.atomic import atomic_writer

PAIRING_FILE = "pairing.json"
PAIRING_TTL = 120.0  # seconds a pairing code stays valid
PAIRING_ATTEMPTS = 5  # wrong guesses before a code is void
PAIRING_DIGITS = 6

# The Photoshop panel's UXP plug-in id (photoshop_plugin/manifest.json).
UXP_PLUGIN_ID = "com.layerlift.photoshop"
UXP_ORIGIN = f"uxp://{UXP_PLUGIN_ID}"
# Adobe documents no Origin for UXP WebSockets, and public plug-ins report several (none,
# `uxp://uxp-internal`, `uxp://<plugin id>`). Any `uxp://` Origin is admitted: a web page
# cannot send that scheme (browsers only send their page's own origin, or `null`), and the
# token and pairing still guard the bridge. See docs/protocol.md, "Security".
UXP_SCHEME = "uxp://"

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by the owner only (the staged file is made
    by `tempfile.mkstemp`, which creates it 0600, and keeps that mode when renamed)."""
    with atomic_writer(path) as handle:
        handle.write(text.encode("utf-8"))


def token_path() -> Path:
    return paths.config_dir() / paths.TOKEN_FILE


def read_token() -> str | None:
    """The install's token, or None when none was made yet (the server makes it)."""
    try:
        text = token_path().read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text or None


def load_or_create_token() -> str:
    """The token, created on first use; its file is tightened to 0600 if it was looser."""
    path = token_path()
    token = read_token()
    if token is None:
        token = secrets.token_urlsafe(32)
        _write_private(path, token + "\n")
    elif os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
    return token


def token_matches(expected: str, given: object) -> bool:
    """Constant-time comparison; anything that is not a string never matches."""
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


# -- pairing ----------------------------------------------------------------------------------
def _pairing_path() -> Path:
    return paths.config_dir() / PAIRING_FILE


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def create_pairing_code(ttl: float = PAIRING_TTL) -> tuple[str, float]:
    """A fresh one-time code (replacing any earlier one) and its expiry (epoch seconds)."""
    code = "".join(secrets.choice("0123456789") for _ in range(PAIRING_DIGITS))
    expires = time.time() + ttl
    record = {"hash": _hash(code), "expires": expires, "attempts": PAIRING_ATTEMPTS}
    _write_private(_pairing_path(), json.dumps(record))
    return code, expires


def redeem_pairing_code(code: object) -> str | None:
    """The token if `code` is the current, unexpired code (which is then used up), else None.

    A wrong guess costs one of the code's few attempts, so a six-digit code cannot be
    brute-forced in its short life.
    """
    path = _pairing_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        digest, expires, attempts = record["hash"], float(record["expires"]), record["attempts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if time.time() > expires or not isinstance(attempts, int) or attempts <= 0:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    given = "".join(code.split()) if isinstance(code, str) else ""
    if hmac.compare_digest(digest.encode(), _hash(given).encode()):
        with contextlib.suppress(OSError):
            path.unlink()
        return load_or_create_token()
    record["attempts"] = attempts - 1
    if record["attempts"] <= 0:
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        _write_private(path, json.dumps(record))
    return None


# -- handshake checks -------------------------------------------------------------------------
def allowed_hosts(port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host header values we answer to: loopback names with our port (and `extra` hosts)."""
    names = list(LOOPBACK_NAMES)
    for host in extra:
        names.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return frozenset(f"{name}:{port}".lower() for name in names)


def origin_allowed(origin: str, extra: Iterable[str] = ()) -> bool:
    """Whether one Origin value may connect: any `uxp://` origin, or one of `extra` exactly.

    Refused: `null` (sandboxed frames, `file:` pages, redirects), every `http(s)://` page,
    `file://`, browser extensions, and anything else a browser could be made to send.
    """
    return origin.strip().lower().startswith(UXP_SCHEME) or origin in set(extra)


def refuse_reason(
    hosts: list[str],
    origins: list[str],
    allowed: frozenset[str],
    allowed_origins: Iterable[str] = (),
) -> str | None:
    """Why a handshake must be refused (DNS rebinding, a web page), or None to accept it.

    No Origin header is accepted (native clients: GIMP, Python, the desktop window).
    """
    if len(hosts) != 1 or hosts[0].strip().lower() not in allowed:
        return "the Host header must name this computer's loopback address and port"
    if origins and (len(origins) != 1 or not origin_allowed(origins[0], allowed_origins)):
        return "web pages may not connect to LayerLift"
    return None
