"""``HandoffStore`` on Redis: one hash per session and a sorted set of the listed ones; every transition is one Lua
script, so it reads and changes the status atomically (two operators cannot both take a session)."""

from __future__ import annotations

import time
from typing import Any

import redis

from adapters.handoffs import LAST_TEXT_CHARS, ReleaseOutcome, TakeOutcome, Transition
from pipeline.envelope import now
from pipeline.handoff import LISTED, Handoff, HandoffStatus

#: Sessions with a listed status (waiting, active, message_left), by when they last changed.
LISTED_KEY = "handoffs:listed"
#: Bumped by every change an operator's listing shows; the operator streams poll it.
VERSION_KEY = "handoffs:version"
#: Seconds between two looks at the version while an operator stream waits for a change.
POLL_SECONDS = 0.25
#: Most sessions listed at once.
LISTED_LIMIT = 500

# KEYS: the session's hash, the listed set, the version. ARGV: operation, session id, time, ttl, then the operation's
# own. Returns {outcome, changed (1/0), previous status ('' for none), the hash's fields after}.
_TRANSITION = """
local h, listed, version = KEYS[1], KEYS[2], KEYS[3]
local op, sid, at, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HMGET', h, 'status', 'id', 'agent')
local status, id, agent = cur[1] or '', cur[2] or '', cur[3] or ''
local function is_listed(s) return s == 'waiting' or s == 'active' or s == 'message_left' end
local function answer(outcome, changed)
  return {outcome, changed, status, redis.call('HGETALL', h)}
end
local function save(new_status, ...)
  redis.call('HSET', h, 'status', new_status, 'since', at, 'updated', at, ...)
  redis.call('EXPIRE', h, ttl)
  if is_listed(new_status) then redis.call('ZADD', listed, at, sid) else redis.call('ZREM', listed, sid) end
  if is_listed(new_status) or is_listed(status) then redis.call('INCR', version) end
  return answer(op, 1)
end
if op == 'request' then
  if status == 'waiting' and id == ARGV[5] then return answer('request', 0) end
  if status == 'waiting' or status == 'active' or status == 'timed_out' then return answer('held', 0) end
  redis.call('DEL', h)
  return save('waiting', 'id', ARGV[5], 'agent', '', 'user', ARGV[6], 'lang', ARGV[7], 'text', ARGV[8])
elseif op == 'take' then
  if status == '' or status == 'bot' then return answer('not_found', 0) end
  if status == 'active' then return answer(agent == ARGV[5] and 'taken' or 'already_taken', 0) end
  save('active', 'agent', ARGV[5])
  return answer('taken', 1)
elseif op == 'release' then
  if status == '' or status == 'bot' then return answer('not_found', 0) end
  if status == 'active' and ARGV[5] ~= '' and agent ~= ARGV[5] then return answer('not_yours', 0) end
  save('bot')
  return answer('released', 1)
elseif op == 'time_out' then
  if id ~= ARGV[5] then return answer('stale', 0) end
  if status == 'timed_out' or status == 'message_left' then return answer('timed_out', 0) end
  if status ~= 'waiting' then return answer('stale', 0) end
  -- A message held while waiting is the left message: the session stays listed.
  save(tonumber(redis.call('HGET', h, 'held') or '0') > 0 and 'message_left' or 'timed_out')
  return answer('timed_out', 1)
elseif op == 'leave' then
  if status ~= 'timed_out' then return answer('no', 0) end
  return save('message_left', 'text', ARGV[5])
elseif op == 'note' then
  if not is_listed(status) then return answer('no', 0) end
  redis.call('HSET', h, 'text', ARGV[5], 'updated', at)
  redis.call('HINCRBY', h, 'held', 1)
  redis.call('EXPIRE', h, ttl)
  redis.call('ZADD', listed, at, sid)
  redis.call('INCR', version)
  return answer('note', 1)
end
return redis.error_reply('unknown operation ' .. op)
"""


def handoff_key(session_id: str) -> str:
    return f"sess:{session_id}:handoff"


def _handoff(session_id: str, fields: dict[str, str]) -> Handoff | None:
    if not fields.get("status"):
        return None
    return Handoff(
        session_id=session_id,
        status=HandoffStatus(fields["status"]),
        handoff_id=fields.get("id", ""),
        agent=fields.get("agent") or None,
        since=float(fields.get("since") or 0),
        user_id=fields.get("user", ""),
        language=fields.get("lang") or "zh",
        last_text=fields.get("text", ""),
        updated_at=float(fields.get("updated") or 0),
        held=int(fields.get("held") or 0),
    )


class RedisHandoffs:
    """``HandoffStore`` on a ``decode_responses`` client (``adapters.redis_state.connect``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._transition = client.register_script(_TRANSITION)

    def _run(self, op: str, session_id: str, ttl: int, *args: str) -> Transition:
        keys = [handoff_key(session_id), LISTED_KEY, VERSION_KEY]
        raw: Any = self._transition(keys=keys, args=[op, session_id, repr(now()), ttl, *args])
        outcome, changed, previous, flat = raw
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return Transition(str(outcome), _handoff(session_id, fields), bool(int(changed)),
                          HandoffStatus(previous) if previous else None)  # fmt: skip

    def get(self, session_id: str) -> Handoff | None:
        fields: Any = self._client.hgetall(handoff_key(session_id))
        return _handoff(session_id, fields)

    def request(
        self, session_id: str, handoff_id: str, user_id: str, language: str, text: str, ttl: int
    ) -> Handoff | None:
        result = self._run("request", session_id, ttl, handoff_id, user_id, language, text[:LAST_TEXT_CHARS])
        return result.handoff if result.outcome == "request" else None

    def take(self, session_id: str, agent: str, ttl: int) -> Transition:
        result = self._run("take", session_id, ttl, agent)
        return Transition(TakeOutcome(result.outcome), result.handoff, result.changed, result.previous)

    def release(self, session_id: str, agent: str | None, ttl: int) -> Transition:
        result = self._run("release", session_id, ttl, agent or "")
        return Transition(ReleaseOutcome(result.outcome), result.handoff, result.changed, result.previous)

    def time_out(self, session_id: str, handoff_id: str, ttl: int) -> Transition:
        return self._run("time_out", session_id, ttl, handoff_id)

    def leave_message(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        result = self._run("leave", session_id, ttl, text[:LAST_TEXT_CHARS])
        return result.handoff if result.changed else None

    def note(self, session_id: str, text: str, ttl: int) -> Handoff | None:
        result = self._run("note", session_id, ttl, text[:LAST_TEXT_CHARS])
        return result.handoff if result.changed else None

    def listed(self, limit: int | None = None) -> list[Handoff]:
        shown = LISTED_LIMIT if limit is None else max(0, min(limit, LISTED_LIMIT))
        if shown == 0:
            return []
        session_ids: Any = self._client.zrevrange(LISTED_KEY, 0, shown - 1)
        if not session_ids:
            return []
        with self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.hgetall(handoff_key(session_id))
            hashes = pipe.execute()
        found, gone = [], []
        for session_id, fields in zip(session_ids, hashes, strict=True):
            handoff = _handoff(session_id, fields)
            if handoff is None:
                gone.append(session_id)  # expired with its session
            elif handoff.status in LISTED:
                found.append(handoff)
        if gone:
            self._client.zrem(LISTED_KEY, *gone)
        return sorted(found, key=lambda h: h.updated_at, reverse=True)

    def version(self) -> int:
        raw: Any = self._client.get(VERSION_KEY)
        return int(raw or 0)

    def wait_for_change(self, seen: int, timeout: float) -> int:
        # A GET every quarter second per open operator stream: a handful of operators cost nothing, and no
        # subscription connection is held per stream.
        deadline = time.monotonic() + timeout
        while True:
            version = self.version()
            if version != seen or time.monotonic() >= deadline:
                return version
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
