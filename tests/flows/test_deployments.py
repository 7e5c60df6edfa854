"""The deployment definitions in prefect.yaml load, validate and point at real flows — checked with Prefect's
public API only (``RunnerDeployment.from_entrypoint``, ``Flow.parameters``, schedule constructors)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.schema_tools.validation import validate

from downscale.pipeline_config import PipelineConfig, demo_config

REPO = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in DOC["deployments"]}
# The sections of a prefect.yaml (https://docs.prefect.io/v3/deploy/infrastructure-concepts/prefect-yaml).
SECTIONS = {"name", "prefect-version", "build", "push", "pull", "definitions", "deployments"}
WORK_POOL_KEYS = {"name": "work_pool_name", "work_queue_name": "work_queue_name", "job_variables": "job_variables"}


def runner_deployment(entry: dict[str, Any]) -> RunnerDeployment:
    """The deployment ``prefect deploy`` builds from one ``deployments:`` entry. Every key is passed on as
    an argument, so a misspelt key fails with ``TypeError`` instead of being ignored."""
    entry = dict(entry)
    pool = entry.pop("work_pool")
    unknown = set(pool) - set(WORK_POOL_KEYS)
    assert not unknown, f"{entry['name']}: unknown work_pool keys {unknown}"
    schedules = [CronSchedule(**s) for s in entry.pop("schedules", [])]  # extra="forbid": a typo raises
    return RunnerDeployment.from_entrypoint(entry.pop("entrypoint"), schedules=schedules,
                                            **{WORK_POOL_KEYS[k]: v for k, v in pool.items()}, **entry)


def test_prefect_yaml_has_known_sections_and_importable_pull_steps():
    assert set(DOC) <= SECTIONS, f"unknown sections {set(DOC) - SECTIONS}"
    assert set(DEPLOYMENTS) == {"pipeline", "incremental-downscale", "periodic-evaluation"}
    for step in DOC["pull"]:
        (path, _), = step.items()
        module, name = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), path


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_each_deployment_builds_as_prefect_deploy_would(name, monkeypatch):
    monkeypatch.chdir(REPO)  # `prefect deploy` runs from the repo root; entrypoints are relative to it
    entry = DEPLOYMENTS[name]
    deployment = runner_deployment(entry)
    assert (deployment.name, deployment.entrypoint) == (name, entry["entrypoint"])
    assert deployment.work_pool_name == "fv3-downscale"
    assert [s.schedule.cron for s in deployment.schedules] == [s["cron"] for s in entry.get("schedules", [])]


def test_a_misspelt_deployment_key_is_refused(monkeypatch):
    monkeypatch.chdir(REPO)
    entry = {**DEPLOYMENTS["periodic-evaluation"], "concurency_limit": 1}
    with pytest.raises(TypeError, match="concurency_limit"):
        runner_deployment(entry)
    bad_schedule = {**DEPLOYMENTS["periodic-evaluation"], "schedules": [{"cron": "0 4 * * 1", "timezon": "UTC"}]}
    with pytest.raises(ValueError, match="timezon"):
        runner_deployment(bad_schedule)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_each_deployment_loads_its_flow_and_its_parameters_validate(name):
    deployment = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    schema = flow.parameters.model_dump_for_openapi()                # as the server does when deploying
    validate(deployment["parameters"], schema, raise_on_error=True, ignore_required=True)
    params = flow.validate_parameters(deployment["parameters"])   # as Prefect does when a run starts
    config = params["config"]
    assert isinstance(config, PipelineConfig)
    assert config.generate.member == "0010" and str(config.generate.output).endswith("outputs/0010.zarr")
    for schedule in deployment.get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])   # raises on a bad cron


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_a_dumped_config_is_a_valid_run_parameter(name, tmp_path):
    """What `prefect deployment run --params` sends (infra/prefect/run_against_server.sh): a config dumped
    to JSON must pass the server's schema check and validate back to the same config."""
    flow = load_flow_from_entrypoint(str(REPO / DEPLOYMENTS[name]["entrypoint"]))
    config = demo_config(tmp_path / "run", "tests")
    params = {"config": config.model_dump(mode="json")}
    validate(params, flow.parameters.model_dump_for_openapi(), raise_on_error=True)
    assert flow.validate_parameters(params)["config"] == config


def test_a_bad_parameter_is_refused_naming_the_field():
    flow = load_flow_from_entrypoint(str(REPO / DEPLOYMENTS["incremental-downscale"]["entrypoint"]))
    bad = yaml.safe_load(yaml.safe_dump(DEPLOYMENTS["incremental-downscale"]["parameters"]))
    bad["config"]["generate"]["members"] = 0
    with pytest.raises(Exception, match="members"):
        flow.validate_parameters(bad)


def test_scheduled_deployments_are_incremental_downscaling_and_periodic_evaluation():
    assert DEPLOYMENTS["incremental-downscale"]["entrypoint"].endswith(":incremental_downscale_flow")
    assert DEPLOYMENTS["periodic-evaluation"]["entrypoint"].endswith(":evaluate_flow")
    assert all(DEPLOYMENTS[n].get("schedules") for n in ("incremental-downscale", "periodic-evaluation"))
    assert not DEPLOYMENTS["pipeline"].get("schedules")
