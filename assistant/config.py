"""Settings as the entry points read them: the environment, ``config/channels.json`` and ``config/audio.yml``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.audio_config import AudioConfig
from pipeline.devices import DevicesConfig
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Every setting: ``Settings.from_env`` plus the voice settings of ``<config_dir>/audio.yml`` and their
    environment overrides."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    return replace(settings, audio=load_audio_config(env, settings.config_dir))


def load_audio_config(env: Mapping[str, str] | None = None, config_dir: Path | None = None) -> AudioConfig:
    """The voice settings alone (``assistant models`` needs no secrets): ``audio.yml``, then the environment.

    A missing file means the defaults.
    """
    env = os.environ if env is None else env
    folder = config_dir if config_dir is not None else Path(env.get("ASSISTANT_CONFIG_DIR") or "config")
    path = folder / "audio.yml"
    return AudioConfig.from_mapping(_read_yaml(path), env, source=str(path))


def load_devices(path: Path) -> DevicesConfig | None:
    """The smart home's devices file; None when it does not exist (no smart home). Raises ``ConfigurationError``
    naming the file and the bad field."""
    if not path.is_file():
        return None
    try:
        return DevicesConfig.from_mapping(_read_yaml(path))
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc
