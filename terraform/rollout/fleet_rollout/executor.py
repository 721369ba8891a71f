"""Runs the rollout: batch after batch, each host out of the load balancer, switched to the new
version on its idle colour, deployed with wsctl, and back in service; stops after the first
batch with a failure and reports every host as done, failed or untouched."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import commands
from .commands import Settings, StatusError
from .inventory import Fleet, Host


class StepFailed(Exception):
    def __init__(self, step: str, detail: str, returncode: int | None = None, stdout: str = ""):
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail
        self.returncode = returncode  # None: the command never finished
        self.stdout = stdout


@dataclass
class Outcome:
    host: Host
    state: str = "untouched"  # untouched | done | failed
    step: str = ""
    detail: str = ""
    in_service: bool = True  # registered with the load balancer
    from_colour: str = ""
    to_colour: str = ""


class Runner:
    """Runs one command, printing it first; a non-zero exit or a timeout is a StepFailed."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._print_lock = threading.Lock()

    def say(self, host: Host, text: str) -> None:
        with self._print_lock:
            print(f"[{host.name}] {text}", flush=True)

    def run(self, step: str, host: Host, argv: list[str], stdin: str | None = None) -> str:
        self.say(host, "$ " + " ".join(argv))
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError as err:
            raise StepFailed(step, f"{argv[0]} is not installed") from err
        except subprocess.TimeoutExpired as err:
            raise StepFailed(step, f"no answer within {self.timeout_s:.0f} s") from err
        if done.stderr.strip():
            with self._print_lock:
                sys.stderr.write("".join(f"[{host.name}]   {line}\n" for line in done.stderr.splitlines()))
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise StepFailed(step, last[0], done.returncode, done.stdout)
        return done.stdout


def roll_host(fleet: Fleet, settings: Settings, runner: Runner, outcome: Outcome) -> None:
    """One host, step by step; fills `outcome` as it goes, so a failure leaves it exact."""
    host = outcome.host
    try:
        active = _parse("status", commands.parse_active_colour, runner.run("status", host, commands.wsctl_status(settings, host)))
        idle = commands.other(active)
        pins = _parse("read pins", commands.parse_pins, runner.run("read pins", host, commands.read_pins(settings, host)))
        outcome.from_colour, outcome.to_colour = active, idle
        runner.say(host, f"active {active}; installing {settings.flake_ref} on {idle}")

        for listener in fleet.target_groups:
            runner.run("deregister", host, commands.elbv2(fleet, "deregister-targets", host, listener))
            outcome.in_service = False
        for listener in fleet.target_groups:
            runner.run("wait deregistered", host, commands.elbv2(fleet, "wait target-deregistered", host, listener))

        # Pinned before the switch: from here on, the idle colour's package is the new one
        # whether or not the switch completes, and the active colour's pin never moves.
        pins[idle] = settings.flake_ref
        runner.run("write pins", host, commands.write_pins(settings, host), stdin=json.dumps(pins) + "\n")
        runner.run("nixos-rebuild", host, commands.nixos_rebuild(settings, host, pins))
        try:
            runner.run("deploy", host, commands.wsctl_deploy(settings, host, idle))
        except StepFailed as failed:
            raise StepFailed("deploy", commands.deploy_failure(failed.returncode, failed.stdout, failed.detail)) from failed
        now_active = _parse("verify", commands.parse_active_colour, runner.run("verify", host, commands.wsctl_status(settings, host)))
        if now_active != idle:
            raise StepFailed("verify", f"wsctl deploy exited 0 but {now_active} is active, not {idle}")

        for listener in fleet.target_groups:
            runner.run("register", host, commands.elbv2(fleet, "register-targets", host, listener))
        for listener in fleet.target_groups:
            runner.run("wait in service", host, commands.elbv2(fleet, "wait target-in-service", host, listener))
        outcome.in_service = True
        outcome.state = "done"
        runner.say(host, f"done: {idle} active")
    except StepFailed as failure:
        outcome.state, outcome.step, outcome.detail = "failed", failure.step, failure.detail
        runner.say(host, f"FAILED at {failure.step}: {failure.detail}")


def _parse(step: str, parser, stdout: str):
    try:
        return parser(stdout)
    except StatusError as err:
        raise StepFailed(step, str(err)) from err


def preflight(fleet: Fleet, runner: Runner, selected: list[Host]) -> list[str]:
    """Problems that forbid starting: a rollout must not take capacity out of a fleet already
    short of it, so every host must be healthy in every target group. A selected host that is
    not registered at all is accepted: it is one a stopped rollout left out, and this rollout
    will bring it back."""
    chosen = {h.name for h in selected}
    problems: list[str] = []
    for listener in fleet.target_groups:
        stdout = runner.run("preflight", selected[0], commands.describe_target_health(fleet, listener))
        try:
            states = commands.target_states(stdout, list(fleet.hosts), listener)
        except StatusError as err:
            problems.append(str(err))
            continue
        problems += [
            f"{name} ({listener}: {state})"
            for name, state in states.items()
            if state != "healthy" and not (state == commands.NOT_REGISTERED and name in chosen)
        ]
    return problems


def execute(fleet: Fleet, settings: Settings, runner: Runner, plan: list[list[Host]]) -> list[Outcome]:
    """Runs the batches in order, the hosts of a batch in parallel; after a batch with a
    failure, the remaining batches stay untouched."""
    outcomes = [Outcome(host) for batch in plan for host in batch]
    by_host = {o.host.name: o for o in outcomes}
    for number, batch in enumerate(plan, 1):
        print(f"== batch {number}/{len(plan)}: {', '.join(h.name for h in batch)}", flush=True)
        try:
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                list(pool.map(lambda h: roll_host(fleet, settings, runner, by_host[h.name]), batch))
        except KeyboardInterrupt:
            # Ctrl-C reached the running commands too (same process group): each host of the
            # batch has recorded the step it failed at; leaving the pool waited for them.
            print(f"== interrupted during batch {number}", flush=True)
            break
        if any(by_host[h.name].state == "failed" for h in batch):
            print(f"== stopping after batch {number}: a host failed", flush=True)
            break
    return outcomes
