"""deploy/compose.yaml: migrations first, a healthcheck on every service, the confinement of the Kubernetes pods."""

from __future__ import annotations

import subprocess

import pytest
from deploy_kit import (
    COMPOSE,
    IMAGE,
    ROOT,
    compose_services,
    image_user,
    our_compose_services,
    parse_command,
    project_version,
    settings_from,
)


def seconds(duration: str) -> int:
    """A compose duration such as `11m` or `30s`, in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


def test_docker_compose_accepts_the_file(docker_compose: str) -> None:
    # Compose's own loader and schema: what `docker compose up` would refuse, `config` refuses.
    result = subprocess.run([docker_compose, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_a_broken_file(docker_compose: str) -> None:
    broken = COMPOSE.read_text().replace("condition: service_completed_successfully",
                                         "condition: service_finished")
    result = subprocess.run([docker_compose, "-f", "-", "--project-directory", str(ROOT / "deploy"), "config",
                             "--quiet"], input=broken, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "depends_on.migrate.condition" in result.stderr


def test_every_process_waits_for_the_migrations() -> None:
    services = our_compose_services()
    migrate = services.pop("migrate")
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name, service in services.items():
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        assert service["depends_on"]["db"] == service["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in compose_services().items():
        if name == "migrate":
            assert service["healthcheck"] == {"disable": True}
            continue
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name, service in our_compose_services().items():
        if name != "migrate":
            assert service["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]


@pytest.mark.parametrize("name", sorted(our_compose_services()))
def test_our_services_run_the_pinned_image_confined(name: str) -> None:
    service = our_compose_services()[name]
    assert service["image"] == f"{IMAGE}:{project_version()}"
    assert service["user"] == f"{image_user()}:{image_user()}"
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"]


def test_two_beats_and_grace_periods_beyond_each_roles_shutdown() -> None:
    services = our_compose_services()
    assert services["beat"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        settings = settings_from(service["environment"])
        command = parse_command(service["command"]).command
        if command == "worker":
            assert seconds(service["stop_grace_period"]) > settings.worker_shutdown_seconds, name
        elif command == "api":
            assert seconds(service["stop_grace_period"]) > settings.api_shutdown_seconds, name
    assert services["api"]["ports"] == ["8000:8000"]
    # The API forks one worker per core by default, counting the host's cores: name the count.
    assert int(services["api"]["environment"]["SCHEDULER_API_WORKERS"]) >= 1
