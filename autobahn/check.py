#!/usr/bin/env python3
"""Checks an Autobahn fuzzingclient report.

Usage: check.py INDEX_JSON NAME CASE_SET
Prints one summary line; lists every offending case before it; exits 1 on
any case that is not OK (INFORMATIONAL is accepted only for the cases listed
in expected.json), or when fewer cases ran than the case set has.
"""
import collections
import json
import os
import sys

def main():
    index_path, name, case_set = sys.argv[1], sys.argv[2], sys.argv[3]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "expected.json")) as f:
        expected = json.load(f)
    informational = set(expected["informational_only"])
    want = expected["case_counts"][case_set]
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn {name}: no readable report at {index_path}: {e}")
        return 1
    cases = {}
    for agent_cases in index.values():
        cases.update(agent_cases)
    verdicts = collections.Counter()
    closes = collections.Counter()
    offenders = []
    for case_id in sorted(cases, key=lambda c: [int(p) for p in c.split(".")]):
        r = cases[case_id]
        b, bc = r.get("behavior"), r.get("behaviorClose")
        verdicts[b] += 1
        closes[bc] += 1
        allowed = {"OK"} | ({"INFORMATIONAL"} if case_id in informational else set())
        if b not in allowed or bc not in allowed:
            detail = ""
            report = os.path.join(os.path.dirname(index_path), r.get("reportfile", ""))
            try:
                with open(report) as f:
                    rep = json.load(f)
                detail = f" -- {rep.get('description', '')} expected: {rep.get('expectation', '')} result: {rep.get('result', '')}"
            except (OSError, ValueError):
                pass
            offenders.append(f"  {case_id}: behavior={b} close={bc}{detail}")
    other = sum(n for v, n in verdicts.items() if v not in ("OK", "INFORMATIONAL", "NON-STRICT", "FAILED", "UNIMPLEMENTED"))
    print("\n".join(offenders))
    close_ok = closes.get("OK", 0) + closes.get("INFORMATIONAL", 0)
    print(
        f"autobahn {name}: {len(cases)} cases: {verdicts.get('OK', 0)} OK, "
        f"{verdicts.get('INFORMATIONAL', 0)} INFORMATIONAL, {verdicts.get('NON-STRICT', 0)} NON-STRICT, "
        f"{verdicts.get('FAILED', 0)} FAILED, {verdicts.get('UNIMPLEMENTED', 0)} UNIMPLEMENTED, {other} other; "
        f"close: {close_ok} OK"
    )
    if offenders:
        return 1
    if len(cases) < want:
        print(f"autobahn {name}: only {len(cases)} of {want} cases ran")
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
