"""Client configuration: frozen dataclasses validated when built, before any channel opens."""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from tritonstack.client._errors import config_error

PROTOCOLS = ("grpc", "http")
#: Where each protocol's client looks without ``urls``: Triton's default ports on this host.
DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
DEFAULT_URL = DEFAULT_URLS["grpc"]
#: The environment variables ``ClientConfig.from_env`` reads the replicas from, per protocol.
GRPC_URLS_ENV = "TRITON_GRPC_URLS"
HTTP_URLS_ENV = "TRITON_HTTP_URLS"
URLS_ENV = {"grpc": GRPC_URLS_ENV, "http": HTTP_URLS_ENV}
# Triton's gRPC front end expects restricted-protocol headers under this prefix
# (see `tritonserver --grpc-restricted-protocol`).
GRPC_RESTRICTED_PREFIX = "triton-grpc-protocol-"
_URL = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_HTTP_URL = re.compile(r"^(?:(https?)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?(/[^\s?#]*)?$",
                       re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """TLS for the gRPC channel or the HTTPS connections: server root certificates and an
    optional client certificate.

    Attributes:
        root_certs: PEM file of CAs to trust (None: the system's default roots).
        client_cert: PEM client certificate, for mutual TLS (needs ``client_key``).
        client_key: PEM private key of ``client_cert``.
        server_name: expected name in the server certificate, when it differs from the host.
    """

    root_certs: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise config_error("TLS client_cert and client_key go together: give both or neither")
        for field in ("root_certs", "client_cert", "client_key"):
            value = getattr(self, field)
            if value is not None:
                path = Path(value)
                if not path.is_file():
                    raise config_error(f"TLS {field} file {path} does not exist")
                object.__setattr__(self, field, path)

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root_certs, private_key, certificate_chain) bytes for grpc.ssl_channel_credentials."""
        def load(p: Path | None) -> bytes | None:
            return p.read_bytes() if p else None
        return load(self.root_certs), load(self.client_key), load(self.client_cert)

    def ssl_context(self) -> ssl.SSLContext:
        """An SSLContext for HTTPS: these roots (else the system's), and the client certificate."""
        try:
            context = ssl.create_default_context(cafile=str(self.root_certs) if self.root_certs else None)
            if self.client_cert is not None:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
        except (ssl.SSLError, OSError) as exc:
            raise config_error(f"TLS files cannot be used: {exc}") from None
        return context


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs; times are in seconds everywhere.

    Attributes:
        urls: addresses of the Triton replicas; calls are balanced round-robin and fail over to
            the next replica when one is unavailable. gRPC: ``host:port`` (default
            127.0.0.1:8001). HTTP: ``host:port`` or ``http(s)://host[:port][/path]`` (default
            127.0.0.1:8000; ``https://`` or a ``tls`` config for TLS).
        protocol: ``"grpc"`` (Triton's gRPC front end) or ``"http"`` (its HTTP / KServe v2 front
            end, e.g. a Modal deployment's web endpoint); the API, retries, deadlines and errors
            are the same.
        timeout_s: default deadline of one call, retries and chunks included.
        retries: extra attempts after the first, only for retryable statuses.
        backoff_initial_s, backoff_max_s, backoff_multiplier: exponential backoff between
            attempts (full jitter: a uniform draw in [0, cap]). No wait when an untried healthy
            replica is left.
        retry_overloaded: also retry requests the server shed (OVERLOADED) or answered
            RESOURCE_EXHAUSTED; off by default so overload reaches the caller.
        failover_cooldown_s: how long a replica that was unreachable is skipped.
        keepalive_time_s: HTTP/2 keepalive ping interval (None: off, Triton's own default;
            Triton rejects pings more frequent than its ``--grpc-http2-min-recv-ping-interval``).
            gRPC only, as the next two.
        keepalive_timeout_s: how long to wait for a ping's answer before dropping the connection.
        reconnect_backoff_max_s: the most a broken channel waits between reconnect tries.
        max_message_bytes: send and receive limit of one gRPC message, or of one HTTP request
            or response body (checked by the client).
        tls: TLS settings (None: plaintext, or over HTTP the system's roots for ``https://``).
        access_token: value for Triton's restricted protocols (``--grpc-restricted-protocol``,
            ``--http-restricted-api``); ``from_env`` reads it from ``TRITON_ACCESS_TOKEN``.
        access_token_header: the key given to the server (sent as
            ``triton-grpc-protocol-<key>``, the form Triton's gRPC front end expects, and as the
            HTTP header ``<key>``).
        headers: extra metadata (HTTP: headers) sent with every call.
        validate_inputs: check input names, dtypes and shapes against the model's config before
            sending (False: send as given and let Triton judge).
        adaptive_concurrency: hold inference calls in the client above an adaptive number in
            flight per replica (AIMD: +1 per limit's worth of answers, halved on a refusal, once per window),
            so many callers do not storm an overloaded server (client/_limit.py).
        adaptive_concurrency_max: the most in flight per replica under that limit.
    """

    urls: tuple[str, ...] | None = None  # None: DEFAULT_URLS[protocol]
    protocol: str = "grpc"
    timeout_s: float = 10.0
    retries: int = 3
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0
    backoff_multiplier: float = 2.0
    retry_overloaded: bool = False
    failover_cooldown_s: float = 1.0
    keepalive_time_s: float | None = None
    keepalive_timeout_s: float = 20.0
    reconnect_backoff_max_s: float = 1.0
    max_message_bytes: int = 64 * 1024 * 1024
    tls: TlsConfig | None = None
    access_token: str | None = None
    access_token_header: str = "triton-access-token"
    headers: tuple[tuple[str, str], ...] = ()
    validate_inputs: bool = True
    adaptive_concurrency: bool = False
    adaptive_concurrency_max: int = 64

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise config_error(f"protocol must be 'grpc' or 'http', got {self.protocol!r}")
        if self.urls is None:
            urls: tuple[str, ...] = (DEFAULT_URLS[self.protocol],)
        else:
            urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        if not urls:
            raise config_error(f"urls is empty: give at least one Triton {self.protocol} address, e.g. "
                               f"{DEFAULT_URLS[self.protocol]}")
        for url in urls:
            if self.protocol == "grpc":
                _check_url(url)
            else:
                http_address(url, tls=False)
        if len(set(urls)) != len(urls):
            raise config_error(f"urls lists a replica twice: {', '.join(urls)}")
        object.__setattr__(self, "urls", urls)
        headers = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        object.__setattr__(self, "headers", tuple((str(k).lower(), str(v)) for k, v in headers))
        _positive("timeout_s", self.timeout_s)
        _positive("backoff_initial_s", self.backoff_initial_s)
        _positive("backoff_max_s", self.backoff_max_s)
        _positive("failover_cooldown_s", self.failover_cooldown_s, allow_zero=True)
        _positive("keepalive_timeout_s", self.keepalive_timeout_s)
        _positive("reconnect_backoff_max_s", self.reconnect_backoff_max_s)
        if self.keepalive_time_s is not None:
            _positive("keepalive_time_s", self.keepalive_time_s)
        if not isinstance(self.retries, int) or self.retries < 0:
            raise config_error(f"retries must be an integer >= 0, got {self.retries!r}")
        most = self.adaptive_concurrency_max
        if not isinstance(most, int) or not 1 <= most <= 100_000:
            raise config_error("adaptive_concurrency_max must be an integer in 1..100000, got "
                               f"{self.adaptive_concurrency_max!r}")
        if self.backoff_initial_s > self.backoff_max_s:
            raise config_error(f"backoff_initial_s ({self.backoff_initial_s}) is above "
                               f"backoff_max_s ({self.backoff_max_s})")
        if self.backoff_multiplier < 1:
            raise config_error(f"backoff_multiplier must be >= 1, got {self.backoff_multiplier}")
        if not 0 < self.max_message_bytes < 2**31:
            raise config_error(f"max_message_bytes must be in 1..2**31-1, got {self.max_message_bytes}")
        if self.tls is not None and not isinstance(self.tls, TlsConfig):
            raise config_error("tls must be a TlsConfig")
        if self.access_token is not None and not self.access_token:
            raise config_error("access_token is empty; leave it None or set a value")

    @classmethod
    def from_env(cls, **overrides: object) -> ClientConfig:
        """A config from ``TRITON_GRPC_URLS`` (``TRITON_HTTP_URLS`` with ``protocol="http"``;
        comma-separated) and ``TRITON_ACCESS_TOKEN``."""
        values: dict[str, object] = {}
        protocol = overrides.get("protocol", "grpc")
        urls = os.environ.get(URLS_ENV.get(protocol, ""), "").strip()  # type: ignore[call-overload]
        if urls:
            values["urls"] = tuple(u.strip() for u in urls.split(",") if u.strip())
        token = os.environ.get("TRITON_ACCESS_TOKEN")
        if token:
            values["access_token"] = token
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def http_headers(self) -> dict[str, str]:
        """The HTTP headers sent with every call (the access token as Triton's HTTP front end
        expects it)."""
        headers = dict(self.headers)
        if self.access_token:
            headers[self.access_token_header.lower()] = self.access_token
        return headers

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata sent with every call."""
        extra = ()
        if self.access_token:
            extra = ((GRPC_RESTRICTED_PREFIX + self.access_token_header.lower(), self.access_token),)
        return self.headers + extra

    def channel_options(self) -> list[tuple[str, object]]:
        """grpc channel arguments: message sizes, reconnect backoff, keepalive, TLS name."""
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(self.reconnect_backoff_max_s * 1000)),
            # This client retries itself (only where safe); gRPC's own retries would double it.
            ("grpc.enable_retries", 0),
        ]
        if self.keepalive_time_s is not None:
            options += [
                ("grpc.keepalive_time_ms", int(self.keepalive_time_s * 1000)),
                ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
            ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise config_error(f"url {url!r} is not a string host:port")
    if "://" in url:
        raise config_error(f"url {url!r}: give the gRPC address as host:port (e.g. {DEFAULT_URL}), "
                           "without a scheme; Triton's gRPC port is 8001 by default (for its HTTP "
                           "endpoint, set protocol='http')")
    match = _URL.match(url)
    if not match or not 0 < int(match.group(2)) <= 65535:
        raise config_error(f"url {url!r} is not host:port (e.g. {DEFAULT_URL})")


class HttpAddress(NamedTuple):
    """Where an HTTP replica answers: ``base`` is ``scheme://host:port[/path]``, the prefix of
    every route (``/v2/...``)."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def http_address(url: object, *, tls: bool) -> HttpAddress:
    """An HTTP replica's address from ``host:port`` (https when ``tls``) or ``http(s)://host[:port][/path]``."""
    match = _HTTP_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise config_error(f"url {url!r} is not an HTTP address: host:port or http(s)://host[:port][/path] "
                           f"(e.g. {DEFAULT_URLS['http']} or https://example.modal.run)")
    scheme, host, port, path = match.groups()
    if scheme is None and port is None:
        raise config_error(f"url {url!r}: give the port (host:port; Triton's HTTP port is 8000 by default) "
                           "or the scheme (https://host)")
    scheme = (scheme or ("https" if tls else "http")).lower()
    number = int(port) if port is not None else (443 if scheme == "https" else 80)
    if not 0 < number <= 65535:
        raise config_error(f"url {url!r}: port {number} is not in 1..65535")
    return HttpAddress(scheme, host, number, (path or "").rstrip("/"))


def _positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise config_error(f"{name} must be a number {'>= 0' if allow_zero else '> 0'} (seconds), "
                           f"got {value!r}")


def config_from(config: ClientConfig | None, urls: str | Sequence[str] | None,
                options: Mapping[str, object]) -> ClientConfig:
    """The client constructors' ``(config, urls=..., **options)`` folded into one config."""
    base = config if config is not None else ClientConfig()
    if not isinstance(base, ClientConfig):
        raise config_error(f"config must be a ClientConfig, got {type(base).__name__}")
    changes = dict(options)
    if urls is not None:
        changes["urls"] = urls
    elif "protocol" in changes and "urls" not in changes and base.urls == (DEFAULT_URLS[base.protocol],):
        changes["urls"] = None  # the other protocol's default port, not this one's
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(ClientConfig)})
    if unknown:
        raise config_error(f"unknown client option(s) {', '.join(unknown)}; see ClientConfig")
    return dataclasses.replace(base, **changes) if changes else base  # type: ignore[arg-type]
