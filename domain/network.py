"""Which addresses a submitter may make the service talk to. Webhooks and URL
imports are requests the service sends on a submitter's behalf: without this
guard a submitter could make it probe or read the internal network. The API
checks callback URLs and import URLs at submit time; the workers check again
when they connect (names can resolve differently later), on the very addresses
they then connect to (``worker.outbound``)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit


def private_address(url: str) -> str | None:
    """The first loopback, private, link-local, reserved or multicast address
    the URL's host resolves to; None when it has none (or does not resolve:
    the request then fails on its own)."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return None
    return first_private(str(info[4][0]) for info in infos)


def first_private(addresses: Iterable[str]) -> str | None:
    """The first of these resolved addresses (``fe80::1%eth0`` scope ids allowed) that is private."""
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if is_private(address):
            return str(address)
    return None


# Names that reach the machine itself or a cloud provider's metadata service.
_INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal", "instance-data")
_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local")


def is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:169.254.169.254 is the metadata service too
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def names_private_host(hostname: str) -> bool:
    """True for a literal private address (any notation Python parses) or an
    internal name, without a DNS look-up."""
    host = hostname.strip("[]").rstrip(".").lower()
    try:
        return is_private(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        pass
    if host.isdigit() or host.startswith("0x"):
        return True  # 2130706433 or 0x7f000001: integer spellings of an address
    return host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES)


def is_http_url(value: str, max_length: int = 2000) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(value) <= max_length
