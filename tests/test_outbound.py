"""Requests the service sends for a submitter (URL imports, webhooks) go to the
address the private-address guard checked: a second DNS answer (DNS rebinding)
never decides where they connect.

Two stand-ins for what can't exist here, both named as such:

* ``FakeDns``, a hostile DNS server: ``socket.getaddrinfo`` patched to give
  scripted answers for a few names (anything else gets a real look-up);
* ``FakeInternet``: ``socket.socket`` patched so that a connection to a public
  address goes to the local server standing in for that host; it records every
  address a socket is asked to connect to.

The servers are real HTTP(S) servers on 127.0.0.1. ``internal`` stands for what a
rebinding answer would reach (a service on loopback): it must never be hit.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config import Settings
from worker.imports import ImportRefused, fetch
from worker.webhooks import WebhookRefused, post

# Public addresses (not private, reserved or documentation ranges): the guard lets them through.
PUBLIC = "93.184.215.14"
OTHER_PUBLIC = "151.101.1.69"
UNREACHABLE_PUBLIC = "151.101.65.69"
RECORDING = b"RIFF-the-public-recording"


@dataclass
class Site:
    """A real HTTP(S) server on loopback that records what it was asked."""

    port: int
    hits: list[dict] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI, per handshake


def _serve(files: dict[str, bytes], redirects: dict[str, str], context: ssl.SSLContext | None = None):
    site = Site(port=0)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, body: bytes) -> None:
            site.hits.append({"method": self.command, "path": self.path, "host": self.headers["Host"], "body": body})
            if self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = files.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def do_GET(self):
            self._answer(b"")

        def do_POST(self):
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        context.sni_callback = lambda _sock, name, _ctx: site.server_names.append(name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    site.port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, site


@pytest.fixture
def sites():
    """Start sites with ``sites(files, redirects, tls=None)``; all are stopped afterwards."""
    servers = []

    def start(files=None, redirects=None, tls: ssl.SSLContext | None = None) -> Site:
        server, site = _serve(files or {}, redirects or {}, tls)
        servers.append(server)
        return site

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def internal(sites) -> Site:
    """What a rebinding answer (127.0.0.1) reaches: a loopback service that answers anything."""
    return sites({f"/calls/{i}.wav": b"internal secret" for i in range(2)} | {"/hook": b"", "/": b"internal"})


@dataclass
class FakeDns:
    """Stand-in for a hostile DNS server: per name, the answers to give, one list
    of addresses per look-up (the last one repeats; an empty list: no such name)."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)


@dataclass
class FakeInternet:
    """Stand-in for the internet: public address and port -> the local server playing that host."""

    routes: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    silent: set[tuple[str, int]] = field(default_factory=set)  # hosts that never answer
    connects: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def net(monkeypatch) -> Iterator[tuple[FakeDns, FakeInternet]]:
    dns, internet = FakeDns(), FakeInternet()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in dns.answers:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        dns.lookups.append(name)
        scripted = dns.answers[name]
        addresses = scripted.pop(0) if len(scripted) > 1 else scripted[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port or 0)) for a in addresses]

    class RoutedSocket(socket.socket):
        def connect(self, address):
            host_port = (address[0], address[1])
            internet.connects.append(host_port)
            if host_port in internet.silent:
                raise TimeoutError("timed out")
            super().connect(internet.routes.get(host_port, address))

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "socket", RoutedSocket)
    yield dns, internet


def _import_settings(allow_private: bool = False) -> Settings:
    return Settings.from_env({"EMOQ_IMPORT_ALLOW_PRIVATE": allow_private, "EMOQ_IMPORT_TIMEOUT_SECONDS": 5})


def _fetch(url: str, settings: Settings) -> tuple[str, int]:
    # The object store is only read for s3:// sources.
    return fetch(url, io.BytesIO(), None, settings)


def _sha(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def test_an_import_connects_to_the_address_that_was_checked(net, sites, internal):
    dns, internet = net
    public = sites({"/calls/0.wav": RECORDING})
    # The guard's look-up gets a public address; any later one gets loopback.
    dns.answers["calls.example"] = [[PUBLIC], ["127.0.0.1"]]
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", public.port)

    assert _fetch(f"http://calls.example:{internal.port}/calls/0.wav", _import_settings()) == _sha(RECORDING)
    assert internal.hits == []
    assert internet.connects == [(PUBLIC, internal.port)]
    assert dns.lookups == ["calls.example"]  # resolved once
    assert public.hits[0]["host"] == f"calls.example:{internal.port}"


def test_every_redirect_hop_is_resolved_checked_and_pinned(net, sites, internal):
    dns, internet = net
    public = sites({"/calls/0.wav": RECORDING}, {"/moved": f"http://cdn.example:{internal.port}/calls/0.wav"})
    dns.answers["calls.example"] = [[PUBLIC]]
    dns.answers["cdn.example"] = [[OTHER_PUBLIC], ["127.0.0.1"]]
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", public.port)
    internet.routes[(OTHER_PUBLIC, internal.port)] = ("127.0.0.1", public.port)

    assert _fetch(f"http://calls.example:{internal.port}/moved", _import_settings()) == _sha(RECORDING)
    assert internal.hits == []
    assert internet.connects == [(PUBLIC, internal.port), (OTHER_PUBLIC, internal.port)]
    assert dns.lookups == ["calls.example", "cdn.example"]
    assert [(hit["path"], hit["host"]) for hit in public.hits] == [
        ("/moved", f"calls.example:{internal.port}"),
        ("/calls/0.wav", f"cdn.example:{internal.port}"),
    ]


def test_a_redirect_to_a_private_address_is_refused_before_connecting(net, sites, internal):
    dns, internet = net
    public = sites(redirects={"/moved": f"http://cdn.example:{internal.port}/calls/0.wav"})
    dns.answers["calls.example"] = [[PUBLIC]]
    dns.answers["cdn.example"] = [["169.254.169.254"]]
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", public.port)

    with pytest.raises(ImportRefused) as refused:
        _fetch(f"http://calls.example:{internal.port}/moved", _import_settings())
    assert refused.value.code == "url_private"
    assert refused.value.message == "cdn.example resolves to the private address 169.254.169.254"
    assert internet.connects == [(PUBLIC, internal.port)]
    assert internal.hits == []


def test_a_webhook_goes_to_the_address_that_was_checked(net, sites, internal):
    dns, internet = net
    receiver = sites({"/hook": b""})
    dns.answers["hooks.example"] = [[PUBLIC], ["127.0.0.1"]]
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", receiver.port)
    webhooks = Settings.from_env({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}).webhooks

    assert post(f"http://hooks.example:{internal.port}/hook", "job.finished", b'{"id": 1}', webhooks) is None
    assert internal.hits == []
    assert internet.connects == [(PUBLIC, internal.port)]
    assert dns.lookups == ["hooks.example"]
    (hit,) = receiver.hits
    assert (hit["method"], hit["host"], hit["body"]) == ("POST", f"hooks.example:{internal.port}", b'{"id": 1}')


def test_a_webhook_to_a_name_that_resolves_privately_is_refused(net, internal):
    dns, internet = net
    # One public and one private answer: refused all the same (the connection could take either).
    dns.answers["hooks.example"] = [[PUBLIC, "10.0.0.7"]]
    webhooks = Settings.from_env({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}).webhooks

    with pytest.raises(WebhookRefused, match=r"^10\.0\.0\.7$"):
        post(f"http://hooks.example:{internal.port}/hook", "job.finished", b"{}", webhooks)
    assert internet.connects == [] and internal.hits == []


def test_the_checked_addresses_are_tried_in_order(net, sites, internal):
    dns, internet = net
    receiver = sites({"/hook": b""})
    dns.answers["hooks.example"] = [[UNREACHABLE_PUBLIC, PUBLIC], ["127.0.0.1"]]
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the first address refuses
    internet.routes[(UNREACHABLE_PUBLIC, internal.port)] = ("127.0.0.1", closed_port)
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", receiver.port)
    webhooks = Settings.from_env({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}).webhooks

    assert post(f"http://hooks.example:{internal.port}/hook", "job.finished", b"{}", webhooks) is None
    assert internet.connects == [(UNREACHABLE_PUBLIC, internal.port), (PUBLIC, internal.port)]
    assert len(receiver.hits) == 1 and internal.hits == []


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("gone.example", urllib3.exceptions.NameResolutionError),
        ("a" * 64 + ".example", urllib3.exceptions.LocationParseError),
    ],
    ids=["no-such-name", "label-too-long"],
)
def test_a_name_that_cannot_be_resolved_is_still_a_network_error(net, host, error):
    dns, internet = net
    dns.answers["gone.example"] = [[]]
    webhooks = Settings.from_env({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}).webhooks

    assert (post(f"http://{host}/hook", "job.finished", b"{}", webhooks) or "").startswith(f"{error.__name__}: ")
    with pytest.raises(error):  # urllib3's HTTPError: the worker retries the job
        _fetch(f"http://{host}/a.wav", _import_settings())
    assert internet.connects == []


def test_a_host_that_never_answers_is_still_a_connect_timeout(net):
    dns, internet = net
    dns.answers["slow.example"] = [[PUBLIC]]
    internet.silent.add((PUBLIC, 80))
    webhooks = Settings.from_env({"EMOQ_WEBHOOK_ALLOW_PRIVATE": False}).webhooks

    assert (post("http://slow.example/hook", "job.finished", b"{}", webhooks) or "").startswith("ConnectTimeoutError: ")
    with pytest.raises(urllib3.exceptions.ConnectTimeoutError):
        _fetch("http://slow.example/a.wav", _import_settings())


def test_with_private_addresses_allowed_loopback_is_reached(sites):
    local = sites({"/calls/0.wav": RECORDING})
    assert _fetch(f"http://127.0.0.1:{local.port}/calls/0.wav", _import_settings(allow_private=True)) == _sha(RECORDING)
    with pytest.raises(ImportRefused, match=r"resolves to the private address 127\.0\.0\.1$"):
        _fetch(f"http://127.0.0.1:{local.port}/calls/0.wav", _import_settings())
    assert len(local.hits) == 1


def _tls_context(tmp_path: Path, hostname: str) -> ssl.SSLContext:
    """A server context with a certificate for ``hostname`` from a test CA, which
    the client trusts through SSL_CERT_FILE (set by the caller)."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("emoq test CA", ca_key, "emoq test CA", ca_key, ca=True)
    leaf = certificate(hostname, leaf_key, "emoq test CA", ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return context


def test_https_verifies_the_hostname_while_connecting_to_the_checked_address(
    net, sites, internal, tmp_path, monkeypatch
):
    dns, internet = net
    public = sites({"/calls/0.wav": RECORDING}, tls=_tls_context(tmp_path, "calls.example"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    dns.answers["calls.example"] = [[PUBLIC], ["127.0.0.1"]]
    dns.answers["impostor.example"] = [[PUBLIC]]
    internet.routes[(PUBLIC, internal.port)] = ("127.0.0.1", public.port)

    assert _fetch(f"https://calls.example:{internal.port}/calls/0.wav", _import_settings()) == _sha(RECORDING)
    assert internet.connects == [(PUBLIC, internal.port)]
    assert public.server_names == ["calls.example"]  # SNI: the hostname, not the address
    assert public.hits[0]["host"] == f"calls.example:{internal.port}"
    assert internal.hits == []

    # The same server for another name: its certificate doesn't match, so nothing is fetched.
    with pytest.raises(urllib3.exceptions.SSLError, match=r"impostor\.example"):
        _fetch(f"https://impostor.example:{internal.port}/calls/0.wav", _import_settings())
    assert len(public.hits) == 1
