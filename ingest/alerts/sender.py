"""One notification through Apprise, blocking: callers run it in a thread (``asyncio.to_thread``).

Apprise reports a failure as a log line, not an exception: the line is captured as the reason,
with every secret-looking part of the channel's URL masked.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import warnings

import apprise

from unity.schemas.alerts import AlertState, RuleSeverity

_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
}
# apprise.LogCapture attaches to the one global apprise logger: two captures at once would see
# each other's lines, so the reason of a failure could land on the wrong delivery.
_CAPTURE = threading.Lock()
# Apprise's e-mail support loads a module that imports the stdlib's deprecated imghdr, on first
# use and in a sender thread; loaded here once, where the warning can be silenced safely.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    importlib.import_module("apprise.utils.pgp")
# Apprise's own log lines may name a channel's URL: they go only to the capture below, whose
# text is scrubbed before it is stored or logged.
logging.getLogger("apprise").propagate = False
_PIECES = re.compile(r"[^:/@?&=#]{4,}")
MAX_REASON = 500


def secrets_of(url: str) -> list[str]:
    """The parts of a URL that may be secret: user, password, path and query pieces."""
    _, _, rest = url.partition("://")
    netloc, _, tail = rest.partition("/")
    userinfo, at, _ = netloc.rpartition("@")
    pieces = _PIECES.findall(userinfo if at else "") + _PIECES.findall(tail)
    return sorted(set(pieces), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    for piece in secrets_of(url):
        text = text.replace(piece, "***")
    return text


def send(url: str, title: str, body: str, severity: RuleSeverity, state: AlertState) -> str | None:
    """Send one message; None when the service took it, else why not (one line, no secrets)."""
    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "the channel URL is not one Apprise can use"
    kind = apprise.NotifyType.SUCCESS if state == "resolved" else _TYPES[severity]
    with _CAPTURE, apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as logs:  # type: ignore[no-untyped-call]
        try:
            ok = notifier.notify(body=body, title=title, notify_type=kind)
        except Exception as exc:  # a plugin's bug must not end the sender
            return scrub(f"{type(exc).__name__}: {exc}", url)[:MAX_REASON]
        captured = logs.getvalue()
    if ok:
        return None
    lines = [line.strip() for line in captured.splitlines() if line.strip()]
    reason = lines[-1] if lines else "the service did not accept the message"
    return scrub(reason, url)[:MAX_REASON]
