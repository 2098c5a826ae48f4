"""Skills run on reused threads with a time limit, so a skill that hangs costs one thread, not the worker."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import SkillTimeout
from pipeline.turns import LEASE_RENEW_SECONDS

#: Idle threads kept for reuse; starting a thread per call costs more than most skills.
MAX_IDLE_THREADS = 16


class _SkillThread(threading.Thread):
    """Runs the calls handed to it, and goes back on its pool's idle list after each one it finishes."""

    def __init__(self, pool: SkillThreads) -> None:
        super().__init__(name="skill", daemon=True)
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._pool = pool

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def run(self) -> None:
        while True:
            self._jobs.get()()
            if not self._pool.take_back(self):
                return


class SkillThreads:
    """A pool of skill threads, one per worker process; a thread whose call hangs stays out until it returns."""

    def __init__(self, max_idle: int = MAX_IDLE_THREADS) -> None:
        self._idle: list[_SkillThread] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle

    def take_back(self, thread: _SkillThread) -> bool:
        """Put ``thread`` on the idle list; False (the thread then ends) when enough are idle."""
        with self._lock:
            if len(self._idle) >= self._max_idle:
                return False
            self._idle.append(thread)
            return True

    def run(
        self, call: Callable[[], Any], timeout: float, name: str, keep_alive: Callable[[], None] | None = None
    ) -> Any:
        """``call()``'s result, or ``SkillTimeout`` after ``timeout`` seconds (the call is left to finish alone).

        ``keep_alive`` is called every ``LEASE_RENEW_SECONDS`` while the call runs.
        """
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def job() -> None:
            threading.current_thread().name = f"skill-{name}"
            try:
                outcome["value"] = call()
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                done.set()

        with self._lock:
            thread = self._idle.pop() if self._idle else None
        if thread is None:
            thread = _SkillThread(self)
            thread.submit(job)
            thread.start()
        else:
            thread.submit(job)
        deadline = time.monotonic() + timeout
        while not done.wait(min(LEASE_RENEW_SECONDS, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise SkillTimeout(f"skill {name!r} did not answer within {timeout:g} s")
            if keep_alive is not None:
                keep_alive()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]
