"""Webhook calls that cannot reach internal services: checked addresses, no redirects, a capped answer."""

from __future__ import annotations

import base64
import codecs
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from requests.utils import DEFAULT_CA_BUNDLE_PATH

from pipeline.skilldefs import WebhookError, WebhookRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves a host name and port to IP address strings; ``resolve_host`` unless a caller passes its own.
Resolver = Callable[[str, int], Sequence[str]]

#: The largest webhook answer read by default, bytes (``WEBHOOK_MAX_BYTES``).
DEFAULT_MAX_BYTES = 64 * 1024
_CHUNK = 16 * 1024

# Names that mean this machine or a cloud's instance metadata service whatever the resolver answers.
_BLOCKED_NAMES = frozenset({"localhost", "metadata.google.internal", "metadata.goog"})
# Ranges that ipaddress does not flag as private in every Python version we run on.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "fc00::/7",  # unique local addresses (fd00:ec2::254 is AWS's metadata service)
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
# DNS64 networks put a public IPv4 address in this prefix; only the embedded address decides.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class _Target:
    """The parts of a webhook URL the call needs; ``host`` is lower-case, IDNA-encoded, without brackets."""

    scheme: str
    host: str
    port: int
    #: The ``Host`` header: the URL's host and port as written, without credentials.
    host_header: str
    #: Path and query.
    path: str
    #: ``Authorization`` for credentials written in the URL (``https://user:pw@host/``), if any.
    authorization: str | None
    #: The host when it is an IP address literal.
    literal: IPAddress | None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to now, in the system's preferred order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refused_reason(address: IPAddress) -> str | None:
    """Why a webhook may not reach ``address`` ("a loopback address", ...), or None for a public unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64:
            return refused_reason(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        # IPv4-mapped (::ffff:127.0.0.1), 6to4 and Teredo addresses lead to the IPv4 address inside them.
        teredo = address.teredo
        for inner in (address.ipv4_mapped, address.sixtofour, *(teredo or ())):
            if inner is not None and (reason := refused_reason(inner)):
                return reason
        if address.is_site_local:
            return "a site-local address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private or any(address in net for net in _BLOCKED_NETWORKS), "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for flagged, reason in checks if flagged), None)


def post_json(
    url: str,
    body: dict[str, Any],
    timeout: float,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_hosts: Iterable[str] = (),
    resolve: Resolver = resolve_host,
    ca_file: str = DEFAULT_CA_BUNDLE_PATH,
) -> Any:
    """POST ``body`` as JSON to a webhook; the parsed JSON answer, or the text when it is not JSON.

    Only http and https. The host is resolved here, at call time, every address it resolves to is checked, and
    the connection goes to a checked address, so DNS rebinding cannot redirect it. Loopback, private, link-local,
    metadata, multicast and reserved addresses are refused (``WebhookRefused``) unless the URL's host is in
    ``allow_hosts``. Redirects are not followed, and an answer over ``max_bytes`` is abandoned. Any failure raises
    a ``WebhookError`` whose message names the host at most, never the URL or the body. ``ca_file`` holds the
    certificate authorities https answers are verified with (the ones requests uses by default).
    """
    target = _parse(url)
    addresses = _addresses(target, {_normal_host(h) for h in allow_hosts if h.strip()}, resolve)
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json, text/plain",
        # A compressed answer could expand far past max_bytes; ask for none and refuse one.
        "Accept-Encoding": "identity",
        "User-Agent": "assistant-webhook",
    }
    if target.authorization:
        headers["Authorization"] = target.authorization
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    deadline = time.monotonic() + timeout
    connection = _connect(target, addresses, deadline, ca_file)
    try:
        try:
            connection.request("POST", target.path, body=payload, headers=headers)
            response = connection.getresponse()
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: a path http.client rejects
            raise WebhookError(f"{target.host}: {type(exc).__name__}") from exc
        try:
            return _answer(target.host, response, max_bytes, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise WebhookError(f"{target.host}: {type(exc).__name__} while reading the answer") from exc
        finally:
            response.close()
    finally:
        connection.close()


def _connect(target: _Target, addresses: list[str], deadline: float, ca_file: str) -> http.client.HTTPConnection:
    """A connection to the first of the checked ``addresses`` that accepts one before the deadline."""
    last_error: OSError | None = None
    for address in addresses:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            break
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(address, target.port, target.host.rstrip("."), timeout, ca_file)
        else:
            connection = http.client.HTTPConnection(address, target.port, timeout=timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            last_error = exc
            continue
        return connection
    why = type(last_error).__name__ if last_error else "out of time"
    raise WebhookError(f"{target.host}: cannot connect ({why})") from last_error


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a checked IP address that still names and verifies the URL's host (SNI and certificate)."""

    def __init__(self, address: str, port: int, tls_name: str, timeout: float, ca_file: str) -> None:
        self._tls = ssl.create_default_context(cafile=ca_file)
        super().__init__(address, port, timeout=timeout, context=self._tls)
        self._tls_name = tls_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP to the address; no name lookup
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._tls_name)


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise WebhookRefused("the webhook URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise WebhookRefused("webhooks must use http or https")
    if not parts.hostname:
        raise WebhookRefused("the webhook URL has no host")
    literal = _ip(parts.hostname)
    if literal is not None:
        host = str(literal)
    else:
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise WebhookRefused("the webhook URL's host name is invalid") from None
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
    return _Target(
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        host_header=parts.netloc.rpartition("@")[2],
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        authorization=authorization,
        literal=literal,
    )


def _addresses(target: _Target, allowed: set[str], resolve: Resolver) -> list[str]:
    """The addresses to connect to, each one checked unless the host is allow-listed."""
    host = target.host
    if target.literal is not None:
        reason = None if host in allowed else refused_reason(target.literal)
        if reason:
            raise WebhookRefused(f"{host} is {reason}; list it in WEBHOOK_ALLOW_HOSTS to allow it")
        return [host]
    name = host.rstrip(".")
    listed = name in allowed
    if not listed and (name in _BLOCKED_NAMES or name.endswith(".localhost")):
        raise WebhookRefused(f"{name} is not reachable by webhooks; list it in WEBHOOK_ALLOW_HOSTS to allow it")
    try:
        resolved = [address for raw in resolve(host, target.port) if (address := _ip(raw)) is not None]
    except (OSError, UnicodeError) as exc:
        raise WebhookError(f"{host} cannot be resolved ({type(exc).__name__})") from exc
    if not resolved:
        raise WebhookError(f"{host} resolves to no address")
    if not listed:
        # One bad address refuses the host: a name mixing public and internal records is not to be trusted.
        for address in resolved:
            if reason := refused_reason(address):
                raise WebhookRefused(
                    f"{host} resolves to {address}, {reason}; list it in WEBHOOK_ALLOW_HOSTS to allow it"
                )
    return [str(address) for address in resolved]


def _answer(host: str, response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> Any:
    status = response.status
    if 300 <= status < 400:
        raise WebhookRefused(f"{host} answered {status}: webhooks do not follow redirects")
    if not 200 <= status < 300:
        raise WebhookError(f"{host} answered {status}")
    encoding = response.getheader("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise WebhookError(f"{host} answered with Content-Encoding {encoding[:32]}, which is not read")
    declared = response.getheader("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise WebhookError(f"{host} answered more than {max_bytes} bytes")
    data = bytearray()
    while chunk := response.read1(min(_CHUNK, max_bytes + 1 - len(data))):
        data += chunk
        if len(data) > max_bytes:
            raise WebhookError(f"{host} answered more than {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise WebhookError(f"{host} took too long to answer")
    content_type = response.getheader("Content-Type", "")
    charset = _charset(content_type)
    if "json" in content_type.lower():
        try:
            return json.loads(data.decode(charset))
        except ValueError:
            raise WebhookError(f"{host} answered malformed JSON") from None
    return data.decode(charset, errors="replace")


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip("\"'")).name
            except LookupError:
                break
    return "utf-8"


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _normal_host(host: str) -> str:
    """An allow-list entry in the form ``_Target.host`` takes: lower-case, no brackets or trailing dot."""
    literal = _ip(host)
    if literal is not None:
        return str(literal)
    name = host.strip().lower().rstrip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name  # matches no URL host, which would have been refused as invalid anyway
