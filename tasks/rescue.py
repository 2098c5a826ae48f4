"""Sends again the accepted messages that the broker lost in transit, so every accepted message is answered.

Kombu's Redis transport pops a message from its queue and only then records it as unacknowledged; a worker that
dies in between takes the message with it, and no visibility timeout brings it back. The edge keeps each
accepted envelope in Redis until its reply goes out (``Coordination.register_message``). A sweep in each
dispatch worker sends those still unanswered after ``RESCUE_AFTER_SECONDS`` whose session nobody is working on
back to their first stage (``dispatch``, or ``asr`` for speech). A message that was only slow is then handled
twice at most: the turn it finished makes the copy stale, and a reply goes out once per message id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from adapters.state import Coordination
from pipeline.envelope import Envelope
from pipeline.errors import EnvelopeError
from pipeline.stages import Stage, entry_stage
from tasks.forward import Forwarder

logger = logging.getLogger(__name__)

#: Seconds without a reply after which an accepted message whose session is idle is taken for lost. Above the
#: broker's visibility timeout plus a sweep (a dead worker's messages come back that way first), below the
#: 30 s within which every accepted message should be answered after a worker's death.
RESCUE_AFTER_SECONDS = 20.0
#: Seconds between sweeps (across all workers: one of them sweeps each time).
SWEEP_SECONDS = 2.0
#: Times one message is sent again before it is given up (the stage's own limits usually end it first).
MAX_RESCUES = 3
#: Messages sent again per sweep at most, so a backlog is not doubled at once.
SWEEP_LIMIT = 100
#: No sweep while more messages than this wait in the dispatch queue: then a message without a reply after
#: ``RESCUE_AFTER_SECONDS`` is most likely still queued, and a copy would only deepen the backlog.
MAX_BACKLOG = 100
#: The same for the speech stages, whose messages take a second or more each: a few queued ones already keep
#: a message from its reply for ``RESCUE_AFTER_SECONDS``, and a copy costs a model call.
MAX_SPEECH_BACKLOG = 8


class Rescuer:
    """A daemon thread in a dispatch worker that sweeps for lost messages."""

    def __init__(
        self, coordination: Coordination, forward: Forwarder, rescue_after: float = RESCUE_AFTER_SECONDS
    ) -> None:
        self._coordination = coordination
        self._forward = forward
        self._rescue_after = rescue_after
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rescuer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stopped.wait(SWEEP_SECONDS):
            try:
                self.sweep()
            except Exception as exc:
                logger.warning("sweep for lost messages failed: %s", type(exc).__name__)

    def sweep(self) -> int:
        """Send the lost messages found now to their first stage again; how many."""
        limits = ((Stage.DISPATCH, MAX_BACKLOG), (Stage.ASR, MAX_SPEECH_BACKLOG), (Stage.TTS, MAX_SPEECH_BACKLOG))
        for stage, most in limits:
            backlog = self._forward.backlog(stage)
            if backlog > most:
                logger.info("%d messages wait in the %s queue; no sweep for lost ones now", backlog, stage)
                return 0
        stalled = self._coordination.rescue_stalled(self._rescue_after, SWEEP_LIMIT, MAX_RESCUES, SWEEP_SECONDS)
        for item in stalled:
            try:
                envelope = replace(Envelope.from_json(item.envelope_json), seq=item.seq)
            except EnvelopeError as exc:
                logger.error("kept envelope of message %s is unreadable: %s", item.message_id, exc)
                continue
            logger.warning("message %s has no reply after %g s; sending it again", item.message_id,
                           self._rescue_after)  # fmt: skip
            # A message lost before recognition goes back to ``asr`` (its audio is kept for AUDIO_TTL_SECONDS).
            self._forward.to_stage(entry_stage(envelope.audio_key, envelope.text), envelope)
        return len(stalled)
