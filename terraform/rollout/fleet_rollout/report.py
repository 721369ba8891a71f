"""What the operator reads at the end (and in --dry-run): the plan, and where every host stands."""

from __future__ import annotations

from . import commands
from .commands import Settings
from .executor import Outcome
from .inventory import Fleet, Host


def print_plan(fleet: Fleet, settings: Settings, plan: list[list[Host]]) -> None:
    """The batches and each host's commands; <active>/<idle> are read from the host at run time."""
    print(f"rollout of {settings.flake_ref} to {sum(len(b) for b in plan)} of {len(fleet.hosts)} hosts, "
          f"{len(plan)} batch(es) of at most {max(len(b) for b in plan)}")
    for number, batch in enumerate(plan, 1):
        print(f"batch {number}: " + ", ".join(f"{h.name} ({h.availability_zone})" for h in batch))
    host = plan[0][0]
    pins = {"blue": "<pin of blue>", "green": "<pin of green>"}
    print(f"\ncommands for each host, e.g. {host.name} (<idle> is the colour wsctl status does not report active):")
    steps = [
        commands.wsctl_status(settings, host),
        commands.read_pins(settings, host),
        *(commands.elbv2(fleet, "deregister-targets", host, listener) for listener in fleet.target_groups),
        *(commands.elbv2(fleet, "wait target-deregistered", host, listener) for listener in fleet.target_groups),
        commands.write_pins(settings, host) + ["<<<", '\'{"<idle>": "%s", "<active>": "<its pin>"}\'' % settings.flake_ref],
        commands.nixos_rebuild(settings, host, pins) + ["(with <idle> overridden by the new reference)"],
        commands.wsctl_deploy(settings, host, "<idle>"),
        commands.wsctl_status(settings, host) + ["(must report <idle> active)"],
        *(commands.elbv2(fleet, "register-targets", host, listener) for listener in fleet.target_groups),
        *(commands.elbv2(fleet, "wait target-in-service", host, listener) for listener in fleet.target_groups),
    ]
    for number, argv in enumerate(steps, 1):
        print(f"  {number:2}. {' '.join(argv)}")


def print_outcomes(fleet: Fleet, outcomes: list[Outcome]) -> None:
    groups = {state: [o for o in outcomes if o.state == state] for state in ("done", "failed", "untouched")}
    print("\n== fleet state")
    for o in groups["done"]:
        print(f"DONE      {o.host.name}: {o.to_colour} active (was {o.from_colour}), in service")
    for o in groups["failed"]:
        where = "still in service" if o.in_service else "OUT of the load balancer"
        print(f"FAILED    {o.host.name} at {o.step}: {o.detail}; {where}")
        if not o.in_service:
            for number, listener in enumerate(fleet.target_groups):
                lead = "when it is fixed:" if number == 0 else ""
                print(f"          {lead:17} {' '.join(commands.elbv2(fleet, 'register-targets', o.host, listener))}")
    for o in groups["untouched"]:
        print(f"UNTOUCHED {o.host.name}")
    print(f"RESULT rollout: {len(groups['done'])} done, {len(groups['failed'])} failed, {len(groups['untouched'])} untouched")
