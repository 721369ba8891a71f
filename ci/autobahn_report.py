"""Judges an Autobahn|Testsuite fuzzingclient run (wstest exits 0 even when cases fail).

Reads REPORT_DIR/index.json and each case's report, prints RESULT lines (case counts by
behaviour, the NON-STRICT and INFORMATIONAL cases, the close codes the server sent when it had
to fail the connection) and exits 1 when a case FAILED, when a case other than the two known
ones is NON-STRICT, or when the server failed a connection without a close code wstest accepts
(for example dropping TCP instead of closing with 1002 or 1007). Case reports are read with
Python's json, which accepts the lone surrogate escapes the UTF-8 cases contain.

    python3 autobahn_report.py REPORT_DIR AGENT
"""

import json
import sys
from collections import Counter
from pathlib import Path

BEHAVIOURS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
MIN_CASES = 250
# Invalid UTF-8 in the middle of one text frame sent in chops: tungstenite validates a frame
# only once all of it has arrived, so the connection fails at the end of the frame instead of
# at the first bad byte ("fail fast"). Any other NON-STRICT case is a regression.
KNOWN_NON_STRICT = {"6.4.3", "6.4.4"}


def case_order(case_id):
    return [int(part) for part in case_id.split(".")]


def main(report_dir, agent):
    index = json.loads((report_dir / "index.json").read_text())[agent]
    cases = {case_id: json.loads((report_dir / entry["reportfile"]).read_text()) for case_id, entry in index.items()}
    ids = sorted(cases, key=case_order)
    behaviour = Counter(case["behavior"] for case in cases.values())
    print(f"RESULT autobahn: {len(ids)} cases: " + ", ".join(f"{b} {behaviour[b]}" for b in BEHAVIOURS))
    for name in ["NON-STRICT", "INFORMATIONAL"]:
        listed = [i for i in ids if cases[i]["behavior"] == name]
        if listed:
            print(f"RESULT autobahn: {name} cases: {' '.join(listed)}")

    # The cases where the server, not wstest, must close: the code it sent.
    server_closes = [i for i in ids if not cases[i]["expectedClose"]["closedByMe"]]
    codes = Counter(str(cases[i]["remoteCloseCode"] or "none (no close frame)") for i in server_closes)
    print(f"RESULT autobahn: {len(server_closes)} cases where the server fails the connection, close codes: "
          + ", ".join(f"{code} x{n}" for code, n in sorted(codes.items())))

    problems = [f"case {i} FAILED: {cases[i]['result']}" for i in ids if cases[i]["behavior"] == "FAILED"]
    problems += [
        f"case {i} is NON-STRICT: {cases[i]['result']}"
        for i in ids
        if cases[i]["behavior"] == "NON-STRICT" and i not in KNOWN_NON_STRICT
    ]
    problems += [
        f"case {i}: the server closed with {cases[i]['remoteCloseCode']}, "
        f"expected one of {cases[i]['expectedClose']['closeCode']}"
        for i in server_closes
        if cases[i]["remoteCloseCode"] not in cases[i]["expectedClose"]["closeCode"]
    ]
    if len(ids) < MIN_CASES:
        problems.append(f"only {len(ids)} cases in the report")
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
