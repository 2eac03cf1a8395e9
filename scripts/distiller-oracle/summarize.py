#!/usr/bin/env python3
"""Write expected/INDEX.json: per (definitions, flavour) whether the
reference loaded the definitions (and its error if not), the counts of
events / dropped / errors, and the exact package versions used."""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--status", action="append", default=[])
    ap.add_argument("--freeze", action="append", default=[])
    a = ap.parse_args()
    index = {"pairs": {}, "versions": {}}
    outdir = os.path.dirname(a.out)
    for item in a.status:
        flavour, path = item.split("=", 1)
        with open(path) as f:
            status = json.load(f)
        for defs, st in status.items():
            entry = dict(st)
            if st.get("loaded"):
                with open(os.path.join(outdir, st["output"])) as f:
                    res = json.load(f)
                entry["samples"] = len(res)
                entry["events"] = sum("event_type" in v for v in res.values())
                entry["dropped"] = sum("dropped" in v for v in res.values())
                entry["errors"] = sum("error" in v for v in res.values())
            index["pairs"]["%s under %s" % (defs, flavour)] = entry
    for item in a.freeze:
        flavour, pip = item.split("=", 1)
        out = subprocess.check_output(
            [pip, "freeze", "--disable-pip-version-check"]).decode()
        index["versions"][flavour] = sorted(
            line for line in out.splitlines() if line.strip())
    oc.write_json(a.out, index)


if __name__ == "__main__":
    main()
