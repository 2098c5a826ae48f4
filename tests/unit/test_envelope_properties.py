"""Envelope and reply JSON: valid values round-trip; any other input decodes or raises EnvelopeError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.envelope import Envelope, Reply
from pipeline.errors import EnvelopeError

# No example database: a failing example is printed, and nothing is written into the work tree.
PROPERTIES = settings(database=None, max_examples=300, deadline=None)

finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text()
optional_text = st.none() | text
texts = st.lists(text, max_size=4).map(tuple)
timings = st.lists(st.tuples(text, finite), max_size=4).map(tuple)
#: Sequence numbers are positions in a session: any 64-bit count.
seq = st.integers(min_value=0, max_value=2**63 - 1)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
#: JSON that ``json.dumps`` writes and reads back equal: what a valid reply's actions may hold.
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | finite | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)

envelopes = st.builds(
    Envelope,
    message_id=text,
    session_id=text,
    channel=text,
    user_id=text,
    roles=texts,
    text=text,
    audio_key=optional_text,
    client_msg_id=optional_text,
    reply_to=optional_text,
    wants=texts,
    language=optional_text,
    seq=seq,
    created_at=finite,
    timings=timings,
)
replies = st.builds(
    Reply,
    message_id=text,
    session_id=text,
    channel=text,
    text=text,
    skill=optional_text,
    expects_reply=st.booleans(),
    actions=st.lists(st.dictionaries(text, plain_json, max_size=4), max_size=3).map(tuple),
    error=optional_text,
    reply_to=optional_text,
    user_id=text,
    created_at=finite,
    timings=timings,
    seq=seq,
    recorded=st.booleans(),
)

ENVELOPE_TYPES: dict[str, Any] = {
    "message_id": str,
    "session_id": str,
    "channel": str,
    "user_id": str,
    "text": str,
    "audio_key": (str, type(None)),
    "client_msg_id": (str, type(None)),
    "reply_to": (str, type(None)),
    "language": (str, type(None)),
    "seq": int,
    "created_at": float,
}
REPLY_TYPES: dict[str, Any] = {
    "message_id": str,
    "session_id": str,
    "channel": str,
    "text": str,
    "skill": (str, type(None)),
    "expects_reply": bool,
    "error": (str, type(None)),
    "reply_to": (str, type(None)),
    "user_id": str,
    "created_at": float,
    "seq": int,
    "recorded": bool,
}


@PROPERTIES
@given(envelopes)
def test_every_valid_envelope_round_trips(envelope: Envelope) -> None:
    raw = envelope.to_json()
    assert Envelope.from_json(raw) == envelope
    assert Envelope.from_json(raw.encode("utf-8")) == envelope


@PROPERTIES
@given(replies)
def test_every_valid_reply_round_trips(reply: Reply) -> None:
    raw = reply.to_json()
    assert Reply.from_json(raw) == reply
    assert Reply.from_json(raw.encode("utf-8")) == reply
    assert Reply.from_dict(reply.to_dict()) == reply


def _decode_envelope(raw: str | bytes) -> None:
    """Decodes into a well-typed envelope, or raises EnvelopeError; any other exception fails the test."""
    try:
        envelope = Envelope.from_json(raw)
    except EnvelopeError:
        return
    _assert_types(envelope, ENVELOPE_TYPES)
    for name in ("roles", "wants"):
        assert all(isinstance(item, str) for item in getattr(envelope, name)), name
    _assert_timings(envelope.timings)


def _decode_reply(raw: str | bytes) -> None:
    try:
        reply = Reply.from_json(raw)
    except EnvelopeError:
        return
    _assert_types(reply, REPLY_TYPES)
    assert all(isinstance(action, dict) for action in reply.actions)
    _assert_timings(reply.timings)


def _assert_types(decoded: Any, types: dict[str, Any]) -> None:
    for name, kind in types.items():
        value = getattr(decoded, name)
        assert isinstance(value, kind), (name, value)
        if kind is int:
            assert not isinstance(value, bool), name


def _assert_timings(timings: tuple[tuple[str, float], ...]) -> None:
    assert all(isinstance(stage, str) and isinstance(ms, float) for stage, ms in timings)


@PROPERTIES
@given(json_values)
def test_arbitrary_json_decodes_or_raises_envelope_error(value: Any) -> None:
    raw = json.dumps(value)
    _decode_envelope(raw)
    _decode_reply(raw)


def test_json_nested_past_the_parsers_recursion_limit_raises_envelope_error() -> None:
    raw = "[" * 100_000 + "]" * 100_000
    _decode_envelope(raw)
    _decode_reply(raw)


@PROPERTIES
@given(st.binary() | st.text())
def test_arbitrary_bytes_and_text_decode_or_raise_envelope_error(raw: bytes | str) -> None:
    _decode_envelope(raw)
    _decode_reply(raw)


ENVELOPE_FIELDS = sorted(json.loads(Envelope(message_id="m", session_id="s", channel="web", user_id="u").to_json()))
REPLY_FIELDS = sorted(Reply(message_id="m", session_id="s", channel="web", text="t").to_dict())
field_names = st.sampled_from(sorted({*ENVELOPE_FIELDS, *REPLY_FIELDS})) | text
mutations = st.lists(st.tuples(field_names, st.none() | json_values, st.booleans()), min_size=1, max_size=4)


def _mutated(data: dict[str, Any], changes: list[tuple[str, Any, bool]]) -> str:
    """``data`` with each named field set to a value, or removed when the flag says so (``v`` included)."""
    changed = dict(data)
    for name, value, remove in changes:
        if remove:
            changed.pop(name, None)
        else:
            changed[name] = value
    return json.dumps(changed)


@PROPERTIES
@given(envelopes, mutations)
@example(
    Envelope(message_id="m", session_id="s", channel="web", user_id="u"),
    [("seq", float("inf"), False)],
)
@example(
    Envelope(message_id="m", session_id="s", channel="web", user_id="u"),
    [("created_at", 10**400, False)],
)
def test_mutated_envelope_json_decodes_or_raises_envelope_error(
    envelope: Envelope, changes: list[tuple[str, Any, bool]]
) -> None:
    _decode_envelope(_mutated(json.loads(envelope.to_json()), changes))


@PROPERTIES
@given(replies, mutations)
@example(
    Reply(message_id="m", session_id="s", channel="web", text="t"),
    [("timings", [["dispatch", 10**400]], False)],
)
def test_mutated_reply_json_decodes_or_raises_envelope_error(
    reply: Reply, changes: list[tuple[str, Any, bool]]
) -> None:
    _decode_reply(_mutated(reply.to_dict(), changes))
