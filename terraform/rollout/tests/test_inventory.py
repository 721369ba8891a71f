"""Reading the fleet from Terraform's outputs."""

import copy
import re
from pathlib import Path

import pytest
from fleet_rollout.inventory import InventoryError, fleet_from_outputs, load_outputs_file

EXAMPLE_OUTPUTS = Path(__file__).resolve().parents[2] / "envs" / "example" / "outputs.tf"


def test_reads_hosts_target_groups_and_flake(outputs):
    fleet = fleet_from_outputs(outputs)
    assert [h.name for h in fleet.hosts] == ["ws-prod-ws-01", "ws-prod-ws-02", "ws-prod-ws-03", "ws-prod-ws-04"]
    assert fleet.hosts[0].instance_id == "i-00000000000000001" and fleet.hosts[0].public_ip == "198.51.100.1"
    assert set(fleet.target_groups) == {"https"} and fleet.target_ports == {"https": 80}
    assert fleet.region == "eu-west-1" and set(fleet.nixos_files) == {"flake.nix", "fleet.json"}


def test_the_outputs_it_reads_are_those_the_example_declares(outputs):
    declared = set(re.findall(r'^output "([a-z_]+)"', EXAMPLE_OUTPUTS.read_text(), re.M))
    assert {"ws_hosts", "target_group_arns", "region", "ws_host_nixos"} <= declared
    assert set(outputs) == declared, "the fixture must mirror envs/example/outputs.tf"


@pytest.mark.parametrize("missing", ["ws_hosts", "target_group_arns", "region", "ws_host_nixos"])
def test_a_missing_output_is_named(outputs, missing):
    del outputs[missing]
    with pytest.raises(InventoryError, match=f"output {missing} is missing"):
        fleet_from_outputs(outputs)


def test_an_unapplied_environment_has_no_hosts(outputs):
    outputs["ws_hosts"]["value"] = {}
    with pytest.raises(InventoryError, match="has `terraform apply` run"):
        fleet_from_outputs(outputs)


def test_a_host_without_address_is_named(outputs):
    broken = copy.deepcopy(outputs)
    broken["ws_hosts"]["value"]["ws-prod-ws-02"]["public_ip"] = None
    with pytest.raises(InventoryError, match="ws-prod-ws-02 lacks public_ip"):
        fleet_from_outputs(broken)


def test_a_bad_target_group_is_refused(outputs):
    outputs["target_group_arns"]["value"]["https"] = "not-an-arn"
    with pytest.raises(InventoryError, match="target_group_arns.https is not an ARN"):
        fleet_from_outputs(outputs)


def test_one_target_group_plain_or_tls(outputs):
    tg = outputs["target_group_arns"]["value"].pop("https")
    outputs["target_group_arns"]["value"]["http"] = tg
    assert fleet_from_outputs(outputs).target_ports == {"http": 80}
    outputs["target_group_arns"]["value"]["https"] = tg
    with pytest.raises(InventoryError, match="must map one listener"):
        fleet_from_outputs(outputs)


def test_unreadable_and_non_json_files(tmp_path):
    with pytest.raises(InventoryError, match="cannot read"):
        load_outputs_file(tmp_path / "absent.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("Error: no state")
    with pytest.raises(InventoryError, match="is not JSON"):
        load_outputs_file(garbage)
