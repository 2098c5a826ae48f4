"""WebSocket ``/audio`` on the embedded server (cheroot), without speech models: the token, text messages,
bad frames, and the server going on serving HTTP beside its WebSockets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import requests
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused
from voice_ws_support import VoiceClient, silence

from adapters.audio import float32_to_pcm16
from adapters.tokens import issue_token
from assistant.bootstrap import build_gateway
from assistant.embedded import build_embedded, http_server
from ingress.voice_ws import AUTH_TIMEOUT_SECONDS, POLICY_VIOLATION
from pipeline.settings import Settings

SECRET = "voice-ws-protocol-secret-" + "v" * 24


@dataclass
class Server:
    """The embedded pipeline behind cheroot on a free port."""

    base: str
    settings: Settings

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/audio"

    def token(self, subject: str = "alice", role: str = "user", ttl: int = 600) -> str:
        return issue_token(self.settings, subject, (role,), ttl)

    def connect(self, subject: str = "alice", role: str = "user") -> VoiceClient:
        return VoiceClient(self.ws, headers={"Authorization": f"Bearer {self.token(subject, role)}"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("voice-ws-protocol")
    settings = Settings(
        data_dir=data,
        config_dir=data / "config",
        database_url=f"sqlite:///{data / 'assistant.db'}",
        jwt_secret=SECRET,
        rate_limit_per_user="8/minute",
        rate_limit_per_ip=None,
    )
    adapters, celery_app, workers = build_embedded(settings)
    app = build_gateway(settings, adapters, celery_app)
    workers.start()
    http = http_server(app, "127.0.0.1", 0)
    http.prepare()
    thread = threading.Thread(target=http.serve, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{http.bind_addr[1]}", settings)
    finally:
        http.stop()
        workers.stop()
        adapters.close()


def ask_time(client: VoiceClient, **fields: object) -> dict[str, object]:
    """Send a text message that the time skill answers; its reply event."""
    client.send({"type": "text", "text": "现在几点", "reply_audio": False, **fields})
    reply = client.event("reply", timeout=20)
    assert str(reply["text"]).startswith("现在是"), reply
    return reply


def test_token_in_the_authorization_header(server: Server) -> None:
    client = server.connect("hedda")
    try:
        reply = ask_time(client)
        assert reply["skill"] == "time" and reply["message_id"] and reply["session_id"]
        assert client.summary() == ["reply"]
    finally:
        client.close()


def test_token_in_the_query_string(server: Server) -> None:
    client = VoiceClient(f"{server.ws}?access_token={server.token('quentin')}")
    try:
        ask_time(client)
    finally:
        client.close()


def test_token_in_the_first_frame(server: Server) -> None:
    client = VoiceClient(server.ws)
    try:
        client.send({"type": "auth", "token": server.token("frida")})
        ask_time(client)
    finally:
        client.close()


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_bad_token_in_the_request_is_refused_before_the_upgrade(server: Server, where: str) -> None:
    expired = server.token(ttl=-60)
    other_key = issue_token(replace(server.settings, jwt_secret="another-secret-" + "k" * 32), "alice", ("user",), 600)
    for token in (expired, other_key, "not-a-jwt"):
        with pytest.raises(HandshakeRefused) as refused:
            if where == "header":
                Client.connect(server.ws, headers={"Authorization": f"Bearer {token}"})
            else:
                Client.connect(f"{server.ws}?access_token={token}")
        assert refused.value.status_code == 401
    # The same refusal, as JSON, for a client that reads the handshake's answer.
    response = requests.get(server.base + "/audio", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
                            "Authorization": f"Bearer {expired}"}, timeout=10)  # fmt: skip
    assert response.status_code == 401
    assert response.json()["error"] == "token_expired"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("not-a-jwt", "invalid_token"),
        ("expired", "token_expired"),
        ("refresh", "wrong_token_type"),
    ],
)
def test_a_bad_token_in_the_first_frame_closes_the_connection(server: Server, token: str, code: str) -> None:
    if token == "expired":
        token = server.token(ttl=-60)
    elif token == "refresh":
        from adapters.tokens import issue_pair

        token = issue_pair(server.settings, "alice", ("user",)).refresh_token
    client = VoiceClient(server.ws)
    client.send({"type": "auth", "token": token})
    error = client.event("error", timeout=10)
    assert error["code"] == code and error["message"]
    closed = client.wait_closed()
    assert closed.reason == POLICY_VIOLATION


def test_no_token_at_all_closes_the_connection(server: Server) -> None:
    client = VoiceClient(server.ws)
    client.send({"type": "start", "sample_rate": 16000})  # not the token
    error = client.event("error", timeout=10)
    assert error["code"] == "missing_token"
    assert client.wait_closed().reason == POLICY_VIOLATION
    silent = VoiceClient(server.ws)  # says nothing: closed after the wait for the token
    assert silent.event("error", timeout=AUTH_TIMEOUT_SECONDS + 5)["code"] == "missing_token"
    assert silent.wait_closed().reason == POLICY_VIOLATION


def test_a_token_revoked_during_the_connection_ends_it_at_the_next_message(server: Server) -> None:
    from adapters.revocation import open_revocations

    client = server.connect("mallory")
    try:
        ask_time(client)
        revocations = open_revocations(server.settings)
        try:
            revocations.revoke_subject("mallory", time.time() + 1)
        finally:
            revocations.close()
        client.send({"type": "text", "text": "现在几点", "reply_audio": False})
        assert client.event("error", timeout=10)["code"] == "token_revoked"
        assert client.wait_closed().reason == POLICY_VIOLATION
    finally:
        client.close()


def test_a_visitor_may_talk_but_not_in_someone_elses_session(server: Server) -> None:
    owner = server.connect("olivia")
    visitor = server.connect("visitor-1", role="visitor")
    try:
        session_id = ask_time(owner)["session_id"]
        ask_time(visitor)
        visitor.send({"type": "text", "text": "现在几点", "reply_audio": False, "session_id": session_id})
        assert visitor.event("error", timeout=10)["code"] == "unknown_session"
        ask_time(visitor)  # still open, in a session of its own
    finally:
        owner.close()
        visitor.close()


def test_messages_on_one_connection_stay_in_one_session(server: Server) -> None:
    client = server.connect("sam")
    try:
        first = ask_time(client)
        second = ask_time(client)
        assert first["session_id"] == second["session_id"]
        assert first["message_id"] != second["message_id"]
        transcript = requests.get(f"{server.base}/api/sessions/{first['session_id']}",
                                  headers={"Authorization": f"Bearer {server.token('sam')}"}, timeout=10)  # fmt: skip
        assert [e["kind"] for e in transcript.json()["entries"]] == ["message", "reply"] * 2
    finally:
        client.close()


def test_bad_frames_get_error_events_and_the_connection_stays_open(server: Server) -> None:
    client = server.connect("bea")
    try:
        bad: list[tuple[str | bytes, str]] = [
            ("{not json", "bad_json"),
            ("[1, 2]", "bad_json"),
            (json.dumps({"type": "shout"}), "unknown_type"),
            (json.dumps({"no": "type"}), "unknown_type"),
            (b"\x00\x01" * 160, "not_started"),
            (json.dumps({"type": "end"}), "not_started"),
            (json.dumps({"type": "start", "format": "mp3"}), "bad_start"),
            (json.dumps({"type": "start", "sample_rate": 12}), "bad_start"),
            (json.dumps({"type": "start", "sample_rate": "16000"}), "bad_start"),
            (json.dumps({"type": "start", "session_id": "no spaces allowed"}), "bad_start"),
            (json.dumps({"type": "start", "language": "english please"}), "bad_start"),
            (json.dumps({"type": "text", "text": "   "}), "bad_text"),
            (json.dumps({"type": "text", "text": "x" * 4001}), "bad_text"),
            (json.dumps({"type": "auth"}), "bad_frame"),
        ]
        for frame, code in bad:
            client.ws.send(frame)
            error = client.event("error", timeout=10)
            assert error["code"] == code, (frame[:40], error)
            assert error["message"]
        client.send({"type": "start", "sample_rate": 16000, "format": "pcm16"})
        client.ws.send(b"\x00" * 321)  # half a sample at the end
        assert client.event("error", timeout=10)["code"] == "bad_audio"
        client.send({"type": "start", "sample_rate": 16000, "format": "f32"})
        client.ws.send(b"\x00" * 6)
        assert client.event("error", timeout=10)["code"] == "bad_audio"
        client.send({"type": "end"})  # no audio came in this stream
        assert client.event("error", timeout=10)["code"] == "no_audio"
        ask_time(client)
        assert client.closed is None
    finally:
        client.close()


def test_an_utterance_over_the_length_limit_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Speech going on past ``max_audio_seconds``: an error, and the stream keeps listening."""
    client = server.connect("lena")
    try:
        client.send({"type": "start", "sample_rate": 16000, "format": "pcm16", "reply_audio": False})
        # A steady vowel-like tone is speech enough for the VAD only if it says so; use recorded speech repeated.
        from voice_ws_support import recording

        speech = recording("living_room_light_en.wav")
        loud = speech[int(0.3 * 16000) : int(1.4 * 16000)]
        # 65 s of continuous speech, sent faster than real time (the limit is on audio, not on the clock).
        chunk = float32_to_pcm16(loud)
        for _ in range(int(65 / (len(loud) / 16000)) + 1):
            client.ws.send(chunk)
        error = client.event("error", timeout=30)
        assert error["code"] == "utterance_too_long"
        client.ws.send(float32_to_pcm16(silence(1)))
        ask_time(client)
    finally:
        client.close()


def test_messages_count_against_the_per_user_rate_limit(server: Server) -> None:
    client = server.connect("rita")  # the connection: 1 of 8
    try:
        for _ in range(7):
            ask_time(client)
        client.send({"type": "text", "text": "现在几点", "reply_audio": False})
        error = client.event("error", timeout=10)
        assert error["code"] == "too_many_requests" and error["retry_after"] >= 1
        assert client.closed is None
    finally:
        client.close()


def test_http_goes_on_beside_websockets(server: Server) -> None:
    """Taken-over connections leave the server's worker threads healthy: many come and go, HTTP still answers."""
    for index in range(20):
        client = server.connect(f"churn-{index % 3}")
        if index % 2:
            client.send({"type": "start", "sample_rate": 16000})
            client.ws.send(float32_to_pcm16(silence(0.1)))
        client.close()
    for _ in range(5):
        assert requests.get(server.base + "/healthz", timeout=5).status_code == 200
    response = requests.get(server.base + "/audio", timeout=5)  # not an upgrade
    assert response.status_code == 400


def test_the_query_token_leaves_the_query_string_before_anything_reads_it(server: Server) -> None:
    """Access logs (gunicorn's ``%(r)s``, ``%(q)s``) read the request's environ after the response: the token must
    not be in it. The app sees it as the Authorization header."""
    from werkzeug.test import EnvironBuilder

    from ingress.websocket import query_token_to_header

    seen: dict[str, str] = {}

    def app(environ: dict[str, str], start_response: object) -> list[bytes]:
        seen.update(environ)
        return []

    wrapped = query_token_to_header(app, frozenset({"/audio"}))
    token = server.token("quinn")
    environ = EnvironBuilder(path="/audio", query_string=f"lang=en&access_token={token}").get_environ()
    environ["RAW_URI"] = environ["REQUEST_URI"] = f"/audio?lang=en&access_token={token}"
    wrapped(environ, lambda *args: None)
    assert seen["HTTP_AUTHORIZATION"] == f"Bearer {token}"
    for key in ("QUERY_STRING", "RAW_URI", "REQUEST_URI"):
        assert token not in environ[key] and "lang=en" in environ[key], key
    other = EnvironBuilder(path="/api/skills", query_string=f"access_token={token}").get_environ()
    wrapped(other, lambda *args: None)
    assert "HTTP_AUTHORIZATION" not in other and token in other["QUERY_STRING"]  # only on /audio
