"""The envelope and reply JSON forms: round trips, the version check, malformed input."""

from __future__ import annotations

import json

import pytest

from pipeline.envelope import ENVELOPE_VERSION, Envelope, Reply, new_id
from pipeline.errors import EnvelopeError


def full_envelope() -> Envelope:
    return Envelope(
        message_id=new_id(),
        session_id="会话-1",
        channel="telegram",
        user_id="用户甲",
        roles=("user", "admin"),
        text="现在几点?上海天气怎么样 ☀️",
        audio_key="audio/abc.wav",
        client_msg_id="c-1",
        reply_to="12345",
        wants=("text", "speech"),
        language="zh",
        seq=7,
        created_at=1_700_000_000.125,
        timings=(("asr", 12.5), ("dispatch", 1.25)),
    )


def test_envelope_round_trip_keeps_every_field_and_the_chinese_text() -> None:
    envelope = full_envelope()
    raw = envelope.to_json()
    # Chinese travels as itself, not as \u escapes.
    assert "现在几点" in raw and "\\u" not in raw
    assert json.loads(raw)["v"] == ENVELOPE_VERSION
    assert Envelope.from_json(raw) == envelope
    assert Envelope.from_json(raw.encode("utf-8")) == envelope


def test_envelope_defaults_survive_a_round_trip() -> None:
    envelope = Envelope(message_id="m", session_id="s", channel="web", user_id="u")
    decoded = Envelope.from_json(envelope.to_json())
    assert decoded == envelope
    assert decoded.wants == ("text",) and decoded.roles == () and decoded.seq == 0


def test_with_timing_appends_a_rounded_timing_and_leaves_the_original_alone() -> None:
    envelope = full_envelope()
    stamped = envelope.with_timing("tts", 3.14159)
    assert stamped.timings == (*envelope.timings, ("tts", 3.142))
    assert envelope.timings == (("asr", 12.5), ("dispatch", 1.25))


def test_reply_round_trip_with_chinese_text_actions_and_error() -> None:
    reply = Reply(
        message_id="m1",
        session_id="s1",
        channel="mqtt",
        text="抱歉，天气服务暂时无法访问。",
        skill="weather",
        expects_reply=True,
        actions=({"type": "light", "room": "客厅", "on": True},),
        error="weather_unavailable",
        reply_to="home/客厅",
        user_id="用户甲",
        created_at=1_700_000_001.5,
        timings=(("dispatch", 2.0),),
        seq=7,
        recorded=True,
    )
    raw = reply.to_json()
    assert "客厅" in raw and "\\u" not in raw
    assert Reply.from_json(raw) == reply
    assert Reply.from_dict(reply.to_dict()) == reply


def test_reply_answering_addresses_the_reply_the_way_the_message_came() -> None:
    envelope = full_envelope()
    reply = Reply.answering(envelope, "好的", skill="time")
    assert (reply.message_id, reply.session_id, reply.channel) == (
        envelope.message_id,
        envelope.session_id,
        envelope.channel,
    )
    assert (reply.reply_to, reply.user_id, reply.timings) == (envelope.reply_to, envelope.user_id, envelope.timings)
    assert (reply.text, reply.skill, reply.error, reply.expects_reply) == ("好的", "time", None, False)


@pytest.mark.parametrize("version", [None, 0, ENVELOPE_VERSION + 1, "1"])
def test_other_versions_are_refused(version: object) -> None:
    data = json.loads(full_envelope().to_json())
    if version is None:
        del data["v"]
    else:
        data["v"] = version
    with pytest.raises(EnvelopeError, match="version"):
        Envelope.from_json(json.dumps(data))
    reply = json.loads(Reply(message_id="m", session_id="s", channel="web", text="t").to_json())
    reply["v"] = data.get("v")
    with pytest.raises(EnvelopeError, match="version"):
        Reply.from_json(json.dumps(reply))


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{",
        b"\xff\xfe",
        "[1, 2]",
        '"a string"',
        "null",
        json.dumps({"v": ENVELOPE_VERSION}),
        json.dumps({"v": ENVELOPE_VERSION, "message_id": "m", "session_id": "s", "channel": "web"}),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "user_id": "u",
                "seq": "three",
            }
        ),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "user_id": "u",
                "created_at": "yesterday",
            }
        ),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "user_id": "u",
                "timings": [["dispatch"]],
            }
        ),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "user_id": "u",
                "timings": 5,
            }
        ),
    ],
)
def test_malformed_envelopes_raise_envelope_error(raw: str | bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_json(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "nope",
        "[]",
        json.dumps({"v": ENVELOPE_VERSION, "message_id": "m", "session_id": "s", "channel": "web"}),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "text": "t",
                "created_at": "later",
            }
        ),
        json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "message_id": "m",
                "session_id": "s",
                "channel": "web",
                "text": "t",
                "timings": [[1, "x"]],
            }
        ),
    ],
)
def test_malformed_replies_raise_envelope_error(raw: str) -> None:
    with pytest.raises(EnvelopeError):
        Reply.from_json(raw)


def test_envelope_error_has_a_machine_readable_code() -> None:
    with pytest.raises(EnvelopeError) as caught:
        Envelope.from_json("{}")
    assert caught.value.code == "bad_envelope"
