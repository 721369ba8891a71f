"""The commands a host's rollout runs, and how the hosts' answers are read."""

import json
from pathlib import Path

import pytest
from fleet_rollout import commands
from fleet_rollout.commands import Settings, StatusError
from fleet_rollout.inventory import fleet_from_outputs

NEW = "github:acme/concurrent-socket/new"


@pytest.fixture
def fleet(outputs):
    return fleet_from_outputs(outputs)


def settings(build_on="target"):
    return Settings(NEW, "root", build_on, Path("/tmp/flake"), ("--switch-steps", "3"))


def test_nixos_rebuild_changes_the_module_and_the_idle_colour_only(fleet):
    host = fleet.hosts[0]
    argv = commands.nixos_rebuild(settings(), host, {"blue": "github:acme/concurrent-socket/old", "green": NEW})
    assert argv[:4] == ["nixos-rebuild", "switch", "--flake", "/tmp/flake#fleet-host"]
    overrides = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--override-input"}
    assert overrides == {"concurrent-socket": NEW, "blue": "github:acme/concurrent-socket/old", "green": NEW}
    assert argv[argv.index("--target-host") + 1] == "root@198.51.100.1"
    assert argv[argv.index("--build-host") + 1] == "root@198.51.100.1"
    assert "--build-host" not in commands.nixos_rebuild(settings("local"), host, {"blue": NEW, "green": NEW})


def test_load_balancer_commands_name_instance_port_and_region(fleet):
    host = fleet.hosts[1]
    argv = commands.elbv2(fleet, "wait target-deregistered", host, "https")
    assert argv[:6] == ["aws", "--region", "eu-west-1", "elbv2", "wait", "target-deregistered"]
    assert argv[-2:] == ["--targets", f"Id={host.instance_id},Port=80"], "Traefik's web entry point, behind either listener"
    assert fleet.target_groups["https"] in argv


def test_a_failed_deploy_says_what_its_exit_status_means_for_the_host():
    report = json.dumps({"outcome": "refused", "exitCode": 3, "error": "another deploy holds /var/lib/concurrent-socket/deploy.lock"})
    assert commands.deploy_failure(3, report, "wsctl: ...") == (
        "another deploy or rollback holds the host's lock (wsctl exit 3): nothing changed by this one: "
        "another deploy holds /var/lib/concurrent-socket/deploy.lock")
    assert commands.deploy_failure(1, "not json", "green never became ready").startswith("wsctl rolled the deploy back (exit 1)")
    assert commands.deploy_failure(255, "", "ssh: connect to host 198.51.100.1 port 22: Connection refused") == \
        "ssh: connect to host 198.51.100.1 port 22: Connection refused", "not wsctl's: said as it is"
    assert commands.deploy_failure(None, "", "no answer within 900 s") == "no answer within 900 s"


def test_deploy_passes_extra_arguments(fleet):
    argv = commands.wsctl_deploy(settings(), fleet.hosts[0], "green")
    assert argv[argv.index("--") + 1 :] == ["wsctl", "deploy", "--to", "green", "--json", "--switch-steps", "3"]


def test_active_colour_from_wsctl_status():
    assert commands.parse_active_colour(json.dumps({"active": "green", "instances": []})) == "green"


@pytest.mark.parametrize("stdout, message", [
    ("not json", "did not print JSON"),
    (json.dumps({"active": None}), "no active colour"),
    (json.dumps({"active": "purple"}), "no active colour"),
    (json.dumps(["blue"]), "no active colour"),
])
def test_unusable_status_is_an_error(stdout, message):
    with pytest.raises(StatusError, match=message):
        commands.parse_active_colour(stdout)


def test_pins():
    assert commands.parse_pins('{"blue": "a", "green": "b", "x": 1}') == {"blue": "a", "green": "b"}
    with pytest.raises(StatusError, match="must name a flake reference"):
        commands.parse_pins('{"blue": "a"}')
    with pytest.raises(StatusError, match="is not JSON"):
        commands.parse_pins("")


def test_target_states(fleet):
    answer = {"TargetHealthDescriptions": [
        {"Target": {"Id": fleet.hosts[0].instance_id, "Port": 80}, "TargetHealth": {"State": "healthy"}},
        {"Target": {"Id": fleet.hosts[1].instance_id, "Port": 80}, "TargetHealth": {"State": "draining"}},
        {"Target": {"Id": fleet.hosts[2].instance_id, "Port": 80}, "TargetHealth": {"State": "healthy"}},
    ]}
    assert commands.target_states(json.dumps(answer), list(fleet.hosts), "http") == {
        "ws-prod-ws-01": "healthy",
        "ws-prod-ws-02": "draining",
        "ws-prod-ws-03": "healthy",
        "ws-prod-ws-04": "not registered",
    }
    with pytest.raises(StatusError, match="gave no TargetHealthDescriptions"):
        commands.target_states("{}", list(fleet.hosts), "http")
