"""Which webhook destinations are refused: a submitter must not make emoq
probe the internal network or a cloud metadata service. The API refuses
literal addresses and well-known internal names at submission (no DNS look-up
in a request); the worker checks every resolved address again at delivery,
when a name may point somewhere else than it did."""

from __future__ import annotations

import ipaddress

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
    """True for a literal private address (any notation Python parses) or an internal name."""
    host = hostname.strip("[]").rstrip(".").lower()
    try:
        return is_private(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        pass
    if host.isdigit() or host.startswith("0x"):
        return True  # 2130706433 or 0x7f000001: integer spellings of an address
    return host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES)
