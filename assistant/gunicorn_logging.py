"""gunicorn's logger class for ``assistant gateway``: its own lines go through ``configure_logging``'s handlers,
and its access log shows no stream ticket or token."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from assistant.config import load_settings
from assistant.logging_setup import configure_logging
from pipeline.logsafe import REDACTED, redact_credentials

#: Request headers whose value an access log format (``%({authorization}i)s``) must not show.
SECRET_HEADERS = frozenset(
    {"{authorization}i", "{cookie}i", "{proxy-authorization}i", "{x-telegram-bot-api-secret-token}i"}
)


class GunicornLogger(Logger):
    """gunicorn's error log (start, workers booting, timeouts) as JSON or text lines like the app's, in
    ``LOG_FILE`` too. The access log (``GATEWAY_ACCESS_LOG``) stays gunicorn's own file and format, with the values
    of ``ticket=`` and ``...token=`` query parameters (a browser's event stream, the voice WebSocket) and of
    credential headers replaced."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # The master reads the settings too: it runs none of the app's code, and the CLI checked them already.
        configure_logging(load_settings(), "gateway")
        for handler in [h for h in self.error_log.handlers if getattr(h, "_gunicorn", False)]:
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if key in SECRET_HEADERS:
                atoms[key] = REDACTED
            elif isinstance(value, str) and "=" in value:
                atoms[key] = redact_credentials(value)
        return atoms
