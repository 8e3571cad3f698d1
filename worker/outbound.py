"""Requests the service sends on a submitter's behalf (URL imports, webhooks),
through the private-address guard.

Checking a name and then letting the HTTP client connect would resolve it twice:
a hostile DNS server could answer the check with a public address and the
connection with 127.0.0.1 or the metadata service (DNS rebinding). Here each
connection resolves its host once, checks those addresses
(``domain.network.first_private``) and connects only to them. The request still
names the host: the Host header, TLS SNI and certificate verification use the
name, never the address."""

from __future__ import annotations

import socket
import sys
from typing import Any

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util import connection, parse_url

from domain.network import first_private


class AddressRefused(Exception):
    """The host resolves to a private address; nothing was sent. A plain
    Exception: urllib3 lets it through as it is (an OSError would come out as a
    ProtocolError), and no caller takes it for a network failure worth retrying."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(address)
        self.host = host
        self.address = address


def send(method: str, url: str, *, allow_private: bool, timeout: float | Timeout, **kwargs: Any) -> BaseHTTPResponse:
    """One request, never retried, no redirect followed (a caller that follows
    one sends the next hop through here again, so it is checked too). Raises
    AddressRefused, or urllib3's HTTPError when the network fails."""
    parts = parse_url(url)
    if not parts.host:
        raise LocationValueError(f"no host in {url!r}")
    pool_class = GuardedHTTPSPool if parts.scheme == "https" else GuardedHTTPPool
    with pool_class(parts.host, parts.port, timeout=timeout, retries=False, allow_private=allow_private) as pool:
        # Closing the pool leaves a streamed response its connection; closing the response closes it.
        return pool.request(method, parts.request_uri, redirect=False, **kwargs)


class GuardedHTTPConnection(HTTPConnection):
    """An HTTP connection to an address it resolved and checked itself."""

    def __init__(self, *args: Any, allow_private: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_private = allow_private

    def _new_conn(self) -> socket.socket:
        # urllib3's own hands create_connection the name, which resolves it
        # again; it gets the checked addresses instead, tried in the same order.
        error: OSError | None = None
        for address in self._checked_addresses():
            try:
                sock = connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                error = exc
                continue
            sys.audit("http.client.connect", self, self.host, self.port)
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error

    def _checked_addresses(self) -> list[str]:
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, connection.allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except UnicodeError:  # an empty or overlong label: the error urllib3 gives for it
            raise LocationParseError(f"'{self.host}', label empty or too long") from None
        addresses = [str(info[4][0]) for info in infos]
        if not self.allow_private and (address := first_private(addresses)):
            raise AddressRefused(self.host, address)
        return addresses


class GuardedHTTPSConnection(GuardedHTTPConnection, HTTPSConnection):
    """The same over TLS; SNI and certificate verification use the host name (``self.host``)."""


class GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection
