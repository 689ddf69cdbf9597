"""What the deploy tests read: the manifests, the compose file, docs/metrics.md, promtool, the real CLI parser."""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from cli.main import build_parser
from scheduler.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
IMAGE = "billing-scheduler"
IN_CI = bool(os.environ.get("CI"))

# Histogram series carry these suffixes; the documented name is the histogram's.
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
METRIC = re.compile(r"\b(?:scheduler|dramatiq)_[a-z0-9_]+\b")


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """deploy/Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def image_user() -> int:
    """The numeric user the image runs as (its USER uid:gid)."""
    [user] = [args for instruction, args in dockerfile_instructions() if instruction == "USER"]
    return int(user.split(":")[0])


@functools.cache
def _load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every manifest, with the file it came from (a copy: a test may change it)."""
    return [(path.name, copy.deepcopy(doc)) for path in sorted(K8S.glob("*.yaml")) for doc in _load_yaml(path)]


def k8s_objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


def pod_templates() -> dict[str, dict[str, Any]]:
    """The pod spec of every Deployment and Job, by its object's name."""
    return {name: doc["spec"]["template"] for kind in ("Deployment", "Job") for name, doc in k8s_objects(kind).items()}


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def compose_services() -> dict[str, dict[str, Any]]:
    return dict(copy.deepcopy(_load_yaml(COMPOSE)[0])["services"])


def our_compose_services() -> dict[str, dict[str, Any]]:
    """The compose services that run this project's image (not PostgreSQL or Redis)."""
    return {name: svc for name, svc in compose_services().items() if svc.get("image", "").startswith(f"{IMAGE}:")}


class DeclaredSettings(Settings):
    """Settings from the values given and the defaults, not from this test process's environment."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_from(environment: dict[str, str]) -> Settings:
    """The settings a container gets from this environment (the rest are the defaults)."""
    names = {f"SCHEDULER_{name.upper()}": name for name in Settings.model_fields}
    return DeclaredSettings.model_validate({names[k]: v for k, v in environment.items() if k in names})


@dataclass(frozen=True)
class Role:
    """A process of the project, as a manifest or the compose file starts it."""

    where: str
    args: tuple[str, ...]


def roles() -> Iterator[Role]:
    """Every command line our image runs, in Kubernetes (args after the `scheduler` entrypoint) and compose."""
    for name, template in pod_templates().items():
        for container in containers(template["spec"]):
            yield Role(f"k8s {name}/{container['name']}", tuple(container.get("args", ())))
    for name, svc in our_compose_services().items():
        yield Role(f"compose {name}", tuple(svc.get("command", ())))


def parse_command(args: Sequence[str]) -> argparse.Namespace:
    """Parse with the real CLI's parser; :class:`ValueError` with argparse's message when it refuses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(list(args))
    except SystemExit:
        raise ValueError(stderr.getvalue().strip().splitlines()[-1]) from None


def worker_queues(args: Sequence[str]) -> list[str]:
    """The queues a `worker` command line consumes; empty for any other command."""
    parsed = parse_command(args)
    if parsed.command != "worker":
        return []
    return [q for part in (parsed.queues or []) for q in part.split(",") if q]


@dataclass(frozen=True)
class Metric:
    name: str
    type: str
    labels: frozenset[str]


@functools.cache
def documented_metrics() -> dict[str, Metric]:
    """The metrics of docs/metrics.md's tables, by name."""
    found = {}
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`scheduler_"):
            name = cells[0].strip("`")
            found[name] = Metric(name, cells[1], frozenset(re.findall(r"`([a-z_]+)`", cells[2])))
    return found


def metric_names(expr: str) -> set[str]:
    """The scheduler_* and dramatiq_* names in a PromQL expression, histogram suffixes taken off."""
    documented = documented_metrics()
    names = set()
    for name in METRIC.findall(expr):
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES
                     if name.endswith(s) and documented.get(name.removesuffix(s), Metric("", "", frozenset())).type
                     == "histogram"), name)
        names.add(base)
    return names


def undocumented(exprs: Sequence[str]) -> set[str]:
    documented = documented_metrics()
    return {n for e in exprs for n in metric_names(e) if n.startswith("scheduler_") and n not in documented}


def tool(name: str, install: str) -> str:
    """The path of a command-line tool the deploy tests run; fails in CI when it is missing, else skips."""
    # Tools installed by the dev extras sit beside this interpreter, whether or not the venv is on PATH.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is missing but CI is set: {install}")
        pytest.skip(f"{name} is not installed: {install}")
    return path
