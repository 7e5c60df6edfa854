"""The deployment definitions in prefect.yaml load, validate and point at real flows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

from downscale.config import PipelineConfig, demo_config

REPO = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in DOC["deployments"]}


def test_prefect_yaml_is_valid_for_prefect_deploy():
    model = PrefectYamlModel.model_validate(DOC)      # what `prefect deploy` reads
    assert {d.name for d in model.deployments} == {"pipeline", "incremental-downscale", "periodic-evaluation"}
    known = set(DeploymentConfig.model_fields)
    for d in DOC["deployments"]:                       # Prefect ignores unknown keys: a typo must not pass
        assert set(d) <= known, f"{d['name']}: unknown keys {set(d) - known}"
        assert d["work_pool"]["name"] == "fv3-downscale"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_each_deployment_loads_its_flow_and_its_parameters_validate(name):
    deployment = DEPLOYMENTS[name]
    flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    schema = parameter_schema(flow).model_dump_for_openapi()      # as the server does when deploying
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
    validate(params, parameter_schema(flow).model_dump_for_openapi(), raise_on_error=True)
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
