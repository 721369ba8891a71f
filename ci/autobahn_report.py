"""Judges an Autobahn|Testsuite fuzzingclient run (wstest exits 0 even when cases fail).

Reads REPORT_DIR/index.json and each case's report, prints RESULT lines (case counts by
behaviour and by closing behaviour, the NON-STRICT and INFORMATIONAL cases, the close codes the
server sent when it had to fail the connection) and exits 1 when:
  - a case FAILED, or is UNIMPLEMENTED (12.* and 13.*, permessage-deflate, must be excluded
    from the run rather than reported so);
  - a case is NON-STRICT and not listed with --allow-non-strict, or a listed case is no longer
    NON-STRICT (the list must name exactly the NON-STRICT cases, so a new one fails and a
    fixed one is dropped from it);
  - Autobahn's verdict on the closing handshake (`behaviorClose`) is other than OK or
    INFORMATIONAL: FAILED (wrong endpoint closed, or no handshake), UNCLEAN, WRONG CODE, or
    FAILED BY CLIENT (wstest had to drop the TCP connection the server should have closed);
  - the server failed a connection without a close code wstest accepts (for example dropping
    TCP instead of closing with 1002 or 1007);
  - the report holds fewer than MIN_CASES cases.
Case reports are read with Python's json, which accepts the lone surrogate escapes the UTF-8
cases contain.

    python3 autobahn_report.py REPORT_DIR AGENT [--allow-non-strict CASE...]
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
CLOSE_BEHAVIOURS = ["OK", "INFORMATIONAL", "FAILED BY CLIENT", "WRONG CODE", "UNCLEAN", "FAILED"]
GOOD_CLOSE = {"OK", "INFORMATIONAL"}
MIN_CASES = 250


def case_order(case_id):
    return [int(part) for part in case_id.split(".")]


def load(report_dir, agent):
    """{case id: case report} of one agent."""
    index = json.loads((report_dir / "index.json").read_text())[agent]
    return {case_id: json.loads((report_dir / entry["reportfile"]).read_text()) for case_id, entry in index.items()}


def summary(cases, ids):
    """The RESULT lines: counts, the cases worth naming, the server's close codes."""
    behaviour = Counter(case["behavior"] for case in cases.values())
    closing = Counter(case["behaviorClose"] for case in cases.values())
    lines = [
        f"{len(ids)} cases: " + ", ".join(f"{b} {behaviour[b]}" for b in BEHAVIOURS),
        "closing handshake: " + ", ".join(f"{b} {closing[b]}" for b in CLOSE_BEHAVIOURS),
    ]
    for name in ["NON-STRICT", "INFORMATIONAL"]:
        listed = [i for i in ids if cases[i]["behavior"] == name]
        if listed:
            lines.append(f"{name} cases: {' '.join(listed)}")
    server_closes = [i for i in ids if not cases[i]["expectedClose"]["closedByMe"]]
    codes = Counter(str(cases[i]["remoteCloseCode"] or "none (no close frame)") for i in server_closes)
    lines.append(f"{len(server_closes)} cases where the server fails the connection, close codes: "
                 + ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())))
    return lines


def problems(cases, ids, allowed_non_strict):
    """Every reason to fail the run, one line each."""
    found = [f"case {i} {cases[i]['behavior']}: {cases[i]['result']}"
             for i in ids if cases[i]["behavior"] in ("FAILED", "UNIMPLEMENTED")]
    non_strict = {i for i in ids if cases[i]["behavior"] == "NON-STRICT"}
    found += [f"case {i} is NON-STRICT: {cases[i]['result']}" for i in ids if i in non_strict - allowed_non_strict]
    found += [f"case {i} is allowed NON-STRICT but is {cases[i]['behavior'] if i in cases else 'not in the report'}: "
              "drop it from --allow-non-strict" for i in sorted(allowed_non_strict - non_strict, key=case_order)]
    found += [f"case {i} closing handshake {cases[i]['behaviorClose']}: {cases[i]['resultClose']}"
              for i in ids if cases[i]["behaviorClose"] not in GOOD_CLOSE]
    found += [
        f"case {i}: the server closed with {cases[i]['remoteCloseCode']}, "
        f"expected one of {cases[i]['expectedClose']['closeCode']}"
        for i in ids
        if not cases[i]["expectedClose"]["closedByMe"]
        and cases[i]["remoteCloseCode"] not in cases[i]["expectedClose"]["closeCode"]
    ]
    if len(ids) < MIN_CASES:
        found.append(f"only {len(ids)} cases in the report, expected at least {MIN_CASES}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("report_dir", type=Path, help="wstest's outdir (holds index.json)")
    parser.add_argument("agent", help="the server's agent name in index.json")
    parser.add_argument("--allow-non-strict", nargs="*", default=[], metavar="CASE",
                        help="case ids that are NON-STRICT, each for a reason the caller states")
    args = parser.parse_args()
    cases = load(args.report_dir, args.agent)
    ids = sorted(cases, key=case_order)
    for line in summary(cases, ids):
        print(f"RESULT autobahn: {line}")
    found = problems(cases, ids, set(args.allow_non_strict))
    for problem in found:
        print(f"FAIL {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
