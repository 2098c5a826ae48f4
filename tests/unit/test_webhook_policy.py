"""Which addresses webhooks may reach, and the settings that widen or cap them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from adapters.http import DEFAULT_MAX_BYTES, refused_reason
from pipeline.errors import ConfigurationError
from pipeline.settings import Settings


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.10", "private"),
        ("100.64.0.1", "private"),
        ("100.127.255.254", "private"),
        ("192.0.0.8", "private"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("2001:db8::1", ""),  # documentation: not public
        ("198.51.100.7", ""),  # documentation: not public
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    found = refused_reason(ipaddress.ip_address(address))
    assert found is not None, address
    assert reason in found


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_reason(ipaddress.ip_address(address)) is None


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"ASSISTANT_DATA_DIR": str(tmp_path / "data"), "ASSISTANT_CONFIG_DIR": str(tmp_path / "config")}


def test_webhook_settings_default_to_nothing_internal_and_64_kib(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    assert settings.webhook_allow_hosts == ()
    assert settings.webhook_max_bytes == DEFAULT_MAX_BYTES == 65536


def test_webhook_settings_are_read_from_the_environment(env: dict[str, str]) -> None:
    settings = Settings.from_env(
        {**env, "WEBHOOK_ALLOW_HOSTS": " Hooks.LAN, 10.0.0.5 ,,[fd00::1]", "WEBHOOK_MAX_BYTES": "1024"}
    )
    assert settings.webhook_allow_hosts == ("hooks.lan", "10.0.0.5", "fd00::1")
    assert settings.webhook_max_bytes == 1024


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_a_bad_webhook_cap_stops_start_up(env: dict[str, str], value: str) -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOK_MAX_BYTES"):
        Settings.from_env({**env, "WEBHOOK_MAX_BYTES": value})
