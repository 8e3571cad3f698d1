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


def test_dockerfile_installs_the_pinned_requirements():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements.txt -c constraints.txt" in dockerfile


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.variables() if f"`{name}`" not in readme]
    assert missing == []


def test_redis_persists_in_compose_and_in_the_local_stack():
    # A Redis that restarts empty drops every queued message (the sweep then
    # re-publishes them, but a minute late); both stacks keep an append-only file.
    command = compose()["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    stack = (ROOT / "scripts" / "stack.sh").read_text()
    assert "--appendonly yes" in stack and "--appendonly no" not in stack
