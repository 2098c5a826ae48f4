"""What a log line may show of an exception: its types and where it was raised, never its message."""

from __future__ import annotations

import re
import traceback


def trace_without_messages(exc: BaseException) -> str:
    """The exception's type and the frames it passed through, for it and each exception behind it.

    Messages are left out: a skill's, a driver's or an HTTP library's message may quote the user's text, a URL
    with a token in it, or a database row. File, line, function and source line stay, which is what debugging
    needs most.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        frames = "".join(traceback.format_tb(current.__traceback__)).rstrip()
        parts.append(f"{kind.__module__}.{kind.__qualname__}" + (f"\n{frames}" if frames else ""))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\nraised while handling ".join(parts)


#: Query parameters that carry a credential: stream tickets and tokens (``?ticket=``, ``?access_token=``, ``?token=``).
_CREDENTIAL_PARAM = re.compile(r"(?i)((?:^|[?&;\s\"'])(?:ticket|[a-z_]*token))=[^&\s\"'#]*")
REDACTED = "[redacted]"


def redact_credentials(text: str) -> str:
    """``text`` (a URL, a request line, a log message) with the values of ``ticket=`` and ``...token=`` parameters
    replaced: a stream ticket or token in an access log line would let anyone who reads the log use it."""
    if "=" not in text:
        return text
    return _CREDENTIAL_PARAM.sub(rf"\1={REDACTED}", text)
