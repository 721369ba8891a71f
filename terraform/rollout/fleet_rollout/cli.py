"""Command line of the fleet rollout: arguments, the inventory, the plan, then --dry-run or the
rollout itself. Exit 0 every host done, 1 a host failed (or preflight refused), 2 bad usage
or inventory."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from .commands import Settings
from .executor import Runner, StepFailed, execute, preflight
from .inventory import InventoryError, fleet_from_outputs, load_outputs_file, read_outputs
from .plan import PlanError, batches, select
from .report import print_outcomes, print_plan

FLAKE_REF = re.compile(r"^(github:|gitlab:|git\+https://|git\+ssh://|https://|path:)\S+$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleet-rollout",
        description="Roll a new concurrent-socket version across the fleet, host by host through blue/green (docs/fleet.md).",
    )
    parser.add_argument("--flake-ref", required=True, help="flake reference of the new version, e.g. github:acme/concurrent-socket/<rev>")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tf-dir", type=Path, default=Path("terraform/envs/example"), help="Terraform environment to read `terraform output -json` from (default: %(default)s)")
    source.add_argument("--outputs", type=Path, help="a saved `terraform output -json` instead of --tf-dir")
    parser.add_argument("--max-unavailable", type=int, default=1, help="hosts out of the load balancer at once, the batch size (default: %(default)s)")
    parser.add_argument("--hosts", help="comma-separated host names to roll (default: all)")
    parser.add_argument("--build-on", choices=("target", "local"), default="target", help="where nixos-rebuild builds (default: %(default)s, the host itself)")
    parser.add_argument("--ssh-user", default="root", help="SSH user on the hosts (default: %(default)s)")
    parser.add_argument("--step-timeout", type=float, default=1800, help="seconds any one command may take (default: %(default)s)")
    parser.add_argument("--deploy-arg", action="append", default=[], help="extra argument for `wsctl deploy` (repeatable)")
    parser.add_argument("--skip-preflight", action="store_true", help="start even if some targets are not healthy now")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    args = parser.parse_args(argv)
    if not FLAKE_REF.match(args.flake_ref):
        parser.error(f"--flake-ref {args.flake_ref!r} is not a flake reference (github:, gitlab:, git+https://, git+ssh://, https://, path:)")
    if args.step_timeout <= 0:
        parser.error("--step-timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        outputs = load_outputs_file(args.outputs) if args.outputs else read_outputs(args.tf_dir)
        fleet = fleet_from_outputs(outputs)
        chosen = select(fleet.hosts, args.hosts.split(",") if args.hosts else None)
        plan = batches(chosen, len(fleet.hosts), args.max_unavailable)
    except (InventoryError, PlanError) as err:
        print(f"fleet-rollout: {err}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="fleet-flake-") as tmp:
        flake_dir = Path(tmp)
        for name, text in fleet.nixos_files.items():
            (flake_dir / name).write_text(text)
        settings = Settings(args.flake_ref, args.ssh_user, args.build_on, flake_dir, tuple(args.deploy_arg))
        print_plan(fleet, settings, plan)
        if args.dry_run:
            print("\ndry run: nothing was changed")
            return 0

        runner = Runner(args.step_timeout)
        if not args.skip_preflight:
            try:
                problems = preflight(fleet, runner, chosen)
            except StepFailed as failure:
                problems = [str(failure)]
            if problems:
                print("fleet-rollout: refusing to start, not every host is healthy: " + "; ".join(problems), file=sys.stderr)
                return 1
        outcomes = execute(fleet, settings, runner, plan)
    print_outcomes(fleet, outcomes)
    return 0 if all(o.state == "done" for o in outcomes) else 1
