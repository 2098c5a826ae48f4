"""``assistant telegram set-webhook|info|delete-webhook``: the bot's webhook at Telegram, printed without the token."""

from __future__ import annotations

import json
import sys
from typing import Any

from adapters.telegram import ALLOWED_UPDATES, TelegramBot, TelegramError, TelegramUnreachable
from ingress.telegram import PATH, check_config
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings

#: What ``getWebhookInfo`` answers that is shown; the rest is Telegram's bookkeeping.
SHOWN = ("url", "pending_update_count", "last_error_date", "last_error_message", "max_connections",
         "allowed_updates", "ip_address")  # fmt: skip


def telegram_command(settings: Settings, command: str, drop_pending: bool = False) -> int:
    """Run ``command`` (``set-webhook``, ``info``, ``delete-webhook``); 0 on success, 1 when Telegram refused or
    was unreachable, 2 for a configuration error."""
    config = settings.telegram
    try:
        if command == "set-webhook":
            check_config(settings)
            if not config.webhook_url.startswith("https://") and not config.webhook_url.startswith("http://"):
                raise ConfigurationError(f"set the public webhook URL (TELEGRAM_WEBHOOK_URL), ending in {PATH}")
        elif not config.bot_token:
            raise ConfigurationError("set TELEGRAM_BOT_TOKEN")
    except ConfigurationError as exc:
        print(f"assistant telegram: configuration error: {exc}", file=sys.stderr)
        return 2
    bot = TelegramBot(config.api_url, config.bot_token)
    try:
        if command == "set-webhook":
            bot.set_webhook(config.webhook_url, config.webhook_secret, ALLOWED_UPDATES)
            print(f"webhook set: {config.webhook_url} (updates: {', '.join(ALLOWED_UPDATES)}; secret token sent)")
        elif command == "delete-webhook":
            bot.delete_webhook(drop_pending)
            print("webhook deleted" + (" and pending updates dropped" if drop_pending else ""))
        else:
            info: dict[str, Any] = bot.webhook_info()
            print(json.dumps({key: info[key] for key in SHOWN if key in info}, ensure_ascii=False, indent=2))
    except (TelegramError, TelegramUnreachable) as exc:
        # Their text names the method and Telegram's answer, never the URL with the token.
        print(f"assistant telegram {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        bot.close()
    return 0
