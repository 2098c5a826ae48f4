"""``assistant run``: the HTTP API and real Celery workers in one process, on in-process parts."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from typing import TYPE_CHECKING, Any

from adapters.bundle import Adapters, SpeechEngines
from adapters.sentry import init_sentry
from assistant.bootstrap import (
    EXIT_CONFIGURATION,
    build_adapters,
    build_gateway,
    build_mqtt_edge,
    build_worker_app,
    check_speech_models,
    freeze_startup_heap,
    warm_model_in_background,
    warm_speech_in_background,
)
from assistant.metrics_server import queue_depths
from ingress.telegram import check_config as check_telegram
from pipeline.errors import ConfigurationError
from pipeline.logsafe import redact_credentials
from pipeline.settings import Settings
from pipeline.stages import all_queues
from tasks.celery_app import StageCelery

if TYPE_CHECKING:
    from cheroot.wsgi import Server

logger = logging.getLogger(__name__)


class EmbeddedWorkers:
    """Celery worker(s) consuming every queue of the in-memory broker, in threads of this process."""

    def __init__(self, app: StageCelery, queues: list[str], concurrency: int = 8) -> None:
        self._app = app
        self._controller: Any = app.WorkController(
            pool_cls="threads",
            concurrency=concurrency,
            queues=queues,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@localhost",
            loglevel=logging.WARNING,
        )
        self._thread = threading.Thread(target=self._controller.start, name="embedded-worker", daemon=True)

    def start(self) -> None:
        # Load the skills and publish their catalog now, as `celery worker` does on worker_ready:
        # the first message should not pay for it, and the gateway can list skills at once.
        _ = self._app.runtime
        self._thread.start()

    def stop(self) -> None:
        self._controller.stop()
        self._thread.join(5)


def build_embedded(
    settings: Settings, speech: SpeechEngines | None = None
) -> tuple[Adapters, StageCelery, EmbeddedWorkers]:
    """The adapters (migrated SQLite, in-memory stores, a blob folder), the Celery app sharing them, and its
    workers, which run every stage, ``asr`` and ``tts`` included. ``speech``: engines loaded already (tests)."""
    adapters = build_adapters(settings, migrate=True, speech=speech)
    depths = queue_depths(settings)
    if depths is not None:  # /metrics shows the in-memory broker's queues
        adapters.metrics.registry.register(depths)
    app = build_worker_app(settings, adapters)
    workers = EmbeddedWorkers(app, all_queues(settings.enabled_channels))
    return adapters, app, workers


#: The embedded server's threads: at start, kept idle for the next connections, added at a time, and at most (each
#: open event stream or WebSocket holds one; a server runs the gevent gateway for more).
HTTP_THREADS_MIN = 16
HTTP_THREADS_SPARE = 4
HTTP_THREADS_GROW_BY = 8
HTTP_THREADS_MAX = 2000


def http_server(app: Any, host: str, port: int) -> Server:
    """The embedded HTTP server for WSGI ``app`` on ``host``:``port`` (0: a free port, in ``bind_addr`` after
    ``prepare()``), with WebSocket upgrades handed to the app's views."""
    # A threaded server, not gevent: under gevent's patching the in-process Celery threads add
    # tens of milliseconds to each hop. Each open stream or WebSocket holds a thread, so the pool grows with them.
    from cheroot.workers.threadpool import ThreadPool
    from cheroot.wsgi import Server

    from ingress.websocket import WebSocketGateway

    class LoggedServer(Server):
        """cheroot, its error lines in the process's log (JSON or text, ``LOG_FILE``) rather than raw on standard
        error, without exception messages or the tickets and tokens of request URLs."""

        def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
            logging.getLogger("cheroot").log(level, "%s", redact_credentials(str(msg)), exc_info=traceback)

    class GrowingThreadPool(ThreadPool):
        """cheroot's pool never grows by itself (``max`` only bounds ``grow()``): with a fixed pool the server
        stops answering anything, health checks included, once that many event streams or WebSockets are open.
        This one adds threads whenever few are idle."""

        def put(self, obj: Any) -> None:
            if self.idle < HTTP_THREADS_SPARE:
                self.grow(HTTP_THREADS_GROW_BY)
            super().put(obj)

    server = LoggedServer((host, port), app, numthreads=HTTP_THREADS_MIN)
    server.requests = GrowingThreadPool(server, min=HTTP_THREADS_MIN, max=HTTP_THREADS_MAX)
    server.gateway = WebSocketGateway
    return server


def run_embedded(settings: Settings) -> int:
    init_sentry(settings, "embedded")
    try:
        check_speech_models(settings)
        if settings.telegram.enabled:
            check_telegram(settings)
    except ConfigurationError as exc:
        print(f"assistant: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    adapters, celery_app, workers = build_embedded(settings)
    # One utterance per core is recognised at a time; more would only share the cores' time.
    adapters.speech.share_recognizer(os.cpu_count() or 1)
    flask_app = build_gateway(settings, adapters, celery_app)
    workers.start()
    # The models load while the server starts; an utterance that comes first waits for them.
    warm_speech_in_background(adapters.speech)
    warm_model_in_background(celery_app.runtime)
    # The intent model trains now, in the background, not when the first message arrives: until it is ready,
    # paraphrases reach the fallback.
    celery_app.runtime.start_intents()
    # Devices' requests come in beside the HTTP API's, on the same in-process workers.
    mqtt_edge = build_mqtt_edge(settings, adapters, celery_app) if settings.mqtt.url else None
    if mqtt_edge is not None:
        mqtt_edge.start()
    freeze_startup_heap()
    server = http_server(flask_app, settings.host, settings.port)
    server.prepare()
    host = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
    print(f"Assistant running at http://{host}:{settings.port}  (data in {settings.data_dir.resolve()})")
    command = "assistant" if shutil.which("assistant") else sys.argv[0]
    print(f"Get a token:  {command} token --sub alice --role user   (or --role admin)")
    print(
        f"Then:  curl -X POST http://{host}:{settings.port}/api/messages -H 'Authorization: Bearer TOKEN' "
        "-H 'Content-Type: application/json' -d '{\"text\": \"现在几点\"}'",
    )
    print(f"The chat widget on a page:  http://{host}:{settings.port}/demo   (/demo?lang=zh in Chinese)")
    print(f"Operators:  http://{host}:{settings.port}/operator   (token: {command} token --sub NAME --role agent)",
          flush=True)  # fmt: skip
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if mqtt_edge is not None:
            mqtt_edge.stop()
        workers.stop()
        adapters.close()
    return 0
