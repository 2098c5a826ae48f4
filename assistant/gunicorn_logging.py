"""gunicorn's logger class for ``assistant gateway``: its own lines go through ``configure_logging``'s handlers."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from assistant.config import load_settings
from assistant.logging_setup import configure_logging


class GunicornLogger(Logger):
    """gunicorn's error log (start, workers booting, timeouts) as JSON or text lines like the app's, in
    ``LOG_FILE`` too. The access log (``GATEWAY_ACCESS_LOG``) stays gunicorn's own file and format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        # The master reads the settings too: it runs none of the app's code, and the CLI checked them already.
        configure_logging(load_settings(), "gateway")
        for handler in [h for h in self.error_log.handlers if getattr(h, "_gunicorn", False)]:
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
