"""Where speech goes: the routing rules of the voice stages, blob keys, and engines loaded once per process."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from adapters.blobs import InvalidBlobKey, check_key, inbound_audio_key, spoken_reply_key
from adapters.bundle import SpeechEngines
from pipeline.stages import WANTS_SPEECH, WANTS_TEXT, Stage, entry_stage, reply_stage
from tasks.stage import apology_for


@pytest.mark.parametrize(
    ("wants", "spoken", "stage"),
    [
        ((WANTS_TEXT,), False, None),
        ((WANTS_TEXT, WANTS_SPEECH), False, Stage.TTS),
        ((WANTS_SPEECH,), False, Stage.TTS),
        ((WANTS_TEXT, WANTS_SPEECH), True, None),  # synthesized, or found unspeakable: never twice
        ((), False, None),
    ],
)
def test_a_reply_goes_through_tts_only_when_speech_is_wanted_and_not_made_yet(
    wants: tuple[str, ...], spoken: bool, stage: Stage | None
) -> None:
    assert reply_stage(wants, spoken) is stage


@pytest.mark.parametrize(
    ("audio_key", "text", "stage"),
    [(None, "hi", Stage.DISPATCH), ("audio/in/m", "", Stage.ASR), ("audio/in/m", "heard", Stage.DISPATCH)],
)
def test_an_accepted_message_starts_at_asr_while_it_is_unrecognised_audio(
    audio_key: str | None, text: str, stage: Stage
) -> None:
    assert entry_stage(audio_key, text) is stage


def test_an_apology_is_spoken_when_the_client_wanted_speech() -> None:
    ids = {"message_id": "m", "session_id": "s", "channel": "web", "text": "", "language": "zh",
           "wants": [WANTS_TEXT, WANTS_SPEECH], "seq": 3}  # fmt: skip
    apology = apology_for(ids)
    assert apology is not None
    assert (apology.wants, apology.language, apology.seq) == ((WANTS_TEXT, WANTS_SPEECH), "zh", 3)
    assert reply_stage(apology.wants, apology.audio is not None) is Stage.TTS
    plain = apology_for({**ids, "wants": "speech"})  # not a list: as a text client
    assert plain is not None and plain.wants == (WANTS_TEXT,)


@pytest.mark.parametrize("session_id", ["abc", "a_b", "a.b", "a:b", "..", "_", "x-5F", "s_5F"])
def test_every_session_id_gets_its_own_safe_folder(session_id: str) -> None:
    key = spoken_reply_key(session_id, "m1")
    assert check_key(key) == key and key.endswith("/m1.wav")


def test_session_folders_never_meet() -> None:
    ids = ["a_b", "a.b", "a:b", "a_2Eb", "a_5Fb", "_", ".", ":", "a-b"]
    assert len({spoken_reply_key(i, "m") for i in ids}) == len(ids)


def test_inbound_keys_refuse_what_is_not_a_message_id() -> None:
    assert inbound_audio_key("0123abcd") == "audio/in/0123abcd"
    with pytest.raises(InvalidBlobKey):
        inbound_audio_key("../x")


class SlowEngine:
    built = 0

    def __init__(self, workers: int = 1) -> None:
        time.sleep(0.05)
        SlowEngine.built += 1
        self.workers = workers
        self.warmed = 0

    def warm_up(self) -> None:
        self.warmed += 1


def test_engines_are_built_once_however_many_threads_ask_first() -> None:
    SlowEngine.built = 0
    engines = SpeechEngines(lambda workers: SlowEngine(workers), lambda: SlowEngine())  # type: ignore[arg-type,return-value]
    engines.share_recognizer(4)
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(engines.recognizer())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert SlowEngine.built == 1 and len({id(engine) for engine in got}) == 1
    assert got[0].workers == 4
    engines.share_recognizer(8)  # too late: the model serves 4 threads at once
    assert engines.recognizer().workers == 4


def test_nothing_is_loaded_until_asked_and_warm_up_loads_what_is_asked() -> None:
    SlowEngine.built = 0
    engines = SpeechEngines(lambda workers: SlowEngine(workers), lambda: SlowEngine())  # type: ignore[arg-type,return-value]
    assert SlowEngine.built == 0
    engines.warm_up(recognizer=False, synthesizer=True)
    assert SlowEngine.built == 1
    assert engines.synthesizer().warmed == 1  # type: ignore[attr-defined]


def test_an_engine_that_failed_to_load_is_tried_again_next_time() -> None:
    attempts: list[int] = []

    def broken(workers: int) -> Any:
        attempts.append(workers)
        raise FileNotFoundError("model.bin")

    engines = SpeechEngines(broken, lambda: SlowEngine())  # type: ignore[arg-type,return-value]
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            engines.recognizer()
    assert attempts == [1, 1]
