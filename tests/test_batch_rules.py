"""Pure rules of bulk intake: the ETA, request fingerprints, the client's file
walk, idempotency keys and streamed multipart bodies."""

from __future__ import annotations

import io

import pytest
from werkzeug.formparser import parse_form_data

from client.api import Upload, _MultipartBody
from client.files import batch_key, find_audio, idempotency_key
from domain.batches import eta
from domain.idempotency import fingerprint, valid_key


def test_eta_from_measured_throughput():
    assert eta(0.0, 100.0, 10.0) == (None, None)  # nothing finished: unknown, not zero
    throughput, seconds = eta(60.0, 120.0, 30.0)
    assert throughput == 2.0 and seconds == 60.0


def test_fingerprint_is_canonical_and_keys_are_checked():
    assert fingerprint(["POST", "/v1/batches", {"a": 1, "b": 2}]) == fingerprint(
        ["POST", "/v1/batches", {"b": 2, "a": 1}]
    )
    assert fingerprint(["POST", "/v1/jobs", []]) != fingerprint(["POST", "/v1/batches", []])
    assert valid_key("emoq-file-" + "0" * 64) and not valid_key("") and not valid_key("x" * 201)
    assert not valid_key("tab\there")


def test_find_audio_walks_folders_and_names_files_below_them(tmp_path):
    calls = tmp_path / "calls"
    (calls / "monday").mkdir(parents=True)
    (calls / ".hidden").mkdir()
    for name in ("monday/a.wav", "b.MP3", "notes.txt", ".c.wav", ".hidden/d.wav"):
        (calls / name).write_bytes(b"x")
    single = tmp_path / "single.bin"
    single.write_bytes(b"yy")
    found = find_audio([calls, single, calls / "b.MP3"])
    assert [(f.external_id, f.size) for f in found] == [("b.MP3", 1), ("monday/a.wav", 1), ("single.bin", 2)]
    with pytest.raises(FileNotFoundError):
        find_audio([tmp_path / "missing"])


def test_idempotency_keys_are_stable_and_distinct():
    key = idempotency_key("batch-1", "ab" * 32, "monday/a.wav")
    assert key == idempotency_key("batch-1", "ab" * 32, "monday/a.wav")
    assert key != idempotency_key("batch-2", "ab" * 32, "monday/a.wav")
    assert key != idempotency_key("batch-1", "ab" * 32, "monday/b.wav")
    assert batch_key("nightly") != batch_key("nightly-2") and len(key) <= 200


def test_multipart_body_streams_a_file_a_server_can_parse(tmp_path):
    path = tmp_path / "call.wav"
    path.write_bytes(bytes(range(256)) * 1000)
    sent = []
    body = _MultipartBody(Upload(path, 'odd "name".wav', (("external_id", "x/1.wav"),)), "b0undary", sent.append)
    data = b"".join(iter(lambda: body.read(7000), b""))
    assert len(data) == body.length and sum(sent) == path.stat().st_size
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "multipart/form-data; boundary=b0undary",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    _, form, files = parse_form_data(environ)
    assert form["external_id"] == "x/1.wav"
    assert files["file"].read() == path.read_bytes()


def test_the_client_retries_what_is_worth_retrying_and_honours_retry_after():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from client.api import Api, ApiError

    answers = [(503, {"Retry-After": "0"}), (429, {"Retry-After": "0"}), (200, {})]
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers["Authorization"]))
            status, headers = answers.pop(0) if self.path == "/v1/batches" else (400, {})
            body = json.dumps(
                {"items": []} if status == 200 else {"code": "busy" if status != 400 else "nope", "detail": "d"}
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = Api(f"http://127.0.0.1:{server.server_port}", "k")
        assert api.json("GET", "/v1/batches") == {"items": []}
        assert len(seen) == 3 and seen[0][1] == "Bearer k"
        with pytest.raises(ApiError) as refused:
            api.json("GET", "/v1/other")
        assert (refused.value.status, refused.value.code) == (400, "nope") and len(seen) == 4  # not retried
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ApiError) as down:
        Api(f"http://127.0.0.1:{server.server_port}", "k", attempts=2).json("GET", "/v1/batches")
    assert down.value.code == "unreachable"
