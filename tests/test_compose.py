"""docker-compose.yml can't be run here (no Docker engine); keep it honest by reading it."""

from __future__ import annotations

from pathlib import Path

import yaml

from config import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_order():
    services = compose()["services"]
    assert {"postgres", "redis", "minio", "migrate", "api", "worker", "beat"} <= set(services)
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def queues(service: dict) -> set[str]:
    return set(service["command"][service["command"].index("-Q") + 1].split(","))


def test_gpu_worker_analyses_and_a_separate_worker_maintains():
    services = compose()["services"]
    (device,) = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert queues(services["worker"]) == {Settings().queue.analysis_queue}
    assert queues(services["maintenance"]) == {"emoq.maintenance"}
    assert services["maintenance"]["environment"]["EMOQ_DEVICE"] == "cpu"


def test_every_emoq_variable_is_a_setting():
    known = set(Settings.variables())
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        assert {k for k in env if k.startswith("EMOQ_")} <= known, name


def test_the_image_installs_the_cuda_torch_and_every_other_pin():
    """constraints.txt pins the development machine's CPU build (torch==…+cpu), which no
    registry serves; the image drops that one line and takes requirements.txt's torch."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "grep -v '^torch==' constraints.txt > /tmp/constraints-image.txt" in dockerfile
    assert "pip install --no-cache-dir -r requirements.txt -c /tmp/constraints-image.txt" in dockerfile
    lock = (ROOT / "constraints.txt").read_text().splitlines()
    image_lock = [line for line in lock if not line.startswith("torch==")]
    assert not [line for line in image_lock if "+cpu" in line]
    assert len(image_lock) == len(lock) - 1  # only torch is dropped
    (torch,) = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch==")]
    assert "+" not in torch  # a plain version: PyPI's Linux wheel is the CUDA build


def test_the_model_cache_folder_exists_and_belongs_to_the_image_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (mount,) = [v.split(":")[1] for v in compose()["services"]["worker"]["volumes"] if v.startswith("models:")]
    assert f"mkdir -p {mount}" in dockerfile
    assert "chown -R emoq:emoq /home/emoq/.cache" in dockerfile and mount.startswith("/home/emoq/.cache")
    assert dockerfile.index("chown -R emoq:emoq") < dockerfile.index("USER emoq")


def test_minio_healthcheck_uses_the_images_own_client():
    check = compose()["services"]["minio"]["healthcheck"]["test"]
    assert check == ["CMD", "mc", "ready", "local"]


def test_minio_encrypts_objects_with_a_kms_key_from_the_environment():
    services = compose()["services"]
    assert services["minio"]["environment"]["MINIO_KMS_SECRET_KEY"].startswith("${MINIO_KMS_SECRET_KEY:?")
    script = " ".join(services["minio-init"]["entrypoint"])
    assert "mc mb --ignore-existing local/emoq" in script and "mc encrypt set sse-s3 local/emoq" in script
    for name in ("api", "worker", "maintenance"):
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully", name


def test_the_maintenance_worker_does_not_load_the_model(settings, sessions, store):
    from worker.context import WorkerContext

    env = compose()["services"]["maintenance"]["environment"]
    assert env["EMOQ_LOAD_MODEL"] == "false" and env["EMOQ_DEVICE"] == "cpu"
    maintenance = settings.override({"EMOQ_LOAD_MODEL": env["EMOQ_LOAD_MODEL"], "EMOQ_MODEL": "/no/such/model"})
    ctx = WorkerContext(maintenance, sessions, store)
    ctx.load_model()  # a missing model would be an error if it were loaded
    assert ctx.engine is None and "EMOQ_LOAD_MODEL=false" in (ctx.model_error or "")
    assert ctx.status()["model_loaded"] is False


def test_gpu_worker_concurrency_is_a_documented_knob():
    command = compose()["services"]["worker"]["command"]
    assert command[command.index("--concurrency") + 1] == "${GPU_WORKER_CONCURRENCY:-1}"
    text = (ROOT / "docker-compose.yml").read_text()
    comments = "\n".join(line for line in text.splitlines() if line.strip().startswith("#"))
    assert "GPU_WORKER_CONCURRENCY" in comments and "own copy of the model" in comments


def test_gunicorn_limits_sit_above_the_apps_own():
    import runpy

    from api import inputs

    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert conf["limit_request_line"] > inputs.MAX_URL_BYTES + len("DELETE  HTTP/1.1")
    assert conf["limit_request_field_size"] > inputs.MAX_HEADER_BYTES
    assert conf["limit_request_fields"] > inputs.MAX_HEADERS


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.variables() if f"`{name}`" not in readme]
    assert missing == []


def test_api_runs_threaded_workers_for_concurrent_uploads():
    command = compose()["services"]["api"]["command"]
    assert command[command.index("--worker-class") + 1] == "gthread" and "--threads" in command
    assert "gthread" in (ROOT / "Dockerfile").read_text() and "gthread" in (ROOT / "scripts" / "run.sh").read_text()


def test_redis_persists_in_compose_and_in_the_local_stack():
    # A Redis that restarts empty drops every queued message (the sweep then
    # re-publishes them, but a minute late); both stacks keep an append-only file.
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert "--appendonly yes" in stack and "--appendonly no" not in stack
