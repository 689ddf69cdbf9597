"""Every queue has a worker pool in Kubernetes and in compose, and every command they run is a real CLI command."""

from __future__ import annotations

import pytest
from deploy_kit import (
    ROOT,
    Role,
    compose_services,
    k8s_objects,
    our_compose_services,
    parse_command,
    roles,
    worker_queues,
)

from scheduler.dispatch import SCHEDULER_QUEUE
from scheduler.jobtypes import JobTypeRegistry, load_registry
from scheduler.settings import Settings


def required_queues(registry: JobTypeRegistry) -> set[str]:
    """Each installed job type's queue, and the internal queue that carries request_run."""
    return {*registry.queues(), SCHEDULER_QUEUE}


def k8s_pools() -> dict[str, list[str]]:
    """Queue -> the Deployments whose worker consumes it."""
    pools: dict[str, list[str]] = {}
    for name, deployment in k8s_objects("Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for queue in worker_queues(container.get("args", [])):
                pools.setdefault(queue, []).append(name)
    return pools


def compose_pools() -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for name, service in our_compose_services().items():
        for queue in worker_queues(service.get("command", [])):
            pools.setdefault(queue, []).append(name)
    return pools


def test_every_queue_of_the_registry_has_a_pool_in_kubernetes_and_compose() -> None:
    queues = required_queues(load_registry(Settings()))
    assert {"dunning", "usage_mediation", "erp_transfer", "gl_collector", "scheduler"} <= queues
    assert sorted(queues - set(k8s_pools())) == [], "queues without a worker Deployment in deploy/k8s/"
    assert sorted(queues - set(compose_pools())) == [], "queues without a worker service in deploy/compose.yaml"


def test_one_pool_per_queue_and_no_pool_for_an_unknown_queue() -> None:
    queues = required_queues(load_registry(Settings()))
    for pools in (k8s_pools(), compose_pools()):
        assert set(pools) == queues
        assert all(len(owners) == 1 for owners in pools.values()), pools


def test_a_job_type_added_by_a_plug_in_needs_a_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    # A third party installs a job type on a queue of its own (beat's test type): the manifests lack its pool.
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "beat"))
    queues = required_queues(load_registry(Settings(extra_job_types=["beat_fake_types:FAKE"])))
    assert queues - set(k8s_pools()) == queues - set(compose_pools()) == {"beat_fake"}


@pytest.mark.parametrize("role", list(roles()), ids=lambda r: r.where)
def test_every_command_is_a_real_cli_command(role: Role) -> None:
    parsed = parse_command(role.args)
    assert parsed.command in {"api", "beat", "worker", "migrate"}


def test_the_commands_cover_every_role() -> None:
    commands = {(r.where.split()[0], parse_command(r.args).command) for r in roles()}
    for where in ("k8s", "compose"):
        assert {c for w, c in commands if w == where} == {"api", "beat", "worker", "migrate"}
    assert {"db", "redis"} <= set(compose_services())


@pytest.mark.parametrize("args", [["worker", "--queus", "dunning"], ["wroker"], ["migrate", "--chek"],
                                  ["worker", "--processes", "two"]])
def test_a_command_the_cli_does_not_know_is_refused(args: list[str]) -> None:
    with pytest.raises(ValueError, match="error:"):
        parse_command(args)
