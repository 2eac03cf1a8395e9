#!/usr/bin/env python3
"""Oracle for winchester-core's ISO-8601 parser: Python's iso8601 2.1.0.

StackDistiller (and ceilometer through oslo.utils) parse notification
timestamps and `datetime` traits with `iso8601.parse_date` and normalise the
result to UTC. This script records what that does for many strings, so that
winchester-core can be checked against it (crates/winchester-core/tests/
iso8601_oracle.rs).

Usage (with a python that has `iso8601==2.1.0` installed):

    python iso8601_cases.py            # rewrite tests/fixtures/distiller/iso8601-cases.json
    python iso8601_cases.py --serve    # stdin: JSON array of strings; stdout: JSON array of results

A result is the UTC value as `YYYY-MM-DDTHH:MM:SS.ffffff`, or null when
iso8601 refuses the string (any exception, including OverflowError from the
conversion to UTC, counts as a refusal).
"""

import datetime
import importlib.metadata
import json
import os
import random
import sys

import iso8601

VERSION = "2.1.0"
SEED = 20150925
GENERATED = 6000


def oracle(s):
    try:
        d = iso8601.parse_date(s)
        u = d.astimezone(datetime.timezone.utc)
    except Exception:
        return None
    return u.replace(tzinfo=None).isoformat(timespec="microseconds")


# Timestamps as OpenStack services send them (nova, glance, cinder, neutron,
# ceilometer, oslo.messaging), plus a few with zones.
REAL = [
    "2015-09-25 15:41:14.634363",
    "2015-09-25 1541:14.634363",
    "2013-08-08 21:06:37.803826",
    "2014-08-01T20:04:00Z",
    "2014-08-01T20:04:30.803826Z",
    "2015-01-30T16:38:43.233621",
    "2015-01-30T16: 38: 43.233621",
    "2012-05-08T20:23:48.028195",
    "2012-05-08 20:23:41.425105",
    "2014-08-01T20:04:00.123+02:00",
    "2014-08-01T20:04:00-0130",
    "2016-02-29T23:59:59.999999-05:30",
    "2015-06-18T08:43:51+00:00",
    "2014-08-01",
    "2014-08-01 00:00:00",
    "2017-12-31T23:59:60Z",
    "2015-09-25T15:41:14.634363+05:45",
]

EDGE = [
    # empty, whitespace, case
    "", " ", "\n", "2015", "2015\n", "2015\n\n", "\n2015", " 2015-09-25", "2015-09-25 ",
    "2015-09-25\n", "2015-09-25\r\n", "2015-09-25\t", "2015-09-25T15:41:14Z\n",
    "2015-09-25T15:41:14Z \n", "2015-09-25t15:41:14Z", "2015-09-25T15:41:14z",
    "2015-09-25T15:41:14 Z", "2015-09-25  15:41:14", "2015-09-25_15:41:14",
    # date forms
    "201509", "201509\n", "20150925", "2015-09", "2015-9", "2015-9-5", "2015-09-5",
    "2015-0925", "201509-25", "2015-925", "2015-092", "2015-0920", "2015-1",
    "2015-13", "2015-00", "2015-12-32", "2015-02-29", "2016-02-29", "1900-02-29",
    "2000-02-29", "2015-02-30", "2015-04-31", "2015-09-00", "0000-01-01", "0001-01-01",
    "9999-12-31", "10000-01-01", "999-01-01", "2015-09-25-", "2015--09-25",
    "2015-09-25T", "2015-09-25 ", "20150925T154114", "20150925T1541", "20150925T15",
    "20150925 154114.5Z", "2015092515:41", "201509251541",
    # times
    "2015-09-25T15", "2015-09-25T1", "2015-09-25T154", "2015-09-25T15:4",
    "2015-09-25T15:41", "2015-09-25T1541", "2015-09-25T15411", "2015-09-25T154114",
    "2015-09-25T1541145", "2015-09-25T15:41:4", "2015-09-25T15:41:", "2015-09-25T15::41",
    "2015-09-25T15:41::14", "2015-09-25T15:41.5", "2015-09-25T15.5", "2015-09-25T15:41:14.",
    "2015-09-25T15:41:14,5", "2015-09-25T15:41:14.5.6", "2015-09-25T15:4114.5",
    "2015-09-25T15:41:1.5", "2015-09-25T24:00:00", "2015-09-25T23:60:00",
    "2015-09-25T23:59:60", "2015-09-25T23:59:59.999999", "2015-09-25T99:99:99",
    "2015-09-25T00:00:00", "2015-09-25 1541:14.634363", "2015-01-30T16: 38: 43.233621",
    "2015-09-25T 15:41:14", "2015-09-25T15 :41:14", "2015-09-25 15:41:14 .5",
    # fractions
    "2015-09-25T15:41:14.0", "2015-09-25T15:41:14.1", "2015-09-25T15:41:14.12",
    "2015-09-25T15:41:14.1234567", "2015-09-25T15:41:14.9999999",
    "2015-09-25T15:41:14.0000005", "2015-09-25T15:41:14.00000049",
    "2015-09-25T15:41:14.123456789012", "2015-09-25T15:41:14." + "9" * 21,
    "2015-09-25T15:41:14." + "9" * 22, "2015-09-25T15:41:14." + "9" * 30,
    "2015-09-25T15:41:14." + "9" * 60, "2015-09-25T15:41:14.0000009" + "9" * 30,
    "2015-09-25T15:41:14.000000" + "9" * 28, "2015-09-25T15:41:14.000000" + "9" * 21,
    "2015-09-25T15:41:14.000000" + "9" * 22, "2015-09-25T15:41:14.000001" + "9" * 30,
    "2015-09-25T15:41:14.0000" + "9" * 24 + "5", "2015-09-25T15:41:14.0000" + "9" * 21 + "4",
    "2015-09-25T15:41:14.0000" + "9" * 21 + "5", "2015-09-25T15:41:14.0000" + "9" * 21 + "6",
    "2015-09-25T15:41:14.0000" + "9" * 20 + "85", "2015-09-25T15:41:14.0000" + "9" * 20 + "75",
    "2015-09-25T15:41:14.0000" + "9" * 20 + "850", "2015-09-25T15:41:14.0000" + "9" * 20 + "851",
    "2015-09-25T15:41:14.00000" + "9" * 21 + "5", "2015-09-25T15:41:14.00000" + "9" * 20 + "85",
    "2015-09-25T15:41:14.1" + "0" * 40 + "1", "2015-09-25T15:41:14." + "0" * 80,
    "2015-09-25T15:41:14." + "0" * 50 + "9" * 30, "2015-09-25T23:59:59." + "9" * 40,
    "9999-12-31T23:59:59." + "9" * 40 + "Z",
    # zones
    "2015-09-25T15:41:14+05", "2015-09-25T15:41:14+5", "2015-09-25T15:41:14+0530",
    "2015-09-25T15:41:14+05:30", "2015-09-25T15:41:14+05:", "2015-09-25T15:41:14+05:3",
    "2015-09-25T15:41:14+053", "2015-09-25T15:41:14-00:00", "2015-09-25T15:41:14+00",
    "2015-09-25T15:41:14+23:59", "2015-09-25T15:41:14+23:60", "2015-09-25T15:41:14+05:99",
    "2015-09-25T15:41:14-05:99", "2015-09-25T15:41:14+22:99", "2015-09-25T15:41:14+23:99",
    "2015-09-25T15:41:14+24:00", "2015-09-25T15:41:14-24:00", "2015-09-25T15:41:14+99:99",
    "2015-09-25T15:41:14+0099", "2015-09-25T15:41:14+00:01", "2015-09-25T15:41:14Z+01",
    "2015-09-25T15:41:14+01Z", "2015-09-25T15:41:14ZZ", "2015-09-25T15:41:14UTC",
    "2015-09-25T15:41:14 +01:00", "2015-09-25T15:41:14+01:00:00", "2015-09-25T15:41:14+01::00",
    "2015-09-25T15:41:14.5+01", "2015-09-25T15:41:14.+01", "2015-09-25T15Z", "2015-09-25T15+01",
    "2015-09-25T1541-05", "2015-09-25T15-0530", "2015-09-25T15:41-05:30", "2015-09-25Z",
    "2015-09-25+01:00", "2015Z", "2015-09-25T15:41:14−05:00", "2015-09-25T15:41:14+05:30\n",
    # range at the ends of UTC
    "0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00-00:01", "0001-01-01T00:00:00Z",
    "0001-01-01T23:00:00+23:00", "0001-01-01T22:59:59+23:00", "0001-01-01",
    "9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59+00:01", "9999-12-31T23:59:59.999999Z",
    "9999-12-31T00:00:00-23:59", "9999-12-31T00:00:00-23:99", "9999-12-31T00:00:00-22:99",
    "0001-01-01T00:00:00-00:00",
    # non-ASCII digits and look-alikes
    "٢٠١٥-٠٩-٢٥", "2015-09-25T15:41:1٤", "２０１５-09-25", "2015-09-25T15:41:14.٣",
    "2015-09-25T15:41:14.6343٦3", "2015-0٩-25", "2015-09-25T15:41:14+0٥:00",
    "𝟚𝟘𝟙𝟝-09-25", "2015-09-25\u00a015:41:14", "2015-09-25\u200315:41:14", "2015-09-25T15:41:14\u00a0",
    "2015-09-25T15:41:14é", "é2015-09-25", "2015‐09‐25", "2015-09-25T15：41：14",
    "2015-09-25T15:41:14.634363\x00", "\x002015-09-25", "2015-09-25\x0015:41:14",
    # other junk
    "yesterday", "now", "1443195674", "1443195674.634363", "2015/09/25 15:41:14",
    "25-09-2015", "2015-09-25T15:41:14.634363+05:30 extra", "2015-W39-5", "2015-268",
    "+2015-09-25", "-2015-09-25", "2015-09-25T15:41:14.634363Z[UTC]",
]


ALPHABET = (
    list("0123456789") * 3
    + list(" :-+.,TtZz\n\t")
    + ["٣", "٠", "０", "𝟙", "é", "\u00a0", "\x00", "/", "_", "W", "−"]
)


def mutate(rng, s):
    chars = list(s)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        op = rng.randrange(4)
        i = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op == 1:
            chars.insert(i, rng.choice(ALPHABET))
        elif op == 2 and chars:
            chars[min(i, len(chars) - 1)] = rng.choice(ALPHABET)
        else:
            # swap two neighbours
            if len(chars) >= 2:
                j = min(i, len(chars) - 2)
                chars[j], chars[j + 1] = chars[j + 1], chars[j]
    return "".join(chars)


def digits(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def num(rng, lo, hi, width):
    return str(rng.randint(lo, hi)).zfill(width)


def pick(rng, good, *odd):
    """Mostly `good`, sometimes one of `odd` (all are callables)."""
    if not odd or rng.random() < 0.85:
        return good()
    return rng.choice(odd)()


def structured(rng):
    """A string built from the grammar's pieces, mostly valid, with odd values."""
    out = pick(rng, lambda: num(rng, 1990, 2030, 4), lambda: num(rng, 1, 9999, 4), lambda: "0000",
               lambda: "9999", lambda: "0001")
    if rng.random() < 0.03:
        return out
    dash = rng.random() < 0.85
    out += ("-" if dash else "") + pick(rng, lambda: num(rng, 1, 12, 2), lambda: num(rng, 1, 9, 1),
                                        lambda: num(rng, 0, 19, 2), lambda: "02")
    if rng.random() < 0.03:
        return out
    out += ("-" if rng.random() < 0.85 else "") + pick(
        rng, lambda: num(rng, 1, 28, 2), lambda: num(rng, 28, 31, 2), lambda: num(rng, 1, 9, 1),
        lambda: num(rng, 0, 39, 2))
    if rng.random() < 0.07:
        return out
    out += pick(rng, lambda: rng.choice("T "), lambda: "t", lambda: "  ")
    out += pick(rng, lambda: num(rng, 0, 23, 2), lambda: num(rng, 0, 29, 2), lambda: num(rng, 0, 9, 1))
    sep = lambda: pick(rng, lambda: ":", lambda: "")  # noqa: E731
    sixty = lambda: pick(rng, lambda: num(rng, 0, 59, 2), lambda: num(rng, 0, 69, 2),  # noqa: E731
                         lambda: num(rng, 0, 9, 1))
    if rng.random() < 0.9:
        out += sep() + sixty()
    if rng.random() < 0.8:
        out += sep() + sixty()
        if rng.random() < 0.7:
            n = rng.choice([0, 1, 3, 6, 6, 6, 6, 6, 7, 9, 12, 21, 22, 25, 30])
            frac = digits(rng, n)
            if rng.random() < 0.15:
                frac = rng.choice(["9", "0"]) * n
            elif rng.random() < 0.1 and n > 7:
                frac = "999999" + rng.choice("0123456789") * (n - 6)
            out += pick(rng, lambda: ".", lambda: ",") + frac
    r = rng.random()
    if r < 0.3:
        out += pick(rng, lambda: "Z", lambda: "z")
    elif r < 0.7:
        out += rng.choice("+-") + pick(rng, lambda: num(rng, 0, 14, 2), lambda: num(rng, 0, 99, 2),
                                       lambda: num(rng, 0, 9, 1))
        if rng.random() < 0.85:
            out += sep()
            if rng.random() < 0.9:
                out += pick(rng, lambda: rng.choice(["00", "30", "45"]), lambda: num(rng, 0, 99, 2),
                            lambda: num(rng, 0, 9, 1))
    return out


def generated():
    rng = random.Random(SEED)
    out = []
    for _ in range(GENERATED):
        r = rng.random()
        if r < 0.35:
            out.append(mutate(rng, rng.choice(REAL)))
        elif r < 0.9:
            s = structured(rng)
            out.append(mutate(rng, s) if rng.random() < 0.3 else s)
        else:
            out.append(mutate(rng, mutate(rng, rng.choice(EDGE) or rng.choice(REAL))))
    return out


def write_cases(path):
    seen = set()
    cases = []
    for s in REAL + EDGE + generated():
        if s in seen:
            continue
        seen.add(s)
        cases.append([s, oracle(s)])
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(f'  "oracle": "python iso8601 {VERSION} (parse_date, then astimezone(UTC))",\n')
        f.write('  "generator": "scripts/distiller-oracle/iso8601_cases.py",\n')
        f.write(f'  "seed": {SEED},\n')
        f.write('  "cases": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n  ]\n}\n")
    accepted = sum(1 for c in cases if c[1] is not None)
    print(f"{path}: {len(cases)} cases, {accepted} accepted", file=sys.stderr)


def serve():
    strings = json.load(sys.stdin)
    json.dump([oracle(s) for s in strings], sys.stdout)
    sys.stdout.write("\n")


def main():
    found = importlib.metadata.version("iso8601")
    if found != VERSION:
        sys.exit(f"need iso8601 {VERSION}, found {found}")
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    write_cases(os.path.join(root, "tests", "fixtures", "distiller", "iso8601-cases.json"))


if __name__ == "__main__":
    main()
