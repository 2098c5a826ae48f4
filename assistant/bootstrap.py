"""The composition root: builds the adapters, the Celery app, the forwarder and the HTTP edge from settings.

Entry points (``assistant run``, the gateway, the workers, the ``celery`` command) call these functions;
nothing else constructs a client. Heavy parts are built once per process, and a worker's runtime only on first
use, after a prefork worker forked.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from celery import current_app
from celery.apps.worker import Worker as CeleryWorkerProcess
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready
from flask import Flask

from adapters.blobs import BlobStore, FolderBlobStore
from adapters.bundle import Adapters, SpeechEngines
from adapters.db import Repository
from adapters.handoffs import HandoffStore, MemoryHandoffs
from adapters.home_state import HomeState, MemoryHomeState
from adapters.http import post_json
from adapters.marks import Marks, MemoryMarks
from adapters.metrics import StageMetrics, timed_classifier_loader
from adapters.mqtt_publisher import MqttPublisher
from adapters.open_meteo import OpenMeteo
from adapters.ratelimits import open_rate_limit_storage
from adapters.revocation import open_revocations
from adapters.sentry import init_sentry
from adapters.sites import SiteRepository
from adapters.speech import Recognizer, Synthesizer
from adapters.state import Coordination, MemoryCoordination, MemoryReplyStream, ReplyStream, SkippedNumbers
from adapters.telegram import TelegramBot
from adapters.tickets import MemoryStreamTickets, StreamTickets
from adapters.voice_events import MemoryVoiceEvents, VoiceEvents
from assistant.config import load_devices
from assistant.metrics_server import mark_child_dead, serve_worker_metrics
from ingress.app import create_app
from ingress.mqtt_edge import MqttEdge
from pipeline.errors import ConfigurationError
from pipeline.generation import Generator
from pipeline.settings import Settings
from pipeline.stages import Stage
from skills.builtin import builtin_skills
from skills.declarative import DeclarativeSkill
from skills.discovery import load_entry_point_skills, load_folder_skills
from skills.registry import SkillRegistry
from tasks.celery_app import StageCelery, create_celery_app
from tasks.forward import Forwarder
from tasks.intent_model import IntentModel
from tasks.rescue import Rescuer
from tasks.runtime import StageRuntime

logger = logging.getLogger(__name__)

#: How long a message's voice events (its transcript, its reply's audio by sentence) are kept: the edge that accepted
#: the message reads them as they come; this covers a slow or reconnecting reader. The whole reply's WAV stays for
#: ``AUDIO_TTL_SECONDS`` in the blob store.
VOICE_EVENTS_TTL_SECONDS = 300
#: Exit code of an entry point that cannot start with its settings (as ``assistant`` answers any configuration error).
EXIT_CONFIGURATION = 2


def build_adapters(
    settings: Settings,
    migrate: bool = False,
    pool_size: int = 5,
    pre_ping: bool = True,
    speech: SpeechEngines | None = None,
) -> Adapters:
    """Everything the process needs; embedded settings give in-process stores and SQLite.

    ``pre_ping=False`` for processes whose every database call is retried on failure (see ``create_engine_for``).
    ``speech`` shares engines loaded already (tests); by default they load on first use.
    """
    devices = load_devices(settings.devices_file)  # before any connection: a bad file stops the start cleanly
    metrics = StageMetrics()  # the process's one metrics object
    repository = Repository.from_url(settings.database_url, pool_size=pool_size, pre_ping=pre_ping)
    if migrate:
        repository.migrate()
    closers: list[Callable[[], None]] = [repository.close]
    coordination: Coordination
    replies: ReplyStream
    blobs: BlobStore
    voice_events: VoiceEvents
    home_state: HomeState
    marks: Marks
    handoffs: HandoffStore
    tickets: StreamTickets
    audio_ttl = settings.audio.audio_ttl_seconds
    if settings.redis_url:
        from adapters.blobs import RedisBlobStore
        from adapters.home_state import RedisHomeState
        from adapters.marks import RedisMarks
        from adapters.redis_handoffs import RedisHandoffs
        from adapters.redis_state import SUBSCRIBER_NAME, RedisCoordination, RedisReplyStream, connect
        from adapters.tickets import RedisStreamTickets
        from adapters.voice_events import RedisVoiceEvents

        client = connect(settings.redis_url, max_connections=max(50, pool_size * 4), name="assistant")
        subscriber = connect(settings.redis_url, max_connections=2, name=SUBSCRIBER_NAME)
        # Audio is bytes: a client of its own that does not decode replies. Its pool is apart from the text one's,
        # so edges blocked reading voice events never hold up session state.
        audio = connect(settings.redis_url, max_connections=max(50, pool_size * 4), name="assistant-audio", binary=True)
        coordination = RedisCoordination(client)
        replies = RedisReplyStream(client, subscriber)
        revocations = open_revocations(settings, client)
        blobs = RedisBlobStore(audio)
        voice_events = RedisVoiceEvents(audio, min(audio_ttl, VOICE_EVENTS_TTL_SECONDS))
        home_state = RedisHomeState(client)
        marks = RedisMarks(client)
        handoffs = RedisHandoffs(client)
        tickets = RedisStreamTickets(client)
        closers += [client.close, subscriber.close, audio.close]
    else:
        skipped = SkippedNumbers()
        coordination = MemoryCoordination(skipped)
        replies = MemoryReplyStream(skipped)
        revocations = open_revocations(settings)
        blobs = FolderBlobStore(settings.data_dir / "blobs")
        voice_events = MemoryVoiceEvents(min(audio_ttl, VOICE_EVENTS_TTL_SECONDS))
        home_state = MemoryHomeState()
        marks = MemoryMarks()
        handoffs = MemoryHandoffs()
        tickets = MemoryStreamTickets()
        closers.append(revocations.close)
    telegram = build_telegram(settings)
    if telegram is not None:
        closers.append(telegram.close)
    # Built now, connected on its first publish: only a process that delivers to MQTT ever connects.
    mqtt = MqttPublisher(settings.mqtt) if settings.mqtt.url else None
    if mqtt is not None:
        closers.append(mqtt.close)
    timeout = settings.http_timeout_seconds
    return Adapters(
        settings=settings,
        coordination=coordination,
        replies=replies,
        repository=repository,
        weather=OpenMeteo(settings.weather_geocoding_url, settings.weather_forecast_url, timeout),
        post_json=partial(
            post_json, timeout=timeout, max_bytes=settings.webhook_max_bytes, allow_hosts=settings.webhook_allow_hosts
        ),
        revocations=revocations,
        blobs=blobs,
        voice_events=voice_events,
        speech=speech or build_speech(settings, metrics),
        sites=SiteRepository(repository.engine),
        metrics=metrics,
        home_state=home_state,
        devices=devices,
        marks=marks,
        handoffs=handoffs,
        telegram=telegram,
        mqtt=mqtt,
        tickets=tickets,
        _closers=closers,
    )


def build_telegram(settings: Settings) -> TelegramBot | None:
    """The Bot API client when Telegram is enabled (a ``requests`` session: it connects on first use)."""
    config = settings.telegram
    if not config.enabled or not config.bot_token:
        return None
    return TelegramBot(config.api_url, config.bot_token)


def build_speech(settings: Settings, metrics: StageMetrics | None = None) -> SpeechEngines:
    """The configured recognizer and synthesizer, each loaded from ``MODELS_DIR`` on first use."""
    audio = settings.audio

    def recognizer(workers: int) -> Recognizer:
        from adapters.whisper import WhisperRecognizer

        return WhisperRecognizer(audio.asr, audio.models_dir, workers=workers)

    def synthesizer() -> Synthesizer:
        from adapters.piper import PiperSynthesizer

        return PiperSynthesizer(audio.tts, audio.models_dir)

    return SpeechEngines(recognizer, synthesizer, metrics)


def build_registry(adapters: Adapters) -> SkillRegistry:
    """Built-ins first (the smart home's when there is a devices file), then the skills folder, then installed
    packages' entry points."""
    registry = SkillRegistry()
    for skill in builtin_skills(adapters.weather, registry.describe):
        registry.add(skill)
    if adapters.devices is not None:
        from skills.smarthome import SmartHomeSkill  # hassil and the sentence templates load only for a smart home

        smarthome = SmartHomeSkill(adapters.devices, adapters.home_state)
        # Compiled here (about 0.2 s), in the process that answers: not on the first request, and with no thread
        # holding the matcher's lock when a prefork pool forks.
        smarthome.warm_up()
        registry.add(smarthome)
    folder = adapters.settings.skills_dir
    if folder is not None and folder.is_dir():
        for skill in load_folder_skills(folder):
            registry.add(skill)
    for skill in load_entry_point_skills():
        registry.add(skill)
    return registry


def build_runtime(adapters: Adapters, app: StageCelery) -> StageRuntime:
    """A worker process's stage runtime; publishes its skill catalog, which the gateway lists."""
    registry = build_registry(adapters)
    adapters.coordination.set_catalog(json.dumps(registry.describe(), ensure_ascii=False))

    def declarative_skills() -> list[DeclarativeSkill]:
        return [DeclarativeSkill(d, adapters.post_json) for d in adapters.repository.list_skills()]

    def generator() -> Generator | None:
        # Imported on first use: a worker that never answers with a model never loads a backend.
        from adapters.generation import build_generator

        return build_generator(adapters.settings.model)

    return StageRuntime(
        adapters.settings,
        adapters,
        registry,
        Forwarder(app),
        declarative_skills,
        build_generator=generator,
        intents=build_intents(adapters.settings, adapters.metrics),
    )


def build_intents(settings: Settings, metrics: StageMetrics | None = None) -> IntentModel | None:
    """The intent classifier of a dispatch worker (nothing loads until its first refresh); None when it is off."""
    if not settings.intents.enabled:
        return None
    from adapters.intent_training import train_in_child
    from adapters.intents import NONE_LABEL, OnnxIntentClassifier

    load = OnnxIntentClassifier.load if metrics is None else timed_classifier_loader(OnnxIntentClassifier.load, metrics)
    # Trained in a child process: the worker loads only the ONNX model, never scikit-learn.
    return IntentModel(settings.intents, load, train_in_child, NONE_LABEL)


def build_worker_app(settings: Settings, adapters: Adapters | None = None) -> StageCelery:
    """The Celery app of a stage worker. Its adapters are built on first use in the worker process, unless
    ``adapters`` are given to share (embedded mode, tests)."""

    def runtime_factory(app: StageCelery) -> StageRuntime:
        # Every stage task retries on a database error, so the per-message round trip of a pre-ping buys
        # nothing here: after a database restart one attempt fails and its retry runs on new connections.
        return build_runtime(adapters or build_adapters(settings, pre_ping=False), app)

    app = create_celery_app(settings, runtime_factory)
    # Build the runtime when a worker starts, so the gateway lists its skills before any message.
    # dispatch_uid: many apps (tests) share one signal, the receiver is connected once.
    worker_init.connect(_report_errors_from_worker, dispatch_uid="assistant.sentry_on_init", weak=False)
    worker_process_init.connect(_report_errors_from_child, dispatch_uid="assistant.sentry_in_child", weak=False)
    worker_init.connect(_check_speech_models_on_init, dispatch_uid="assistant.speech_models_on_init", weak=False)
    worker_ready.connect(_build_runtime_on_start, dispatch_uid="assistant.runtime_on_start", weak=False)
    worker_process_init.connect(_warm_speech_in_child, dispatch_uid="assistant.speech_in_child", weak=False)
    worker_process_shutdown.connect(_child_metrics_done, dispatch_uid="assistant.child_metrics", weak=False)
    return app


def _child_metrics_done(pid: int | None = None, **_: Any) -> None:
    mark_child_dead(pid or os.getpid())


def _check_speech_models_on_init(sender: Any, **_: Any) -> None:
    """A worker process (``assistant worker``, ``celery worker``) on ``asr`` or ``tts`` does not start without its
    models: it would only answer each utterance with an apology. Checked once its queues are known, before it
    connects; worker threads embedded in another process are left alone."""
    app = sender.app
    if not isinstance(app, StageCelery) or not isinstance(sender, CeleryWorkerProcess) or not _speech_stages(app):
        return
    try:
        check_speech_models(app.settings)
    except ConfigurationError as exc:
        logger.critical("cannot start: %s", exc)
        raise SystemExit(EXIT_CONFIGURATION) from None


def _build_runtime_on_start(sender: Any, **_: Any) -> None:
    app = sender.app
    if not isinstance(app, StageCelery):
        return
    speech = _speech_stages(app)
    runtime = app.runtime
    consumes = set(app.amqp.queues.consume_from or ())
    if not app.settings.embedded and str(Stage.DISPATCH) in consumes:
        # Dispatch workers look for accepted messages the broker lost (see tasks.rescue).
        Rescuer(runtime.adapters.coordination, runtime.forward).start()
    if str(Stage.DISPATCH) in consumes and isinstance(sender.pool, ThreadTaskPool):
        # The intent model loads or trains in the background; messages meanwhile go by triggers alone. (Prefork
        # children start theirs with their first message: this process answers none.)
        runtime.start_intents()
    if str(Stage.INFERENCE) in consumes:
        warm_model_in_background(runtime)
    if speech and isinstance(sender.pool, ThreadTaskPool):
        # One model serves every thread of the pool; loaded and run once before the first message is taken.
        runtime.adapters.speech.share_recognizer(int(sender.controller.concurrency or 1))
        runtime.adapters.speech.warm_up(recognizer=Stage.ASR in speech, synthesizer=Stage.TTS in speech)
    if not app.settings.embedded:  # ``assistant run`` shows its workers' metrics on its own /metrics
        serve_worker_metrics(app.settings, runtime.adapters.metrics)
    freeze_startup_heap()


def freeze_startup_heap() -> None:
    """Move what the process built to start (modules, clients, skills) out of the cyclic collector's scans.

    It lives as long as the process. Left in, every full collection walks it: in a worker (about 130,000
    objects) that paused all of the process's threads for 100 to 230 ms under load, every 15 s or so at
    100 messages/s (``bench.mqtt``). Frozen, a full collection scans only what messages made since.
    """
    gc.collect()
    gc.freeze()


def _warm_speech_in_child(**_: Any) -> None:
    """Under the prefork pool each child process loads its own engines; in the background, since the parent
    kills a child that does not report alive within seconds."""
    app = current_app._get_current_object()  # the worker's app: the one process-wide default
    if isinstance(app, StageCelery) and (speech := _speech_stages(app)):
        engines = app.runtime.adapters.speech
        warm = partial(engines.warm_up, recognizer=Stage.ASR in speech, synthesizer=Stage.TTS in speech)
        threading.Thread(target=_logged(warm), name="speech-warm-up", daemon=True).start()


def _speech_stages(app: StageCelery) -> set[Stage]:
    """The speech stages a distributed worker consumes (none when embedded: ``assistant run`` sees to them)."""
    if app.settings.embedded:
        return set()
    consumes = set(app.amqp.queues.consume_from or ())
    return {stage for stage in (Stage.ASR, Stage.TTS) if str(stage) in consumes}


def check_speech_models(settings: Settings) -> None:
    """Raises ``ConfigurationError`` naming every configured model that is not installed, and how to install it."""
    from adapters.models import check_configured

    check_configured(settings.audio)


def warm_speech_in_background(engines: SpeechEngines) -> threading.Thread:
    """Load and run both engines in a thread (``assistant run``), so the first utterance does not wait for them."""
    thread = threading.Thread(target=_logged(engines.warm_up), name="speech-warm-up", daemon=True)
    thread.start()
    return thread


def warm_model_in_background(runtime: StageRuntime) -> threading.Thread | None:
    """Build the model backend and load it (its ``warm_up``) in a thread, when one is configured: the first reply
    does not wait for a local model to load, and a model folder that cannot load is reported at start-up."""
    if runtime.settings.model.backend is None:
        return None

    def warm() -> None:
        try:
            with runtime.adapters.metrics.model_load(str(runtime.settings.model.backend)):
                warm_up = getattr(runtime.generator(), "warm_up", None)
                if callable(warm_up):
                    warm_up()
        except Exception as exc:
            # Each message tries again, and gets the "model unavailable" reply while the model cannot load.
            logger.error("loading the model backend failed: %s", exc)

    thread = threading.Thread(target=warm, name="model-warm-up", daemon=True)
    thread.start()
    return thread


def _logged(warm: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            warm()
        except Exception:
            # Each message that needs the engine tries again, and fails with an apology while it cannot load.
            logger.exception("loading the speech engines failed")

    return run


def build_gateway(settings: Settings, adapters: Adapters, app: StageCelery | None = None) -> Flask:
    """The HTTP edge: submits to ``app`` (built here, as a client only, when not given)."""
    app = app or create_celery_app(settings, _gateway_has_no_runtime)
    return create_app(adapters, Forwarder(app), partial(check_broker, app), open_rate_limit_storage(settings))


def build_mqtt_edge(settings: Settings, adapters: Adapters, app: StageCelery | None = None) -> MqttEdge:
    """The MQTT edge (``MQTT_URL``): submits to ``app`` (built here, as a client only, when not given)."""
    app = app or create_celery_app(settings, _gateway_has_no_runtime)
    return MqttEdge(adapters, Forwarder(app), settings.mqtt)


def _gateway_has_no_runtime(app: StageCelery) -> StageRuntime:
    raise RuntimeError("the gateway submits tasks and runs none")


def check_broker(app: StageCelery) -> None:
    """Raises when the broker is unreachable. A connection of its own, closed at once: readiness probes must not
    leak broker clients."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


def _report_errors_from_worker(sender: Any, **_: Any) -> None:
    """A worker process (``assistant worker``, ``celery worker``) reports to Sentry when ``SENTRY_DSN`` is set, from
    before it consumes; worker threads embedded in another process report as that process (``assistant run``)."""
    app = sender.app
    if isinstance(app, StageCelery) and isinstance(sender, CeleryWorkerProcess):
        init_sentry(app.settings, "worker")


def _report_errors_from_child(**_: Any) -> None:
    """Each prefork child starts its own Sentry client: the one it inherited holds the parent's connections."""
    app = current_app._get_current_object()
    if isinstance(app, StageCelery):
        init_sentry(app.settings, "worker")
