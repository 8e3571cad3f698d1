"""Which addresses a submitter may make the service talk to. Webhooks and URL
imports are requests the service sends on a submitter's behalf: without this
guard a submitter could make it probe or read the internal network. The API
checks callback URLs and import URLs at submit time; the workers check again
when they connect (names can resolve differently later)."""

from __future__ import annotations

import ipaddress
import socket
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
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if (
            address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_multicast
        ):
            return str(address)
    return None


def is_http_url(value: str, max_length: int = 2000) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(value) <= max_length
