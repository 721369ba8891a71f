"""Runs the attacks of issue 14 against the release binary on loopback, one server per attack,
each bounded in time, with honest clients echoing alongside; prints per attack its RESULT line
and every check, then a summary. Exit status 0 when every selected attack passed, 1 when one
failed, 2 on bad usage.

    python -m attacks --bin target/ci/bin/concurrent-socket --work-dir /tmp/attacks
    python -m attacks --bin ... --only 1 7      # some attacks
    python -m attacks --list                    # what each attack asserts
"""

import argparse
import asyncio
import logging
import sys
import time
import traceback
from pathlib import Path

from .catalog import ATTACKS
from .context import Context
from .harness import Report, raise_open_files_limit


def parse_args():
    parser = argparse.ArgumentParser(prog="python -m attacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, help="the concurrent-socket release binary")
    parser.add_argument("--work-dir", type=Path, help="server logs go here")
    parser.add_argument("--only", type=int, nargs="+", metavar="N", help="run only these attacks")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")
    args = parser.parse_args()
    known = {a.number for a in ATTACKS}
    unknown = sorted(set(args.only or ()) - known)
    if unknown:
        parser.error(f"no attack numbered {unknown}; there are {sorted(known)}")
    if not args.list and (args.bin is None or args.work_dir is None):
        parser.error("--bin and --work-dir are required")
    if args.bin and not args.bin.is_file():
        parser.error(f"--bin {args.bin}: no such file")
    return args


async def run_one(attack, binary, workdir):
    report = Report(attack.number, attack.name)
    context = Context(binary, workdir, report)
    started = time.monotonic()
    bound = asyncio.timeout(attack.limit)
    try:
        async with bound:
            await attack.run(context)
    except Exception as e:
        if bound.expired():
            report.check(f"the attack finished within its {attack.limit:.0f} s bound", False,
                         "cut short: see the server log in the work dir")
        else:
            where = " | ".join(traceback.format_exc(limit=-2).strip().splitlines()[-4:])
            report.check("the attack ran to completion", False, f"{type(e).__name__}: {e} at {where}")
    finally:
        if report.honest is not None:
            await report.honest.stop()  # before the servers go: leaving is not a failure
            report.check("honest clients: 0 failures", not report.honest.failures,
                         "; ".join(report.honest.failures[:3]) or "none")
        context.close()
    report.seconds = time.monotonic() - started
    return report


def print_report(report):
    print(report.result_line())
    for check in report.checks:
        print(f"    {'ok  ' if check.ok else 'FAIL'} {check.what}: {check.detail}")
    print(f"  attack {report.number} {report.name}: {'PASSED' if report.passed else 'FAILED'} "
          f"in {report.seconds:.1f} s", flush=True)


def main():
    args = parse_args()
    selected = [a for a in ATTACKS if not args.only or a.number in args.only]
    if args.list:
        for attack in selected:
            print(f"{attack.number:2d} {attack.name}: {attack.asserts}")
        return 0
    raise_open_files_limit()
    # Writes to sockets the server reset are expected here, not worth a warning each.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    for attack in selected:
        print(f"--- attack {attack.number} {attack.name}: {attack.asserts}", flush=True)
        report = asyncio.run(run_one(attack, args.bin.resolve(), args.work_dir))
        print_report(report)
        reports.append(report)
    print("\nsummary:")
    for r in reports:
        failed = [c.what for c in r.checks if not c.ok]
        print(f"  {r.number:2d} {r.name:<22} {'PASSED' if r.passed else 'FAILED'} {r.seconds:5.1f} s"
              + (f"  failed: {'; '.join(failed)}" if failed else ""))
    failed = [r for r in reports if not r.passed]
    print(f"attacks: {len(reports) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
