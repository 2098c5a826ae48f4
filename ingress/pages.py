"""``/widget.js``, the chat widget any site embeds, and ``/demo``, a page carrying it (embedded mode only)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app, request, send_from_directory
from werkzeug.exceptions import NotFound

from adapters.bundle import Adapters

bp = Blueprint("pages", __name__)

STATIC = Path(__file__).resolve().parent / "static"
#: The script is cached an hour: a new version reaches every page within that.
WIDGET_MAX_AGE = 3600
#: The built-in site of embedded mode, allowed on the gateway's own origin.
DEMO_SITE_KEY = "demo"

DEMO_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading}</title>
<style>body{{font:16px/1.6 system-ui,sans-serif;margin:0;color:#1f2937;background:#f8fafc}}
main{{max-width:680px;margin:0 auto;padding:48px 24px}}code{{background:#e2e8f0;padding:1px 5px;border-radius:4px}}
pre{{background:#0f172a;color:#e2e8f0;padding:14px;border-radius:8px;overflow-x:auto;white-space:pre-wrap}}</style>
</head><body><main>
<h1>{heading}</h1>
<p>{intro}</p>
<pre>&lt;script src="{origin}/widget.js" data-site-key="SITE_KEY"
        data-title="{title}" data-lang="{lang}" data-color="#0f766e" async&gt;&lt;/script&gt;</pre>
<p>{other}</p>
</main>
<script src="/widget.js" data-site-key="{site}" data-title="{title}" data-lang="{lang}" data-color="#0f766e" async>
</script>
</body></html>
"""

TEXTS = {
    "en": {
        "heading": "The assistant on a web page",
        "intro": "The chat button at the bottom right is the widget. A site registered with "
        "<code>assistant sites add --origin https://shop.example</code> embeds it with one tag:",
        "title": "Chat with us",
        "other": '中文界面：<a href="/demo?lang=zh">/demo?lang=zh</a>',
    },
    "zh": {
        "heading": "网页上的智能助手",
        "intro": "右下角的聊天按钮就是小部件。用 <code>assistant sites add --origin https://shop.example</code> "
        "登记的网站，只需一行代码即可嵌入：",
        "title": "在线客服",
        "other": 'English: <a href="/demo">/demo</a>',
    },
}


def adapters() -> Adapters:
    found: Adapters = current_app.extensions["assistant"]["adapters"]
    return found


@bp.get("/widget.js")
def widget_script() -> Response:
    response = send_from_directory(STATIC, "widget.js", mimetype="text/javascript", max_age=WIDGET_MAX_AGE)
    # Any page may load the script; it carries nothing private.
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/demo")
def demo() -> Response:
    if not adapters().settings.embedded:
        raise NotFound("the demo page exists in embedded mode only")
    lang = "zh" if request.args.get("lang") == "zh" else "en"
    page = DEMO_PAGE.format(lang=lang, site=DEMO_SITE_KEY, origin=request.host_url.rstrip("/"), **TEXTS[lang])
    return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})
