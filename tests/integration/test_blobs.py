"""One contract for ``BlobStore``: the folder (embedded) and Redis (database 1 of the local server) versions."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from adapters.blobs import BlobStore, FolderBlobStore, InvalidBlobKey, RedisBlobStore
from adapters.redis_state import connect

REDIS_URL = os.environ.get("TEST_REDIS_BLOBS_URL", "redis://127.0.0.1:6379/1")
#: Every byte value, and more than a socket reads in one go.
AUDIO = bytes(range(256)) * 4096


@pytest.fixture(params=["folder", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "folder":
        yield FolderBlobStore(tmp_path / "blobs")
        return
    client = connect(REDIS_URL, binary=True)
    try:
        yield RedisBlobStore(client)
    finally:
        client.close()


def unique(prefix: str = "audio/in") -> str:
    return f"{prefix}/{uuid.uuid4().hex}"


def test_bytes_come_back_as_stored(store: BlobStore) -> None:
    key = unique()
    store.put(key, AUDIO, 60)
    assert store.get(key) == AUDIO
    store.put(key, b"second", 60)  # a put replaces
    assert store.get(key) == b"second"


def test_unknown_and_deleted_keys_give_none(store: BlobStore) -> None:
    key = unique("audio/out/session-1")
    assert store.get(key) is None
    store.put(f"{key}.wav", b"RIFF", 60)
    store.delete(f"{key}.wav")
    store.delete(f"{key}.wav")  # deleting twice is fine
    assert store.get(f"{key}.wav") is None


def test_a_blob_expires(store: BlobStore) -> None:
    key = unique()
    store.put(key, b"short-lived", 1)
    assert store.get(key) == b"short-lived"
    time.sleep(1.3)
    assert store.get(key) is None


@pytest.mark.parametrize(
    "key",
    ["../secret", "audio/../../etc/passwd", "/etc/passwd", "audio//x", ".hidden", "audio/.x.tmp", "", "a\\b",
     "audio/in/x\x00", "a/" * 20 + "b", "x" * 600, "audio/in/名字"],
)  # fmt: skip
def test_keys_that_could_escape_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        store.put(key, b"x", 60)
    with pytest.raises(InvalidBlobKey):
        store.get(key)


def test_the_folder_store_stays_inside_its_root(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "blobs")
    store.put("audio/out/s1/m1.wav", b"RIFF", 60)
    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert files == ["blobs/audio/out/s1/m1.wav"]


def test_the_folder_store_sweeps_expired_files_and_empty_folders(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "blobs", sweep_seconds=0.0)
    store.put("audio/out/gone/m1.wav", b"old", 1)
    store.put("audio/in/kept", b"new", 600)
    leftover = tmp_path / "blobs" / "audio" / "in" / ".kept.0123.tmp"  # a write a crash interrupted, long ago
    leftover.write_bytes(b"partial")
    time.sleep(1.2)
    assert store.sweep() == 1  # the expired file; the fresh temporary file may still be a write in progress
    assert not (tmp_path / "blobs" / "audio" / "out").exists()
    assert store.get("audio/in/kept") == b"new"
    assert leftover.exists()


def test_the_folder_store_sweeps_on_a_put_when_due(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "blobs", sweep_seconds=0.0)
    store.put("audio/in/one", b"1", 1)
    time.sleep(1.2)
    store.put("audio/in/two", b"2", 600)
    assert not (tmp_path / "blobs" / "audio" / "in" / "one").exists()


def test_concurrent_puts_of_one_key_never_show_a_partial_blob(tmp_path: Path) -> None:
    store = FolderBlobStore(tmp_path / "blobs")
    values = [bytes([n]) * 200_000 for n in range(8)]
    seen: set[bytes | None] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(store.get("audio/in/race"))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=store.put, args=("audio/in/race", value, 60)) for value in values * 3]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert seen <= {None, *values}
    assert store.get("audio/in/race") in values
    assert not [p for p in (tmp_path / "blobs").rglob(".*")]  # no temporary file left behind


def test_the_redis_store_sets_an_expiry(tmp_path: Path) -> None:
    client = connect(REDIS_URL, binary=True)
    try:
        key = unique()
        RedisBlobStore(client).put(key, b"x", 90)
        assert 0 < redis.Redis.from_url(REDIS_URL).ttl(f"blob:{key}") <= 90
    finally:
        client.close()
