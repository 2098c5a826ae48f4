"""The ``assistant`` command: run, token, migrate, gateway, worker, mqtt, models, train-intents, quantize, telegram,
sites."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from assistant.config import load_settings
from assistant.logging_setup import configure_logging
from pipeline.audio_config import AudioConfig
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings
from pipeline.stages import all_queues

#: What each command's log lines say they come from (``component`` in JSON lines).
COMPONENTS = {"run": "embedded", "gateway": "gateway", "worker": "worker", "mqtt": "mqtt"}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "models":
        return _models(args)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"assistant: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings, COMPONENTS.get(args.command, "cli"))
    handler = {"run": _run, "token": _token, "migrate": _migrate, "gateway": _gateway, "worker": _worker,
               "train-intents": _train_intents, "quantize": _quantize, "telegram": _telegram,
               "mqtt": _mqtt, "sites": _sites}  # fmt: skip
    return handler[args.command](settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="A self-hosted assistant.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="everything in one process on embedded defaults")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default 8080, or PORT)")
    run.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or HOST)")
    token = sub.add_parser("token", help="print a signed access token, or revoke tokens")
    token.add_argument("--sub", help="the user the token is for")
    token.add_argument("--role", action="append", help="user, admin, visitor or agent (repeatable; default user)")
    token.add_argument("--ttl", type=int, default=None, help="access token lifetime in seconds "
                                                             "(default JWT_ACCESS_TTL_SECONDS)")  # fmt: skip
    token.add_argument("--refresh", action="store_true", help="print JSON with an access and a refresh token")
    token_commands = token.add_subparsers(dest="token_command", metavar="{revoke}")
    revoke = token_commands.add_parser("revoke", help="revoke one token, or every token of a subject issued until now")
    revoke.add_argument("token", nargs="?", help="the token to revoke")
    revoke.add_argument("--sub", dest="revoke_subject", metavar="NAME", help="revoke every token of NAME issued so far")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    gateway = sub.add_parser("gateway", help="the HTTP edge under gunicorn with gevent")
    gateway.add_argument("--port", type=int, default=None)
    gateway.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    worker = sub.add_parser("worker", help="a Celery worker on the named stage queues")
    worker.add_argument("--queues", default="", help="comma-separated, e.g. dispatch,reply.web (default: all)")
    worker.add_argument("--concurrency", type=int, default=4)
    # Only pools whose event loop keeps running beside the tasks: it renews the worker's deliveries on the broker
    # (tasks.broker); under solo or gevent a long task would be handed to a second worker.
    worker.add_argument("--pool", default="threads", choices=["threads", "prefork"])
    worker.add_argument("--hostname", default=None, help="worker node name (default: celery's)")
    sub.add_parser("mqtt", help="the MQTT edge: devices' requests and state reports (MQTT_URL)")
    models = sub.add_parser("models", help="install and list the speech models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    install = models_commands.add_parser(
        "install", help="fetch and verify models (default: the configured ones and the default set)"
    )
    install.add_argument("names", nargs="*", metavar="NAME", help="catalog names such as whisper-base, tiny.en")
    install.add_argument("--models-dir", type=Path, default=None, help="where to put them (default MODELS_DIR)")
    listing = models_commands.add_parser("list", help="what is installed, verified, and what the config resolves to")
    listing.add_argument("--models-dir", type=Path, default=None, help="the folder to look at (default MODELS_DIR)")
    _intent_parsers(sub)
    _telegram_parsers(sub)
    _sites_parsers(sub)
    return parser


def _sites_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sites = sub.add_parser("sites", help="the websites whose pages may carry the chat widget")
    commands = sites.add_subparsers(dest="sites_command", required=True)
    add = commands.add_parser("add", help="register a site; prints its site key and signing secret")
    add.add_argument("--origin", action="append", required=True, metavar="URL",
                     help="an origin its pages are served from, like https://shop.example (repeatable)")  # fmt: skip
    add.add_argument("--name", default="", help="a name to tell it by (default: its first origin)")
    add.add_argument("--json", action="store_true", help="print JSON")
    listing = commands.add_parser("list", help="the registered sites (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    remove = commands.add_parser("remove", help="unregister a site: its pages get no more visitor tokens")
    remove.add_argument("site_key", metavar="SITE_KEY")


def _sites(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.site_commands import sites_command

    return sites_command(settings, args.sites_command, getattr(args, "origin", None) or [],
                         getattr(args, "name", ""), getattr(args, "site_key", ""),
                         getattr(args, "json", False))  # fmt: skip


def _telegram_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    telegram = sub.add_parser("telegram", help="the Telegram bot's webhook at Telegram")
    commands = telegram.add_subparsers(dest="telegram_command", required=True)
    commands.add_parser("set-webhook", help="register TELEGRAM_WEBHOOK_URL and the secret with Telegram")
    commands.add_parser("info", help="what Telegram knows of the webhook (URL, pending updates, last error)")
    delete = commands.add_parser("delete-webhook", help="stop Telegram sending updates to the webhook")
    delete.add_argument("--drop-pending", action="store_true", help="also drop the updates Telegram holds")


def _telegram(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.telegram_commands import telegram_command

    return telegram_command(settings, args.telegram_command, getattr(args, "drop_pending", False))


def _intent_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser("train-intents", help="train the intent classifier on the skills' triggers and examples")
    train.add_argument("--out", type=Path, default=None, help="model folder (default INTENT_MODEL_DIR)")
    quantize = sub.add_parser("quantize", help="write an int8 copy of an ONNX model and compare it with the original")
    quantize.add_argument("model", type=Path, metavar="MODEL.onnx")
    quantize.add_argument("-o", "--output", type=Path, default=None, help="default MODEL.int8.onnx beside it")
    quantize.add_argument("--runs", type=int, default=300, help="timed runs per model (default 300)")
    quantize.add_argument("--heldout", type=Path, default=None, help="text<TAB>label file an intent model is "
                          "compared on (default bench/data/intents_heldout.tsv of a source checkout)")  # fmt: skip


def _train_intents(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.intent_commands import train_intents

    return train_intents(settings, args.out)


def _quantize(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.intent_commands import quantize

    return quantize(settings, args.model, args.output, args.runs, args.heldout)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.embedded import run_embedded

    if not settings.embedded:
        print("assistant run is the embedded mode: unset BROKER_URL and REDIS_URL, or use gateway/worker")
        return 2
    settings = replace(settings, port=args.port or settings.port, host=args.host or settings.host)
    return run_embedded(settings)


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.tokens import issue_pair, issue_token

    if args.token_command == "revoke":
        return _revoke(settings, args)
    if not args.sub:
        print("assistant token: --sub NAME is required", file=sys.stderr)
        return 2
    if args.ttl is not None and args.ttl <= 0:
        print("assistant token: --ttl must be a positive number of seconds", file=sys.stderr)
        return 2
    roles = args.role or ["user"]
    try:
        if args.refresh:
            print(json.dumps(issue_pair(settings, args.sub, roles, args.ttl).to_json()))
        else:
            print(issue_token(settings, args.sub, roles, args.ttl))
    except ValueError as exc:
        print(f"assistant token: {exc}", file=sys.stderr)
        return 2
    return 0


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime

    import jwt

    from adapters.revocation import RevocationUnavailable, open_revocations
    from adapters.tokens import read_token, revoke

    if bool(args.token) == bool(args.revoke_subject):
        print("assistant token revoke: give either a token or --sub NAME", file=sys.stderr)
        return 2
    claims = None
    if args.token:
        try:
            claims = read_token(settings, args.token.strip(), allow_expired=True)
        except jwt.InvalidTokenError as exc:
            print(f"assistant token revoke: not a token of this server: {exc}", file=sys.stderr)
            return 2
    try:
        revocations = open_revocations(settings)
        try:
            if claims is not None:
                revoke(revocations, claims, settings.visitor_renew_seconds)
            else:
                now = time.time()
                revocations.revoke_subject(args.revoke_subject, now)
        finally:
            revocations.close()
    except RevocationUnavailable as exc:
        print(f"assistant token revoke: cannot reach the revocation store: {exc}", file=sys.stderr)
        return 1
    if claims is not None:
        print(f"revoked {claims['type']} token {claims['jti']} of {claims['sub']}")
    else:
        when = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        print(f"revoked every token of {args.revoke_subject} issued until {when}")
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.db import Repository

    repository = Repository.from_url(settings.database_url)
    repository.migrate()
    repository.close()
    print("database schema is up to date")
    return 0


def _gateway(settings: Settings, args: argparse.Namespace) -> int:
    port = args.port or settings.port
    host = settings.host
    argv = [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gevent",
        "--workers", str(args.workers),
        # Each waiting client (long-poll, SSE) holds one greenlet, not a thread.
        "--worker-connections", os.environ.get("GATEWAY_CONNECTIONS", "20000"),
        "--backlog", "4096",
        "--keep-alive", "75",
        "--graceful-timeout", "10",
        "--bind", f"{host}:{port}",
        # gunicorn's own lines (start, workers booting and dying) in LOG_FORMAT and LOG_FILE like the app's.
        "--logger-class", "assistant.gunicorn_logging.GunicornLogger",
    ]  # fmt: skip
    # Off unless asked for: a line per request costs the gateway a fifth of its time under load, and gunicorn
    # formats every line when any access log is named, /dev/null included.
    if access_log := os.environ.get("GATEWAY_ACCESS_LOG"):
        argv += ["--access-logfile", access_log]
    argv.append("assistant.wsgi:create_wsgi_app()")
    os.execv(sys.executable, argv)
    return 0  # not reached


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    if settings.metrics.port is not None:
        from assistant.metrics_server import prepare_multiprocess

        prepare_multiprocess(args.pool)  # before prometheus-client is imported, with the composition root
    from assistant.bootstrap import build_worker_app

    queues = [q.strip() for q in args.queues.split(",") if q.strip()] or all_queues(settings.enabled_channels)
    app = build_worker_app(settings)
    argv = ["worker", "--queues", ",".join(queues), "--concurrency", str(args.concurrency), "--pool", args.pool]
    # Celery's per-task "received" and "succeeded" lines are kept to DEBUG by configure_logging, as in embedded mode.
    argv += ["--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def _mqtt(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.mqtt_command import run_mqtt_edge

    return run_mqtt_edge(settings)


def _models(args: argparse.Namespace) -> int:
    """``assistant models install|list``: reads only the voice settings, so it needs no secret, database or broker."""
    from assistant.config import load_audio_config

    try:
        audio = load_audio_config()
    except ConfigurationError as exc:
        print(f"assistant models: configuration error: {exc}", file=sys.stderr)
        return 2
    models_dir = args.models_dir if args.models_dir is not None else audio.models_dir
    audio = replace(audio, models_dir=models_dir)
    return _models_install(audio, args.names) if args.models_command == "install" else _models_list(audio)


def _models_install(audio: AudioConfig, names: list[str]) -> int:
    from adapters.models import DEFAULT_MODELS, find_model, install, resolve_voice, resolve_whisper

    explicit = bool(names)
    wanted = list(names) or list(DEFAULT_MODELS)
    problems: list[str] = []
    if not explicit:
        # The configured models count too; ones outside the catalog must already be where they resolve.
        asr = find_model(audio.asr.model)
        if asr is not None:
            wanted.append(asr.name)
        elif not (resolve_whisper(audio.asr.model, audio.models_dir) / "model.bin").is_file():
            path = resolve_whisper(audio.asr.model, audio.models_dir)
            problems.append(f"ASR model {audio.asr.model!r} is not in the catalog: put a CTranslate2 model in {path}")
        for language, voice in audio.tts.voices.items():
            entry = find_model(voice)
            if entry is not None:
                wanted.append(entry.name)
            elif language == "en" and resolve_voice(voice, audio.models_dir) is None:
                problems.append(f"the English voice {voice!r} is not in the catalog and not found")
    unknown = [name for name in wanted if find_model(name) is None]
    if unknown:
        print(f"assistant models install: unknown model {unknown[0]!r}; see `assistant models list`", file=sys.stderr)
        return 2
    optional = [] if explicit else [name for name in wanted if (entry := find_model(name)) and entry.optional]
    report = install(wanted, audio.models_dir, optional=optional)
    width = max(len(outcome.name) for outcome in report.outcomes)
    for outcome in report.outcomes:
        if outcome.status == "failed":
            kind = "optional, not installed" if outcome.optional else "NOT INSTALLED"
            print(f"{outcome.name:<{width}}  {kind}: {outcome.detail}")
        else:
            where = f" {outcome.detail}" if outcome.detail else ""
            print(f"{outcome.name:<{width}}  {outcome.status:<9}  {outcome.path}{where}")
    missing = [outcome.name for outcome in report.outcomes if outcome.status == "failed" and not outcome.optional]
    for problem in problems:
        print(f"assistant models install: {problem}", file=sys.stderr)
    if missing:
        print(f"assistant models install: required models could not be installed: {', '.join(missing)}",
              file=sys.stderr)  # fmt: skip
    return 1 if missing or problems else 0


def _models_list(audio: AudioConfig) -> int:
    from adapters.models import check_configured, list_models, resolve_voice, resolve_whisper, whisper_missing_files

    print(f"models in {audio.models_dir}:")
    statuses = list_models(audio.models_dir)
    width = max(len(status.model.name) for status in statuses)
    for status in statuses:
        if status.state == "installed":
            note = f"verified against {status.detail}"
        elif status.state == "damaged":
            note = f"{status.detail}; `assistant models install` replaces it"
        else:
            note = "optional" if status.model.optional else "run `assistant models install`"
        print(f"  {status.model.name:<{width}}  {status.state:<13}  {status.path}  ({note})")
    print("configuration:")
    folder = resolve_whisper(audio.asr.model, audio.models_dir)
    missing = whisper_missing_files(folder)
    state = "complete" if not missing else f"missing {', '.join(missing)}"
    print(f"  asr model {audio.asr.model!r} -> {folder} ({state})")
    for language, voice in audio.tts.voices.items():
        path = resolve_voice(voice, audio.models_dir)
        found = str(path) if path else f"not installed: replies in {language} carry text only"
        print(f"  tts voice {language} {voice!r} -> {found}")
    try:
        check_configured(audio)
    except ConfigurationError as exc:
        print(f"assistant models list: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
