"""The Kubernetes manifests: what a cluster accepts (its own schemas) and what production needs of every pod."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from deploy_kit import (
    IMAGE,
    K8S,
    containers,
    image_user,
    k8s_documents,
    k8s_objects,
    parse_command,
    pod_templates,
    project_version,
    settings_from,
)

# Validated against an older release a cluster may still run and the newest whose schemas are installed.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
ROLE_PORTS = {"api": 8000, "beat": 9192, "worker": 9191}


def main_container(name: str) -> dict[str, Any]:
    [container] = pod_templates()[name]["spec"]["containers"]
    return container


def role_of(container: dict[str, Any]) -> str:
    return str(parse_command(container.get("args", [])).command)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), k8s_documents(),
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}/{v['metadata']['name']}")
def test_every_object_validates_against_the_kubernetes_schema(where: str, doc: dict[str, Any], version: str) -> None:
    # strict: a field Kubernetes does not know (a typo, a field at the wrong level) fails too.
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_refuses_what_a_cluster_would() -> None:
    deployment = k8s_objects("Deployment")["scheduler-api"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    probe["paht"] = probe.pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_no_yaml_anchor_reaches_across_documents() -> None:
    # Each document must parse on its own: `kubectl apply` and the schema check see one at a time.
    import yaml

    for path in sorted(K8S.glob("*.yaml")):
        for text in path.read_text().split("\n---\n"):
            yaml.safe_load(text)


@pytest.mark.parametrize("name", sorted(pod_templates()))
def test_every_pod_runs_restricted(name: str) -> None:
    spec = pod_templates()[name]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == image_user() and isinstance(pod["runAsUser"], int)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["serviceAccountName"] == "billing-scheduler"
    for container in containers(spec):
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        }, container["name"]
        # A read-only root leaves /tmp (the data directory: Prometheus multiprocess files) to a volume.
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(volume["name"] == "tmp" and "emptyDir" in volume for volume in spec["volumes"])


@pytest.mark.parametrize("name", sorted(pod_templates()))
def test_every_container_has_requests_limits_and_the_pinned_image(name: str) -> None:
    for container in containers(pod_templates()[name]["spec"]):
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, container["name"]
        assert container["image"] == f"{IMAGE}:{project_version()}"
        assert "command" not in container, "the image's entrypoint is `scheduler`: roles set args only"


@pytest.mark.parametrize("name", sorted(k8s_objects("Deployment")))
def test_every_role_has_probes_on_its_port_and_waits_for_the_schema(name: str) -> None:
    spec = pod_templates()[name]["spec"]
    container = main_container(name)
    port = ROLE_PORTS[role_of(container)]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    port_name = container["ports"][0]["name"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
    annotations = pod_templates()[name]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/scrape"] == "true"
    [init] = spec["initContainers"]
    assert init["args"] == ["migrate", "--check"]
    assert init["envFrom"] == container["envFrom"]


def test_the_migration_job_runs_migrate_and_is_named_for_the_release() -> None:
    [(name, job)] = k8s_objects("Job").items()
    assert name == f"scheduler-migrate-{project_version().replace('.', '-')}"
    assert main_container(name)["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_grace_periods_outlast_each_roles_shutdown() -> None:
    # On SIGTERM a pool finishes the step in hand and the API its requests, each within its setting.
    settings = settings_from(k8s_objects("ConfigMap")["scheduler-config"]["data"])
    for name in k8s_objects("Deployment"):
        grace = pod_templates()[name]["spec"]["terminationGracePeriodSeconds"]
        role = role_of(main_container(name))
        if role == "worker":
            assert grace > settings.worker_shutdown_seconds, name
        elif role == "api":
            assert grace > settings.api_shutdown_seconds, name
        else:
            assert grace >= 30, name


def test_api_and_beat_have_disruption_budgets_and_beat_replicas_spread_over_nodes() -> None:
    budgets = k8s_objects("PodDisruptionBudget")
    for name in ("scheduler-api", "scheduler-beat"):
        labels = pod_templates()[name]["metadata"]["labels"]
        [budget] = [b for b in budgets.values() if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert budget["spec"]["minAvailable"] == 1
        assert k8s_objects("Deployment")[name]["spec"]["replicas"] >= 2
    beat = k8s_objects("Deployment")["scheduler-beat"]
    anti_affinity = beat["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = anti_affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= beat["spec"]["template"]["metadata"]["labels"].items()
    # With one beat per node a surge pod has nowhere to go: replace in place.
    assert beat["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_every_selector_matches_its_pods_and_the_api_service_reaches_them() -> None:
    for name, deployment in k8s_objects("Deployment").items():
        labels = pod_templates()[name]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = k8s_objects("Service")["scheduler-api"]
    assert service["spec"]["selector"].items() <= pod_templates()["scheduler-api"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == main_container("scheduler-api")["ports"][0]["name"]


def test_containers_get_the_production_settings() -> None:
    config = k8s_objects("ConfigMap")["scheduler-config"]["data"]
    assert config["SCHEDULER_LOG_FORMAT"] == "json"
    assert config["SCHEDULER_API_HOST"] == config["SCHEDULER_METRICS_HOST"] == "0.0.0.0"
    assert config["SCHEDULER_DATA_DIR"].startswith("/tmp/")
    for name in pod_templates():
        for container in containers(pod_templates()[name]["spec"]):
            assert container["envFrom"] == [{"configMapRef": {"name": "scheduler-config"}},
                                             {"secretRef": {"name": "scheduler"}}]
    # The API forks one worker per core by default, and a container sees the node's cores: name the count,
    # within the CPU limit.
    api = main_container("scheduler-api")
    workers = int({e["name"]: e["value"] for e in api["env"]}["SCHEDULER_API_WORKERS"])
    assert 1 <= workers <= int(api["resources"]["limits"]["cpu"])


def test_pools_that_read_or_write_files_share_the_files_volume() -> None:
    claim = k8s_objects("PersistentVolumeClaim")["scheduler-files"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    root = k8s_objects("ConfigMap")["scheduler-config"]["data"]["SCHEDULER_FILES_ROOT"]
    for queue in ("usage_mediation", "erp_transfer"):
        name = f"scheduler-worker-{queue.replace('_', '-')}"
        assert {"name": "files", "mountPath": root} in main_container(name)["volumeMounts"]
        assert {"name": "files", "persistentVolumeClaim": {"claimName": "scheduler-files"}} in (
            pod_templates()[name]["spec"]["volumes"])
