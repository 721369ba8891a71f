"""docs/deploy.md's table of deploy scenarios, from the reports one run of the deploy suite
leaves (ci/deploy/scenarios.sh: NAME.traffic.json from ci/deploy/traffic.py, NAME.deploy.json
from `wsctl --json`). The suite prints it at its end and writes it to
target/ci/logs/deploy-table.md; paste that into docs/deploy.md.

    python3 ci/deploy/table.py WORK_DIR
"""

import json
import sys
from pathlib import Path

# (report name, row label), in the order the suite runs them.
SCENARIOS = [
    ("health-fail", "green never ready"),
    ("load-fail", "green fails the load test"),
    ("crash", "green killed once routed"),
    ("interrupted", "operator interrupts (SIGINT)"),
    ("normal", "normal blue -> green"),
    ("rollback", "rollback green -> blue"),
    ("gradual", "gradual, 3 steps"),
]
# wsctl's exit code for each outcome (docs/deploy.md, "Exit codes").
EXIT_CODES = {"succeeded": 0, "rolled-back": 1, "refused": 2, "needs-operator": 4}
HEADER = ["scenario", "wsctl", "failed connection attempts", "reconnects", "longest gap",
          "unanswered messages", "deploy time"]


def row(work: Path, name: str, label: str) -> list[str]:
    traffic = json.loads((work / f"{name}.traffic.json").read_text())
    deploy = json.loads((work / f"{name}.deploy.json").read_text())
    wsctl = f"exit {EXIT_CODES[deploy['outcome']]}"
    if deploy.get("failedStep"):
        wsctl += f", at {deploy['failedStep']}"
    clients, messages = traffic["clients"], traffic["messages"]
    attempts = traffic["new"]["attempts"] + clients["opened"]
    gap = f"{clients['longest_gap_s']:.2f} s" if clients["reconnects"] else "-"
    return [label, wsctl, f"{traffic['failed_attempts']} of {attempts}", str(clients["reconnects"]), gap,
            f"{messages['lost']} of {messages['sent']}", f"{deploy['totalSeconds']:.1f} s"]


def table(work: Path) -> str:
    """The rows of the scenarios run: the direct data path has no gradual deploy (refused),
    so its run leaves no report for it."""
    run = [(name, label) for name, label in SCENARIOS
           if name != "gradual" or (work / f"{name}.traffic.json").exists()]
    rows = [HEADER, ["---"] * len(HEADER)] + [row(work, name, label) for name, label in run]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def main() -> int:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print(table(Path(sys.argv[1])))
    except (OSError, KeyError, ValueError) as err:
        print(f"table.py: incomplete reports in {sys.argv[1]}: {err!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
