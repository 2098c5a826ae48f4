"""The ``assistant`` command: run, token, migrate, gateway, worker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings
from pipeline.stages import all_queues


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        print(f"assistant: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # urllib3 logs whole URLs at DEBUG, and a weather URL holds the place the user asked about.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    handler = {"run": _run, "token": _token, "migrate": _migrate, "gateway": _gateway, "worker": _worker}
    return handler[args.command](settings, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="A self-hosted assistant.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="everything in one process on embedded defaults")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default 8080, or PORT)")
    run.add_argument("--host", default=None, help="address to bind (default 127.0.0.1, or HOST)")
    token = sub.add_parser("token", help="print a signed access token, or revoke tokens")
    token.add_argument("--sub", help="the user the token is for")
    token.add_argument("--role", action="append", help="user, admin or visitor (repeatable; default user)")
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
    return parser


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import replace

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
                revoke(revocations, claims)
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
    ]  # fmt: skip
    # Off unless asked for: a line per request costs the gateway a fifth of its time under load, and gunicorn
    # formats every line when any access log is named, /dev/null included.
    if access_log := os.environ.get("GATEWAY_ACCESS_LOG"):
        argv += ["--access-logfile", access_log]
    argv.append("assistant.wsgi:create_wsgi_app()")
    os.execv(sys.executable, argv)
    return 0  # not reached


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.bootstrap import build_worker_app

    queues = [q.strip() for q in args.queues.split(",") if q.strip()] or all_queues(settings.enabled_channels)
    app = build_worker_app(settings)
    argv = ["worker", "--queues", ",".join(queues), "--concurrency", str(args.concurrency), "--pool", args.pool]
    argv += ["--loglevel", settings.log_level, "--without-gossip", "--without-mingle"]
    if settings.log_level != "DEBUG":
        # Celery's "received" and "succeeded" lines, three tasks a message, are noise and CPU at hundreds of
        # messages a second; failures and retries are still logged, by Celery (ERROR) and the stages (WARNING).
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
