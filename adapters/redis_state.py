"""Redis versions of ``Coordination`` and ``ReplyStream``: Lua scripts make each step one round trip."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.state import (
    EarlierReplyPending,
    GapListener,
    Partial,
    PartialListener,
    Registration,
    ReplyListener,
    Stalled,
    Turn,
    TurnStart,
)
from pipeline.envelope import Reply

logger = logging.getLogger(__name__)

#: The one pub/sub channel replies are announced on; each gateway process subscribes once.
REPLIES_CHANNEL = "assistant:replies"
#: The channel partial text of replies being generated is announced on, read by the same subscription.
PARTIALS_CHANNEL = "assistant:partials"
#: The client name of that subscription's connection.
SUBSCRIBER_NAME = "assistant-replies"
#: Seconds any Redis call may take (and a caller may wait for a free connection) before it fails.
SOCKET_TIMEOUT_SECONDS = 2.0
#: Replies kept per session stream (approximate trimming keeps XADD cheap).
STREAM_MAXLEN = 1000

_REGISTER = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return {'forbidden'} end
if not owner and ARGV[5] == '0' then return {'unclaimed'} end
if KEYS[2] ~= '' then
  local first = redis.call('GET', KEYS[2])
  if first then return {'duplicate', first} end
end
if owner then redis.call('EXPIRE', KEYS[1], ARGV[4]) else redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4]) end
local seq = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
-- A counter that starts again (it expired with an idle session) must not meet the old watermarks.
if seq == 1 then redis.call('DEL', KEYS[4], KEYS[5], KEYS[6]) end
if KEYS[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2] .. '|' .. ARGV[3], 'EX', ARGV[4]) end
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[7], redis.call('TIME')[1], ARGV[2])
  redis.call('HSET', KEYS[8], ARGV[2], seq .. '|' .. ARGV[3] .. '|' .. ARGV[6])
end
return {'ok', tostring(seq)}
"""

_WITHDRAW = """
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('HDEL', KEYS[5], ARGV[4])
if KEYS[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DECR', KEYS[2]) return 1 end
-- A later message took a number already: mark this one skipped, so no turn or reply waits for it.
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 0
"""

# The rules of ``pipeline.turns`` (``past_skipped``, ``decide_turn``, ``may_deliver``), in Lua so each step is one
# round trip; tests/integration/test_turn_rules.py holds these and the in-process stores to the same cases.
# Numbers of withdrawn or given-up messages are passed over as if done (turns) or delivered (replies).
_PASS_SKIPPED = """
local function past_skipped(mark, key)
  while redis.call('SISMEMBER', key, mark + 1) == 1 do mark = mark + 1 end
  return mark
end
"""

_ACQUIRE = (
    _PASS_SKIPPED
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'wait'} end
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(ARGV[3])
if seq > 0 and seq <= done then return {'stale'} end
if seq > done + 1 and ARGV[4] ~= '1' and seq > past_skipped(done, KEYS[5]) + 1 then return {'wait'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {'go', redis.call('GET', KEYS[4]) or '0', redis.call('GET', KEYS[3])}
"""
)

# The state is written only by the lock's holder: a turn that outlived its lock must not overwrite the next one's.
_FINISH = """
local owned = redis.call('GET', KEYS[1]) == ARGV[1]
if owned then
  redis.call('DEL', KEYS[1])
  if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[3]) end
end
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > done then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
else redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return owned and 1 or 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_APPEND = (
    _PASS_SKIPPED
    + """
local function forget_pending()
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('HDEL', KEYS[6], ARGV[7])
  redis.call('HDEL', KEYS[7], ARGV[7])
end
if redis.call('EXISTS', KEYS[1]) == 1 then forget_pending() return false end
local seq = tonumber(ARGV[5])
local delivered = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq > delivered + 1 and ARGV[6] ~= '1' and seq > past_skipped(delivered, KEYS[4]) + 1 then
  return {'earlier'}
end
forget_pending()
if seq > delivered then redis.call('SET', KEYS[3], seq, 'EX', ARGV[2]) else redis.call('EXPIRE', KEYS[3], ARGV[2]) end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], id .. '|' .. ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[4], id .. '|' .. ARGV[1])
return id
"""
)


# Accepted messages whose reply has not gone out, by acceptance time, with their envelopes ("seq|session|json").
# The broker can lose a message in transit (popped from its list by a worker that died before recording it as
# unacknowledged); these keys let a sweep find such a message and send it again. Messages whose session is
# being worked on (its turn lock is held) are not due: they are waiting, not lost.
PENDING, PENDING_BODIES, PENDING_RESCUES, RESCUE_LOCK = "pending", "pending:body", "pending:rescues", "pending:sweep"

_RESCUE = """
if not redis.call('SET', KEYS[4], '1', 'NX', 'PX', ARGV[4]) then return {} end
local now = tonumber(redis.call('TIME')[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  local body = redis.call('HGET', KEYS[2], id)
  if not body then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], now, id)
    local first = string.find(body, '|', 1, true)
    local second = string.find(body, '|', first + 1, true)
    local session = string.sub(body, first + 1, second - 1)
    if redis.call('EXISTS', 'sess:' .. session .. ':lock') == 0 then
      if redis.call('HINCRBY', KEYS[3], id, 1) > tonumber(ARGV[3]) then
        redis.call('ZREM', KEYS[1], id)
        redis.call('HDEL', KEYS[2], id)
        redis.call('HDEL', KEYS[3], id)
        table.insert(out, id)
        table.insert(out, '')
      else
        table.insert(out, id)
        table.insert(out, body)
      end
    end
  end
end
return out
"""


def _text(value: Any) -> str | None:
    """A reply of a client made with ``decode_responses=True``: text or None."""
    return None if value is None else str(value)


def client_msg_key(user_id: str, client_msg_id: str | None) -> str:
    """The idempotency key of a client's message id; '' when there is none.

    Both parts are percent-encoded, so the ``:`` between them is never one of theirs: subject ``a:b`` with id
    ``c`` and subject ``a`` with id ``b:c`` get different keys (channel subjects such as ``telegram:123``).
    """
    if client_msg_id is None:
        return ""
    return f"cmid:{quote(user_id, safe='')}:{quote(client_msg_id, safe='')}"


def connect(url: str, max_connections: int = 50, name: str | None = None, binary: bool = False) -> redis.Redis:
    """A client whose pool makes callers wait for a free connection instead of failing under load.

    Replies are text, or bytes with ``binary`` (for audio: blobs and voice events).

    Every call is bounded: a Redis that hangs (paused, overloaded) fails the call after
    ``SOCKET_TIMEOUT_SECONDS``, and the caller answers 503 or retries later. A connection that broke (Redis
    restarted) is replaced and its command sent once more; nothing else is retried here, so a script that may
    have run is never run twice.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,
        decode_responses=not binary,
        health_check_interval=30,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        # Shown by CLIENT LIST, so an operator can tell the assistant's connections apart.
        client_name=name,
    )
    return redis.Redis(connection_pool=pool)


class RedisCoordination:
    """``Coordination`` on Redis; keys are prefixed ``sess:``, ``cmid:``, ``count:``, ``skills:``."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._register = client.register_script(_REGISTER)
        self._withdraw = client.register_script(_WITHDRAW)
        self._acquire = client.register_script(_ACQUIRE)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._rescue = client.register_script(_RESCUE)

    def register_message(
        self,
        user_id: str,
        session_id: str,
        message_id: str,
        client_msg_id: str | None,
        ttl: int,
        claim: bool = True,
        envelope_json: str | None = None,
    ) -> Registration:
        client_key = client_msg_key(user_id, client_msg_id)
        keys = [
            f"sess:{session_id}:owner",
            client_key,
            f"sess:{session_id}:seq",
            f"sess:{session_id}:done",
            f"sess:{session_id}:delivered",
            f"sess:{session_id}:skipped",
            PENDING,
            PENDING_BODIES,
        ]
        args: list[str | int] = [user_id, message_id, session_id, ttl, "1" if claim else "0", envelope_json or ""]
        result: list[str] = self._register(keys=keys, args=args)
        if result[0] in ("forbidden", "unclaimed"):
            return Registration(result[0])
        if result[0] == "duplicate":
            first_message, _, first_session = result[1].partition("|")
            return Registration("duplicate", first_message, first_session)
        return Registration("ok", message_id, session_id, int(result[1]))

    def withdraw_message(self, user_id: str, registration: Registration, client_msg_id: str | None, ttl: int) -> None:
        client_key = client_msg_key(user_id, client_msg_id)
        session = registration.session_id
        keys = [client_key, f"sess:{session}:seq", f"sess:{session}:skipped", PENDING, PENDING_BODIES]
        args: list[str | int] = [f"{registration.message_id}|{session}", registration.seq, ttl, registration.message_id]
        self._withdraw(keys=keys, args=args)

    def session_owner(self, session_id: str) -> str | None:
        return _text(self._redis.get(f"sess:{session_id}:owner"))

    def load_state(self, session_id: str) -> str | None:
        return _text(self._redis.get(f"sess:{session_id}:state"))

    def save_state(self, session_id: str, state_json: str, ttl: int) -> None:
        self._redis.set(f"sess:{session_id}:state", state_json, ex=ttl)

    def acquire_turn(self, session_id: str, seq: int, token: str, lock_ms: int, force: bool) -> TurnStart:
        keys = [f"sess:{session_id}:lock", f"sess:{session_id}:done", f"sess:{session_id}:state", "skills:version",
                f"sess:{session_id}:skipped"]  # fmt: skip
        result: list[str] = self._acquire(keys=keys, args=[token, lock_ms, seq, "1" if force else "0"])
        if result[0] != "go":
            return TurnStart(Turn(result[0]))
        # Lua turns a missing value (nil) into the end of the list: no third item means no state.
        return TurnStart(Turn.GO, result[2] if len(result) > 2 else None, int(result[1]))

    def rescue_stalled(self, older_than: float, limit: int, max_rescues: int, every: float) -> list[Stalled]:
        # One sweep per ``every`` seconds across all workers: the first to take the lock sweeps.
        lock_ms = max(1, int(every * 1000) - 100)
        flat: list[str] = self._rescue(
            keys=[PENDING, PENDING_BODIES, PENDING_RESCUES, RESCUE_LOCK], args=[older_than, limit, max_rescues, lock_ms]
        )
        stalled = []
        for message_id, body in zip(flat[::2], flat[1::2], strict=True):
            if not body:
                logger.error("message %s was sent again %d times without a reply; giving up on it", message_id,
                             max_rescues)  # fmt: skip
                continue
            seq, _, rest = body.partition("|")
            _, _, envelope_json = rest.partition("|")
            stalled.append(Stalled(message_id, envelope_json, int(seq)))
        return stalled

    def renew_turn(self, session_id: str, token: str, lock_ms: int) -> bool:
        return bool(self._renew(keys=[f"sess:{session_id}:lock"], args=[token, lock_ms]))

    def finish_turn(self, session_id: str, seq: int, token: str, ttl: int, state_json: str | None = None) -> bool:
        keys = [f"sess:{session_id}:lock", f"sess:{session_id}:done", f"sess:{session_id}:state"]
        return bool(self._finish(keys=keys, args=[token, seq, ttl, state_json or ""]))

    def pass_over(self, session_id: str, seq: int, ttl: int) -> None:
        if not seq:
            return
        pipe = self._redis.pipeline()
        pipe.sadd(f"sess:{session_id}:skipped", seq)
        pipe.expire(f"sess:{session_id}:skipped", ttl)
        pipe.execute()

    def count_delivery(self, key: str, ttl: int) -> int:
        pipe = self._redis.pipeline()
        pipe.incr(f"count:{key}")
        pipe.expire(f"count:{key}", ttl)
        count, _ = pipe.execute()
        return int(count)

    def skills_version(self) -> int:
        return int(self._redis.get("skills:version") or 0)

    def bump_skills_version(self) -> int:
        return int(self._redis.incr("skills:version"))

    def set_catalog(self, catalog_json: str) -> None:
        self._redis.set("skills:catalog", catalog_json)

    def catalog(self) -> str | None:
        return _text(self._redis.get("skills:catalog"))

    def ping(self) -> None:
        self._redis.ping()


class _GapAwarePubSub(redis.client.PubSub):
    """A pub/sub connection that says when it reconnected: redis-py resubscribes by itself, silently, and what
    was announced in between is missed."""

    def __init__(self, client: redis.Redis, on_reconnect: GapListener) -> None:
        super().__init__(client.connection_pool, ignore_subscribe_messages=True)
        self._on_reconnect = on_reconnect

    def on_connect(self, connection: Any) -> None:
        # Called on reconnections only: the pool hands the first connection over already connected, before
        # this callback is registered. Were it ever called for the first, a needless re-read is all it costs.
        super().on_connect(connection)
        self._on_reconnect()


class _RedisSubscription:
    """One pub/sub connection and the thread (a greenlet under gevent) that reads it."""

    def __init__(
        self, client: redis.Redis, listener: ReplyListener, on_gap: GapListener, on_partial: PartialListener | None
    ) -> None:
        self._client = client
        self._listener = listener
        self._on_gap = on_gap
        self._on_partial = on_partial
        self._closed = threading.Event()
        self._pubsub: Any = None
        self._thread = threading.Thread(target=self._run, name="reply-subscriber", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        connected_before = False
        while not self._closed.is_set():
            try:
                # Replies announced while the subscription was down are missed here, but the streams hold them:
                # after every reconnection (redis-py's own, or this loop's) the listeners read them back.
                self._pubsub = _GapAwarePubSub(self._client, self._gap)
                channels = [REPLIES_CHANNEL] if self._on_partial is None else [REPLIES_CHANNEL, PARTIALS_CHANNEL]
                self._pubsub.subscribe(*channels)
                self._ready.set()
                if connected_before:
                    self._gap()
                connected_before = True
                while not self._closed.is_set():
                    message = self._pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["channel"] == PARTIALS_CHANNEL:
                        self._deliver_partial(message["data"])
                    else:
                        self._deliver(message["data"])
            except redis.RedisError:
                if self._closed.is_set():
                    return
                logger.warning("reply subscription lost; reconnecting")
                self._closed.wait(0.5)
            finally:
                if self._pubsub is not None:
                    with contextlib.suppress(redis.RedisError):
                        self._pubsub.close()

    def _gap(self) -> None:
        try:
            self._on_gap()
        except Exception:
            logger.exception("re-reading replies after a reconnection failed")

    def _deliver(self, data: str) -> None:
        cursor, _, body = data.partition("|")
        try:
            self._listener(cursor, Reply.from_json(body))
        except Exception:
            logger.exception("reply listener failed")

    def _deliver_partial(self, data: str) -> None:
        if self._on_partial is None:
            return
        try:
            fields = json.loads(data)
            partial = Partial(str(fields["s"]), str(fields["m"]), int(fields["i"]), str(fields["d"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("undecodable partial announcement dropped")
            return
        try:
            self._on_partial(partial)
        except Exception:
            logger.exception("partial listener failed")

    def close(self) -> None:
        self._closed.set()
        self._thread.join(3)


class RedisReplyStream:
    """``ReplyStream`` on Redis: a stream per session, a key per message for at-most-once delivery."""

    def __init__(self, client: redis.Redis, subscriber_client: redis.Redis | None = None) -> None:
        self._redis = client
        # Pub/sub holds its connection for good: it gets its own client so the pool is not drained.
        self._subscriber_client = subscriber_client or client
        self._append = client.register_script(_APPEND)

    def append(self, reply: Reply, ttl: int, force: bool = True) -> str | None:
        session = reply.session_id
        keys = [
            f"reply:{reply.message_id}",
            f"replies:{session}",
            f"sess:{session}:delivered",
            f"sess:{session}:skipped",
            PENDING,
            PENDING_BODIES,
            PENDING_RESCUES,
        ]
        args: list[str | int] = [
            reply.to_json(),
            ttl,
            STREAM_MAXLEN,
            REPLIES_CHANNEL,
            reply.seq,
            "1" if force else "0",
            reply.message_id,
        ]
        result: Any = self._append(keys=keys, args=args)
        if isinstance(result, list):
            raise EarlierReplyPending(reply.session_id)
        return None if result is None else str(result)

    def read_after(self, session_id: str, cursor: str | None, limit: int) -> list[tuple[str, Reply]]:
        start = f"({cursor}" if cursor else "-"
        entries: Any = self._redis.xrange(f"replies:{session_id}", min=start, max="+", count=limit)
        return [(str(entry_id), Reply.from_json(fields["r"])) for entry_id, fields in entries]

    def reply_for(self, message_id: str) -> tuple[str, Reply] | None:
        raw = _text(self._redis.get(f"reply:{message_id}"))
        if raw is None:
            return None
        cursor, _, body = raw.partition("|")
        return cursor, Reply.from_json(body)

    def subscribe(
        self, listener: ReplyListener, on_gap: GapListener, on_partial: PartialListener | None = None
    ) -> _RedisSubscription:
        return _RedisSubscription(self._subscriber_client, listener, on_gap, on_partial)

    def publish_partial(self, partial: Partial) -> None:
        # Pub/sub only: a partial nobody listens to is gone, which is what it is for (the reply has the whole text).
        fields = {"s": partial.session_id, "m": partial.message_id, "i": partial.index, "d": partial.delta}
        self._redis.publish(PARTIALS_CHANNEL, json.dumps(fields, ensure_ascii=False))

    def ping(self) -> None:
        self._redis.ping()
