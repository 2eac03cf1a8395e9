#!/usr/bin/env python3
"""Writes tests/fixtures/yaml-cases.json: YAML documents with what PyYAML's
yaml.safe_load (the original Winchester's reader of every config file) makes
of them, for crates/winchester-core/tests/yaml_oracle.rs to compare the Rust
loader (crates/winchester-core/src/yaml.rs) against.

    python3 -m venv /tmp/yaml && /tmp/yaml/bin/pip install PyYAML==6.0.2
    /tmp/yaml/bin/python scripts/distiller-oracle/yaml_cases.py \
        [--shared ../shared/winchester-etc] [--ceilometer 9.0.6 --ceilometer 27.0.0]

Inputs: the repository's etc/ files, the reference configs in --shared (when
the directory exists), the event_definitions.yaml of each --ceilometer
release (fetched with `pip download --no-deps`), scalar edge cases in three
places (value, key, flow item), duplicate keys, anchors and merges, tags,
syntax errors.

The reference is PyYAML 6.0.2, whose merge keys are those of every PyYAML
the original ran with (of `<<: [*a, *b]`, the first mapping wins; of two `<<`
keys, the last). PyYAML 6.0.4 changed them (merged keys kept by the identity
of their string, so the answer depends on CPython's string interning): the
script refuses a PyYAML that merges otherwise.

Each case: {"name", "text", and either "expect" (the value) or "error"
(PyYAML's message), and "duplicates": [[line, first_line], ...]}: the keys
written twice in one mapping (merge keys aside), 1-based lines.

Values are JSON with tags for what JSON cannot hold: a mapping is
{"$map": [[key, value], ...]} (keys of any type, in order), a float that is
not finite {"$float": "inf" | "-inf" | "nan"}, an integer past 64 bits
{"$bigint": "digits"}, a timestamp {"$timestamp": "text as written"} (PyYAML
makes a datetime; the Rust loader keeps the text), bytes {"$binary": base64},
a set {"$set": [...]}.
"""

import argparse
import base64
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
import tarfile

import yaml
from yaml.nodes import MappingNode, ScalarNode

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Timestamp(str):
    """A scalar PyYAML resolves (and constructs) as a timestamp, as written."""


class Oracle(yaml.SafeLoader):
    """safe_load, with timestamps kept as written and duplicate keys noted."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates = []
        self.checked = set()

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode) and id(node) not in self.checked:
            self.checked.add(id(node))
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, ScalarNode):
                    continue
                try:
                    # A constructor of its own: a key it cannot build must
                    # not leave this one's state half-done.
                    key = yaml.constructor.SafeConstructor().construct_object(key_node, deep=True)
                    hash(key)
                except Exception:
                    continue
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append([line, seen[key]])
                else:
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


def timestamp(loader, node):
    loader.construct_yaml_timestamp(node)  # refuses what PyYAML refuses
    return Timestamp(node.value)


Oracle.add_constructor("tag:yaml.org,2002:timestamp", timestamp)


def enc(x):
    if isinstance(x, Timestamp):
        return {"$timestamp": str(x)}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if -(2**63) <= x < 2**64 else {"$bigint": str(x)}
    if isinstance(x, float):
        if math.isnan(x):
            return {"$float": "nan"}
        if math.isinf(x):
            return {"$float": "inf" if x > 0 else "-inf"}
        return x
    if isinstance(x, (list, tuple)):
        return [enc(i) for i in x]
    if isinstance(x, dict):
        return {"$map": [[enc(k), enc(v)] for k, v in x.items()]}
    if isinstance(x, bytes):
        return {"$binary": base64.b64encode(x).decode()}
    if isinstance(x, (set, frozenset)):
        return {"$set": sorted((enc(i) for i in x), key=json.dumps)}
    raise TypeError(f"cannot encode {type(x).__name__}")


def case(name, text):
    c = {"name": name, "text": text}
    loader = Oracle(text)
    try:
        value = loader.get_single_data()
        c["expect"] = enc(value)
        json.dumps(c["expect"])  # a recursive structure fails here
    except RecursionError:
        c.pop("expect", None)
        c["error"] = "recursive structure"
    except Exception as e:  # noqa: BLE001 - PyYAML refuses: the message is the oracle
        c.pop("expect", None)
        c["error"] = f"{type(e).__name__}: {e}"
    finally:
        loader.dispose()
    c["duplicates"] = sorted(loader.duplicates)
    return c


SCALARS = """
|~|null|Null|NULL|nULL|NuLL|none|None
yes|Yes|YES|yEs|no|No|NO|true|True|TRUE|tRUE|false|False|FALSE|on|On|ON|oN|off|Off|OFF|y|Y|n|N
0|00|01|017|018|09|-017|+017|0o17|0x1f|0X1F|0x1F|-0x1f|+0x1f|0b101|-0b101|0b|0b_|0x_|0b2|0x|0xg
1_000|_1000|1000_|1__0|+1|-1|+0|-0|0_|0_7|0_8|0x_1|0b1_0
1:20|1:20:30|-1:20|+1:20|1:60|1:5|01:20|0:20|1:2:3|190:20:30|20:30|10:00:00|1:|:20|1::20
12345678901234567890|18446744073709551615|18446744073709551616|-9223372036854775808|-9223372036854775809
99999999999999999999999999999999999999999
1.0|1.|.5|-.5|+.5|1.5e3|1.5e+3|1.5E-3|1e3|1e+3|1E+3|1.0e3|.5e+3|.5e3|1_000.5|1.5_5|1.5e+3_0
1:20.5|-1:20.5|1:20.|.inf|.Inf|.INF|.iNf|-.inf|+.inf|.nan|.NaN|.NAN|-.nan|inf|nan|NaN|-inf
1.0e+999|-1.0e+999|0.0|-0.0|1.e+5|1.0.0|1..0|._5|.5_|6.8523015e+5|685.230_15e+03|685_230.15
190:20:30.15|1e-3|1.0e-3|0.1|100.|1_.5
2001-12-14|2001-12-14t21:59:43.10-05:00|2001-12-14 21:59:43.10 -5|2001-12-15T02:59:43.1Z
2001-12-15 2:59:43.10|2015-02-30|2015-1-1|2015-01-01T10:00:00|2015-01-01 10:00|2015-01-01T10:00:00.123456789Z
2015-13-01|2001-12-14 21:59:43.10 +05:30|2001-12-14T21:59:43Z
=|<<|-|+|.|-.|0.0.0.0|1.2.3|v1|yes_|trueish|~x|a b|1 2|0x1f 1|@b|`b`|%a|!|&a b
'yes'|"yes"|'1'|"1.0"|'~'|''|"\\x41\\u00e9"|"\\N"|'it''s'
!!str 1|!!str yes|!!str ~|!!int '1'|!!int 1.5|!!int 0x1f|!!int 0o17|!!int 1_0|!!float '1'|!!float 1e3|!!float .inf
!!float 1|!!float abc|!!bool yes|!!bool 'YES'|!!bool 1|!!null x|!!null ''|! 1|! yes|! a|!foo x|!!binary aGVsbG8=
!!timestamp 2001-12-14|!!timestamp x|!!python/none ''|!!merge x|!<tag:yaml.org,2002:str> 1|!!seq x|!!map x
"""


def scalar_cases():
    out = []
    for line in SCALARS.strip("\n").split("\n"):
        for s in line.split("|"):
            for ctx, text in (("value", f"v: {s}\n"), ("key", f"{s}: v\n"), ("flow", f"[{s}]\n")):
                out.append(case(f"scalar {ctx} {s!r}", text))
    return out


DOCUMENTS = {
    # Duplicate keys.
    "dup simple": "a: 1\nb: 2\na: 3\n",
    "dup three": "a: 1\na: 2\na: 3\n",
    "dup nested trove": (
        "- event_type: trove.*\n  traits: &trove_base_traits\n    state:\n      fields: payload.state_description\n"
        "    instance_type:\n      fields: payload.instance_type\n    state:\n      fields: payload.state\n"
        "- event_type: trove.instance.exists\n  traits:\n    <<: *trove_base_traits\n    display_name:\n"
        "      fields: payload.display_name\n"
    ),
    "dup numbers are equal keys": "1: a\n1.0: b\ntrue: c\n",
    "dup flow": "{a: 1, b: 2, a: 3}\n",
    "dup explicit keys": "? a\n: 1\n? a\n: 2\n",
    "dup quoting": "a: 1\n'a': 2\n\"a\": 3\n",
    "dup nulls": "~: 1\nnull: 2\n",
    "dup bools": "yes: 1\ntrue: 2\non: 3\n",
    "dup ints": "1: a\n0x1: b\n01: c\n",
    "dup keeps place": "a: 1\nb: 2\na: 3\nc: 4\n",
    "dup in list items": "- {a: 1, a: 2}\n- a: 3\n  a: 4\n",
    "dup key with mapping values": "a:\n  x: 1\na:\n  y: 2\n",
    "dup merge keys": "b: &b {x: 1}\nc: &c {x: 2, y: 1}\nm:\n  <<: *b\n  <<: *c\n",
    "dup override of merged key is no dup": "b: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n",
    # Anchors, aliases, merges.
    "alias": "a: &a [1, 2]\nb: *a\n",
    "alias scalar": "a: &a yes\nb: *a\n",
    "alias key": "a: &k key\n*k : v\n",
    "merge one": "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n",
    "merge list precedence": "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nm:\n  <<: [*a, *b]\n",
    "merge chain": "a: &a {x: 1}\nb: &b\n  <<: *a\n  y: 2\nm:\n  <<: *b\n  z: 3\n",
    "merge before own": "b: &b {x: 1}\nm:\n  y: 2\n  <<: *b\n",
    "merge inline map": "m:\n  <<: {x: 1}\n  y: 2\n",
    "merge scalar": "m:\n  <<: 1\n",
    "merge list with scalar": "a: &a {x: 1}\nm:\n  <<: [*a, 2]\n",
    "merge quoted is a key": "m:\n  '<<': {x: 1}\n",
    "merge explicit tag": "b: &b {x: 1}\nm:\n  !!merge <<: *b\n",
    "merge in sequence value": "- <<\n",
    "undefined alias": "a: *nope\n",
    "duplicate anchor": "a: &a 1\nb: &a 2\nc: *a\n",
    "recursive alias": "a: &a [*a]\n",
    "anchor on merge target redefined later": "a: &a {x: 1}\nm: {<<: *a}\na2: &a {x: 2}\nn: {<<: *a}\n",
    # Documents.
    "empty": "",
    "comment only": "# nothing\n",
    "explicit empty document": "---\n",
    "document end only": "...\n",
    "two documents": "---\na: 1\n---\nb: 2\n",
    "yaml 1.1 directive": "%YAML 1.1\n---\na: yes\n",
    "yaml 1.2 directive": "%YAML 1.2\n---\na: yes\n",
    "bom": "\ufeffa: 1\n",
    "top scalar": "just text\n",
    "top list": "- 1\n- two\n",
    # Syntax.
    "unclosed flow": "a: [1, 2\n",
    "mapping in plain": "a: b: c\n",
    "list then map": "- a\nb: c\n",
    "tab indent": "a:\n\tb: 1\n",
    "tab after colon": "a:\t1\n",
    "unclosed quote": "a: 'x\n",
    "bad indentation": "a: 1\n  b: 2\n",
    "complex key list": "? [1, 2]\n: a\n",
    "complex key map": "? {a: 1}\n: b\n",
    "flow pair in list": "[a: 1, b]\n",
    "colon in plain": "url: http://x:80/a\nb: c:d\n",
    "colon no space flow": "{a:1}\n",
    "colon in flow plain": "[a:b, c: d]\n",
    "hash in plain": "a: value # comment\nb: value#not\n",
    "dash value": "a: -1\nb: - x\n",
    "nested lists": "- - a\n  - b\n- - c\n",
    "literal block": "a: |\n  yes\n  1\nb: >\n  folded\n  text\n\n  para\n",
    "block chomping": "a: |-\n  x\nb: |+\n  y\n\nc: >2\n   z\n",
    "multi line plain": "a: one\n  two\n  three\n",
    "multi line quoted": "a: \"one\n  two\"\nb: 'x\n\n  y'\n",
    "escapes": "a: \"\\t\\n\\\\\\\"\\x41\\u00e9\\U0001F600\\0\\a\\b\\e\\f\\r\\v\\/\\ \\_\\L\\P\"\n",
    "bad escape": "a: \"\\q\"\n",
    "long key": "%s: 1\n" % ("k" * 1100),
    "key 1000": "%s: 1\n" % ("k" * 1000),
    "empty values": "a:\nb: ~\nc: ''\n- \n",
    "empty values ok": "a:\nb: ~\nc: ''\n",
    "list of empties": "-\n- \n- ~\n",
    "null key": ": v\n",
    "indented sequence": "a:\n- 1\n- 2\n",
    "flow multi line": "a: [1,\n  2, 3\n]\nb: {x: 1,\n  y: 2}\n",
    "trailing comma": "[1, 2, ]\n",
    "flow empty": "a: []\nb: {}\n",
    "quoted key with colon": "'a: b': 1\n",
    "plain with quotes inside": "a: it's\nb: say \"hi\"\n",
    "unicode": "clé: valeur ☃\n",
    "crlf": "a: 1\r\nb: yes\r\n",
    "question mark plain": "a: ?x\nb: -x\n",
    "reserved": "a: @x\n",
    "backtick": "a: `x`\n",
    "percent in value": "a: 100%\n",
    "star plain": "a: '*'\nb: compute.*\n",
    "set": "!!set {a, b}\n",
    "omap": "!!omap [a: 1, b: 2]\n",
    "pairs": "!!pairs [a: 1, a: 2]\n",
    "tagged map": "!!map {a: 1}\n",
    "tagged seq": "!!seq [1]\n",
    "custom tag map": "!foo {a: 1}\n",
    "tag directive": "%TAG !e! tag:yaml.org,2002:\n---\na: !e!str 1\n",
    "deep flow": "[" * 120 + "]" * 120 + "\n",
}


def document_cases():
    return [case(name, text) for name, text in DOCUMENTS.items()]


def file_cases(shared, ceilometer):
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "etc", "**", "*.yaml"), recursive=True)):
        out.append((os.path.relpath(path, ROOT), path))
    if shared and os.path.isdir(shared):
        for path in sorted(glob.glob(os.path.join(shared, "*.yaml"))):
            out.append(("shared/" + os.path.basename(path), path))
    with tempfile.TemporaryDirectory() as tmp:
        for version in ceilometer:
            d = os.path.join(tmp, version)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"ceilometer=={version}", "-d", d],
                check=True,
            )
            for archive in os.listdir(d):
                a = os.path.join(d, archive)
                if archive.endswith(".whl"):
                    with zipfile.ZipFile(a) as z:
                        names = [n for n in z.namelist() if n.endswith("event_definitions.yaml")]
                        texts = [(n, z.read(n).decode()) for n in names]
                else:
                    with tarfile.open(a) as t:
                        names = [m for m in t.getmembers() if m.name.endswith("event_definitions.yaml")]
                        texts = [(m.name, t.extractfile(m).read().decode()) for m in names]
                for i, (n, text) in enumerate(texts):
                    p = os.path.join(d, f"{i}-event_definitions.yaml")
                    with open(p, "w") as f:
                        f.write(text)
                    out.append((f"ceilometer {version} {n.split('/', 1)[-1]}", p))
        return [case(f"file {name}", open(path).read()) for name, path in out]


def classic_merges():
    """Whether this PyYAML merges as PyYAML up to 6.0.3 (and the YAML 1.1 spec)."""
    m = yaml.safe_load("a: &a {xx: 1, yy: 1}\nb: &b {xx: 2, zz: 2}\nm:\n  <<: [*a, *b]\nn:\n  <<: *a\n  <<: *b\n")
    return m["m"] == {"xx": 1, "yy": 1, "zz": 2} and m["n"] == {"xx": 2, "yy": 1, "zz": 2}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "winchester-etc"))
    ap.add_argument("--ceilometer", action="append", default=None, help="a ceilometer release (repeatable)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "yaml-cases.json"))
    args = ap.parse_args()
    if not classic_merges():
        sys.exit(f"PyYAML {yaml.__version__} merges keys unlike the PyYAML the original ran with; use PyYAML==6.0.2")
    ceilometer = args.ceilometer if args.ceilometer is not None else ["9.0.6", "27.0.0"]
    cases = file_cases(args.shared, ceilometer) + document_cases() + scalar_cases()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    doc = {
        "generator": "scripts/distiller-oracle/yaml_cases.py",
        "pyyaml": yaml.__version__,
        "loader": "yaml.SafeLoader (pure Python; timestamps kept as written)",
        "cases": cases,
    }
    # One case a line: diffs of a regenerated file stay readable.
    with open(args.out, "w") as f:
        head = {k: v for k, v in doc.items() if k != "cases"}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, allow_nan=False) for c in cases))
        f.write("\n]}\n")
    errors = sum("error" in c for c in cases)
    dups = sum(bool(c["duplicates"]) for c in cases)
    print(f"{args.out}: {len(cases)} cases ({errors} refused by PyYAML, {dups} with duplicate keys)")


if __name__ == "__main__":
    main()
