"""MQTT_URL parsing, the topic helpers, the reply address, the MQTT settings and the checks of device payloads."""

from __future__ import annotations

import json

import pytest

from adapters.mqtt import BrokerAddress, parse_reply_address, parse_url, reply_address, topics, valid_device_id
from ingress.mqtt_requests import RequestRejected, parse_request, parse_state, session_of
from pipeline.channel_config import MqttConfig
from pipeline.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker", BrokerAddress("broker", 1883, False)),
        ("mqtts://broker", BrokerAddress("broker", 8883, True)),
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884, False)),
        ("mqtts://edge:s3cret@mq.example.com:8884", BrokerAddress("mq.example.com", 8884, True, "edge", "s3cret")),
        # A password with @ : / in it, percent-encoded as URLs need.
        ("mqtt://edge:p%40ss%3Aw%2Frd@broker", BrokerAddress("broker", 1883, False, "edge", "p@ss:w/rd")),
        ("mqtt://only-user@broker", BrokerAddress("broker", 1883, False, "only-user", "")),
        ("mqtt://[::1]:1883", BrokerAddress("::1", 1883, False)),
    ],
)
def test_urls(url: str, expected: BrokerAddress) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://broker:99999", "mqtt://u:pw@broker:port"])
def test_bad_urls_never_quote_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    assert "pw" not in str(caught.value)


def test_the_password_stays_out_of_repr_and_str() -> None:
    address = parse_url("mqtts://edge:hunter2@broker:8883")
    assert "hunter2" not in repr(address) and "hunter2" not in str(address)
    assert str(address) == "mqtts://edge:***@broker:8883"


def test_topics() -> None:
    t = topics("t1/assistant", "t1/home")
    assert t.request_topic("kitchen") == "t1/assistant/kitchen/request"
    assert t.reply_topic("kitchen") == "t1/assistant/kitchen/reply"
    assert t.error_topic("kitchen") == "t1/assistant/kitchen/error"
    assert t.audio_topic("kitchen") == "t1/assistant/kitchen/audio"
    assert t.audio_topic("kitchen", "r-1") == "t1/assistant/kitchen/audio/r-1"
    assert t.subscriptions() == [
        "t1/assistant/+/request",
        "t1/assistant/+/audio",
        "t1/assistant/+/audio/+",
        "t1/home/+/+/state",
    ]
    assert t.parse_device("t1/assistant/kitchen/request") == "kitchen"
    assert t.parse_device("t2/assistant/kitchen/request") is None
    assert t.parse_device("t1/assistant//request") is None
    assert t.kind("t1/assistant/kitchen/request") == "request"
    assert t.kind("t1/assistant/kitchen/audio") == "audio"
    assert t.kind("t1/assistant/kitchen/audio/r-1") == "audio"
    assert t.kind("t1/assistant/kitchen/reply") == "reply"
    assert t.kind("t1/assistant/kitchen/other") is None
    assert t.kind("t1/assistant/kitchen/request/more") is None
    assert t.audio_request_id("t1/assistant/kitchen/audio/r-1") == "r-1"
    assert t.audio_request_id("t1/assistant/kitchen/audio") is None
    assert t.state_filter() == "t1/home/+/+/state"
    assert t.state_topic("bedroom", "lamp") == "t1/home/bedroom/lamp/state"
    assert t.command_topic("bedroom", "lamp") == "t1/home/bedroom/lamp/set"
    assert t.parse_state_topic("t1/home/bedroom/lamp/state") == ("bedroom", "lamp")
    assert t.parse_state_topic("t1/home/bedroom/lamp/set") is None
    assert t.parse_state_topic("home/bedroom/lamp/state") is None
    assert topics() == topics("assistant", "home")


def test_device_ids_and_reply_addresses() -> None:
    assert valid_device_id("kitchen-speaker")
    assert not any(valid_device_id(d) for d in ("", "a/b", "a+", "#", "a\0"))
    address = reply_address("kitchen", "req/1")
    assert parse_reply_address(address) == ("kitchen", "req/1")
    assert parse_reply_address("kitchen") is None
    assert parse_reply_address(None) is None
    assert parse_reply_address("/r1") is None


def test_settings_from_the_environment() -> None:
    config = MqttConfig.from_env(
        {
            "MQTT_URL": "mqtt://broker",
            "MQTT_TOPIC_PREFIX": "/site1/assistant/",
            "MQTT_STATE_PREFIX": "site1/home",
            "MQTT_ALLOWED_DEVICES": "kitchen, bedroom ,",
            "MQTT_KEEPALIVE_SECONDS": "10",
            "MQTT_SESSION_EXPIRY_SECONDS": "60",
        }
    )
    assert (config.topic_prefix, config.state_prefix) == ("site1/assistant", "site1/home")
    assert config.allowed_devices == ("kitchen", "bedroom")
    assert (config.keepalive_seconds, config.session_expiry_seconds) == (10, 60)
    assert MqttConfig.from_env({}) == MqttConfig()
    for bad in ({"MQTT_TOPIC_PREFIX": "a/+"}, {"MQTT_STATE_PREFIX": "#"}, {"MQTT_KEEPALIVE_SECONDS": "0"},
                {"MQTT_SESSION_EXPIRY_SECONDS": "x"}):  # fmt: skip
        with pytest.raises(ConfigurationError):
            MqttConfig.from_env(bad)


def _rejected(payload: bytes, max_bytes: int = 1000) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse_request(payload, max_bytes)
    return caught.value


def test_requests() -> None:
    body = {"id": "r1", "text": " 开灯 ", "session_id": "s1", "context": {"area": "卧室"}, "language": "zh"}
    request = parse_request(json.dumps(body).encode(), 1000)
    assert (request.id, request.text, request.session_id, request.area, request.language) == (
        "r1", "开灯", "s1", "卧室", "zh"
    )  # fmt: skip
    assert _rejected(b"x" * 1001).code == "payload_too_large"
    assert _rejected(b"\xff\xfe{}").code == "not_utf8"
    assert _rejected(b"turn on the light").code == "not_json"
    assert _rejected(b"[1]").code == "not_json"
    missing_id = _rejected(b'{"text": "hi"}')
    assert (missing_id.code, missing_id.request_id) == ("bad_request", None)
    for bad in ({"text": ""}, {"text": 3}, {"text": "hi", "session_id": "a b"}, {"text": "hi", "language": "fr"},
                {"text": "hi", "context": "bedroom"}, {"text": "hi", "context": {"area": 5}}):  # fmt: skip
        rejected = _rejected(json.dumps({"id": "r2", **bad}).encode())
        assert (rejected.code, rejected.request_id) == ("bad_request", "r2"), bad
    error = json.loads(_rejected(json.dumps({"id": "r3"}).encode()).payload())
    assert error["id"] == "r3" and error["error"]["code"] == "bad_request" and error["error"]["message"]
    assert "id" not in json.loads(_rejected(b"nope").payload())


def test_sessions() -> None:
    assert session_of("kitchen", None) == "mqtt:kitchen"
    assert session_of("kitchen", "game") == "mqtt:kitchen:game"
    with pytest.raises(RequestRejected):
        session_of("k" * 48, "s" * 20)


def test_state_payloads() -> None:
    assert parse_state(b"on", 100) == ("on", None)
    assert parse_state(b" 21.5\n", 100) == ("21.5", None)
    assert parse_state(b'{"state": "on", "attributes": {"brightness": 128}}', 100) == ("on", {"brightness": 128})
    assert parse_state(b'{"state": 21.5}', 100) == ("21.5", None)
    for bad in (b"", b"\xff", b"{nope", b'{"attributes": {}}', b'{"state": "on", "attributes": 1}', b"x" * 101):
        with pytest.raises(RequestRejected):
            parse_state(bad, 100)
