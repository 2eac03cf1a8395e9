#!/usr/bin/env python3
"""Differential cases for winchester-rs field paths (distiller/path.rs).

Records what jsonpath-rw-ext 1.2.2 (on jsonpath-rw 1.4.0), the parser
ceilometer uses for event_definitions.yaml, does with many (path, document)
pairs: a parse error, an error while finding, or the matches as
[str(match.full_path), value] in order.

Setup:
    python3 -m venv /tmp/jp && /tmp/jp/bin/pip install jsonpath-rw-ext==1.2.2 jsonpath-rw==1.4.0 pyyaml
    pip download --no-deps ceilometer==27.0.0 stackdistiller==0.12   # for --definitions
Fixture:
    /tmp/jp/bin/python scripts/distiller-oracle/jsonpath_cases.py \
        --definitions ceilometer/pipeline/data/event_definitions.yaml \
                      stackdistiller-0.12/etc/event_definitions.yaml \
        > tests/fixtures/distiller/jsonpath-cases.json
Live mode (used by crates/winchester-core/tests/jsonpath_oracle.rs when
WINCHESTER_ORACLE_PYTHON is set): --live SEED COUNT writes random cases the same way.

Documents have their object keys sorted: winchester-rs keeps JSON objects in
key order (serde_json without preserve_order), Python in document order, so
`*`, `..` and `sorted` on objects would differ only by that.
"""

import argparse
import ast
import contextlib
import io
import json
import os
import random
import sys

import jsonpath_rw_ext
from jsonpath_rw_ext import parser as ext_parser

VERSION_NOTE = "jsonpath-rw-ext 1.2.2 / jsonpath-rw 1.4.0"


def sort_keys(v):
    if isinstance(v, dict):
        return {k: sort_keys(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [sort_keys(x) for x in v]
    return v


def plain(v):
    """A JSON-safe copy; None when a value cannot be compared faithfully."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v if -(2 ** 63) <= v < 2 ** 64 else None
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else None
    if isinstance(v, list):
        out = [plain(x) for x in v]
        return out
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return None


def bad(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return False
    if isinstance(v, int):
        return not (-(2 ** 63) <= v < 2 ** 64)
    if isinstance(v, float):
        return not (v == v and v not in (float("inf"), float("-inf")))
    if isinstance(v, list):
        return any(bad(x) for x in v)
    if isinstance(v, dict):
        return any(bad(x) for x in v.values())
    return True


_PARSED = {}
_LR = None


def parse_uncached(path):
    """ExtentedJsonPathParser().parse(path), with PLY's tables built once
    (parse() rebuilds them on every call, the same tables each time)."""
    global _LR
    import logging
    import ply.yacc
    from jsonpath_rw.parser import IteratorToTokenStream
    if _LR is None:
        _LR = ply.yacc.yacc(module=ext_parser.ExtentedJsonPathParser(), debug=False, write_tables=0,
                            start="jsonpath", errorlog=logging.getLogger("ply-quiet"))
    tokens = ext_parser.ExtendedJsonPathLexer().tokenize(path)
    return _LR.parse(lexer=IteratorToTokenStream(tokens))


def parse(path):
    if path not in _PARSED:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                _PARSED[path] = parse_uncached(path)
        except Exception:
            _PARSED[path] = None
    return _PARSED[path]


def run(path, doc):
    p = parse(path)
    if p is None:
        return {"parse_error": True}
    try:
        out = []
        for m in p.find(doc):
            fp = str(m.full_path)
            if bad(m.value):
                return {"find_error": "value beyond JSON/64-bit (unsupported)"}
            out.append([fp, m.value])
        return {"matches": out}
    except RecursionError:
        return {"find_error": "RecursionError"}
    except Exception as e:  # noqa
        return {"find_error": type(e).__name__}


# ---------------------------------------------------------------- documents

NOTIFICATION = {
    "event_type": "compute.instance.create.end",
    "message_id": "dae6f69c-00e0-41c0-b371-41ec3b7f4451",
    "publisher_id": "compute.host-1.example.org",
    "timestamp": "2024-01-02 03:04:05.678901",
    "_context_request_id": "req-1",
    "ctxt": {"user_id": "u1", "tenant_id": "t1", "trustor_user_id": None},
    "payload": {
        "instance_id": "i-1",
        "tenant_id": "t1",
        "user_id": "u1",
        "memory_mb": 512,
        "disk_gb": 20.5,
        "state": "active",
        "image_meta": {
            "org.openstack__1__architecture": "x86_64",
            "org.openstack__1__os_distro": "ubuntu",
            "base_image_ref": "img-1",
        },
        "glance_metadata": [
            {"key": "image_id", "value": "img-9"},
            {"key": "image_name", "value": "cirros"},
            {"key": "size", "value": "12"},
            {"key": "min_ram", "value": 64},
        ],
        "volume_attachment": [{"server_id": "s-1", "id": 1}, {"server_id": "s-2", "id": 2}],
        "fixed_ips": [
            {"address": "10.0.0.2", "version": 4, "label": "private"},
            {"address": "fe80::1", "version": 6, "label": "private"},
        ],
        "network": {"id": "net-1"},
        "id": "the-id",
        "name": "x.y.z",
        "objects": [
            {"cow": 2, "cat": 3, "name": "b"},
            {"cow": 5, "cat": 1, "name": "a"},
            {"cow": 2, "cat": 8, "name": "c"},
        ],
        "tags": ["b", "a", "c"],
        "flag": True,
        "nothing": None,
    },
}

README_DOCS = [
    {"cow": "foo", "fish": "bar"},
    {"objects": [{"cow": 2, "cat": 3}, {"cow": 4, "cat": 6}]},
    {"field": "foo+a+b+c", "objects": [{"some_field": 7, "other": 1}, {"some_field": "foobar", "other": 3},
                                      {"some_field": 3, "other": 0}, {"some_field": "regexpz"}]},
    {"foo": 3, "bar": "x", "objects": [{"cow": 1, "cat": 2}, {"cow": 3, "cat": 4}]},
    {"foo": [{"baz": 1}, {"baz": 2}], "bar": {"baz": 3}},
    {"objects": ["alpha", "gamma", "beta"]},
    {"objects": {"cow": "moo", "horse": "neigh", "cat": "meow"}},
    {"objects": [{"cow": "moo", "cat": "neigh"}, {"cow": "-", "cat": "x"}]},
    {"foo": "bar", "fish": "bowl"},
    {"a": {"b": {"c": 1}}, "d": [1, 2, {"c": 3}]},
]

KEYS = ["a", "b", "c", "id", "key", "value", "name", "list", "payload", "a.b", "x y", "cow", "cat", "true", "foo"]
WORDS = ["x", "image_id", "a.b.c", "compute.host1", "10", " 7 ", "-3", "1_0", "abc", "", "A", "1.5", "True", "aXb", "ab\ncd"]


def rand_scalar(r):
    k = r.random()
    if k < 0.3:
        return r.choice(WORDS)
    if k < 0.55:
        return r.randint(-3, 12)
    if k < 0.7:
        return r.choice([0.5, -1.25, 2.0, 3.75, 1e20])
    if k < 0.85:
        return r.choice([True, False])
    return None


HOT_KEYS = ["a", "b", "c", "id", "key", "value", "name", "list"]


def rand_doc(r, depth=0):
    k = r.random()
    if depth >= 4 or (depth > 0 and k < 0.3):
        return rand_scalar(r)
    if k < 0.65:
        pool = HOT_KEYS if r.random() < 0.8 else KEYS
        keys = r.sample(pool, r.randint(0 if depth else 1, 5))
        return {key: rand_doc(r, depth + 1) for key in keys}
    if k < 0.85:
        # a list of similar records (what filters and sorting are for)
        keys = r.sample(HOT_KEYS, r.randint(1, 3))
        return [{key: rand_scalar(r) for key in keys if r.random() < 0.85} for _ in range(r.randint(0, 5))]
    return [rand_doc(r, depth + 1) for _ in range(r.randint(0, 4))]


# ---------------------------------------------------------------- paths

NAMES = ["a", "b", "c", "id", "key", "value", "name", "list", "a", "b", "c", "list", "'a.b'", '"x y"',
         "'true'", "*", "@", "`this`", "$"]


def sp(r):
    return r.choice(["", "", "", " ", "  "])


def rand_value(r):
    return r.choice(["x", "image_id", '"a.b.c"', "'x y'", "10", "-3", "7", "1.5", "true", "false", "abc",
                     '"^a"', '".*b"', '"A|x"', "0", '"ab$"', '"[a-c]+"', '"\\\\d+"'])


def rand_expr(r, depth):
    target = rand_path(r, depth + 1, simple=True)
    if r.random() < 0.3:
        return target
    op = r.choice(["=", "==", "!=", "<", "<=", ">", ">=", "~"])
    return target + sp(r) + op + sp(r) + rand_value(r)


def rand_path(r, depth=0, simple=False):
    k = r.random()
    if depth > 3 or simple or k < 0.35:
        parts = [r.choice(NAMES[:14])]
        for _ in range(r.randint(0, 3)):
            parts.append(r.choice([
                "." + r.choice(NAMES[:14]),
                "." + r.choice(NAMES[:14]),
                "[%d]" % r.randint(-2, 3),
                "[*]", ".*", "['%s']" % r.choice(KEYS), "[%s:%s]" % (r.choice(["", "1", "-1", "0"]), r.choice(["", "2", "-1"])),
            ]))
        if r.random() < 0.2:
            parts.insert(0, "$.")
        return "".join(parts)
    if k < 0.45:
        return rand_path(r, depth + 1) + sp(r) + r.choice([".", "..", "|", " where "]) + sp(r) + rand_path(r, depth + 1)
    if k < 0.55:
        exprs = [rand_expr(r, depth) for _ in range(r.randint(1, 2))]
        return rand_path(r, depth + 1) + "[?" + sp(r) + (sp(r) + "&" + sp(r)).join(exprs) + "]"
    if k < 0.6:
        keys = [r.choice("/\\") + rand_path(r, depth + 1, simple=True) for _ in range(r.randint(1, 2))]
        return rand_path(r, depth + 1) + "[" + ",".join(keys) + "]"
    if k < 0.7:
        op = r.choice(["`len`", "`sorted`", "`split(., 1, 1)`", "`split(., 0, -1)`", "`split(-, 2, 0)`",
                       "`sub(/a/, X)`", "`sub(/(b+)/, <\\\\1>)`", "`sub(/^x*/, Y)`", "`this`", "`parent`",
                       "`sorted`[0]", "`len` + 1"])
        return rand_path(r, depth + 1) + "." + op
    if k < 0.85:
        a = r.choice([rand_path(r, depth + 1), "$." + r.choice(NAMES[:10]), str(r.randint(-2, 5)), "2.5",
                      '"_"', "'s'"])
        b = r.choice([rand_path(r, depth + 1), "$." + r.choice(NAMES[:10]), str(r.randint(0, 5)), "1.5",
                      '"_"'])
        return a + sp(r) + r.choice(["+", "-", "*", " + ", " * "]) + sp(r) + b
    if k < 0.92:
        return "(" + rand_path(r, depth + 1) + ")" + r.choice(["", ".a", "[0]", "[*]"])
    return r.choice(["$", "@", "`this`", "*", "$.*", "$..*", "$..a", "a..[0]", "`len`", "`sorted`", "[0]", "[*]",
                     "['a','b']", "a,b", "a.(b|c)", "a & b"])


SPECIAL = list(".[]()$,:|&?@+-*/\\'\"` =<>!~^#{}\r\t\n0123456789ab")


def mutate(r, p):
    if not p:
        return r.choice(SPECIAL)
    i = r.randrange(len(p) + 1)
    k = r.random()
    if k < 0.4:
        return p[:i] + r.choice(SPECIAL) + p[i:]
    if k < 0.7 and i < len(p):
        return p[:i] + p[i + 1:]
    return p[:i] + r.choice(SPECIAL) + p[i + 1:]


# ---------------------------------------------------------------- fixed paths

FIXED_PATHS = [
    # jsonpath-rw-ext README "Extensions" table and arithmetic examples (RST-escaped and not)
    "$.objects.`len`", r"$.field.`sub(/foo\\\\+(.*)/, \\\\1)`", r"$.field.`sub(/foo\\+(.*)/, \\1)`",
    "$.field.`split(+, 2, -1)`", "$.field.`split(sep, segement, maxsplit)`", "$.objects.`sorted`",
    r"$.objects[\\some_field]", r"$.objects[\some_field]", r"$.objects[\some_field,/other_field]",
    "$.objects[?(@some_field > 5)]", "$.objects[?(@.some_field > 5)]", '$.objects[?(some_field = "foobar")]',
    '$.objects[?(some_field ~ "regexp")]', "$.objects[?(some_field > 5 & other < 2)]", "cow + fish",
    "$.cow + $.fish", '$.cow + "_" + $.fish', '$.cow + "_" + fish',
    # jsonpath-rw-ext README
    "$.objects[0].cow", "$.objects[1].cat", "$.objects[*].cow", "$.foo * 12", "$.objects[*].cow + $.objects[*].cat",
    "$.foo + \"_\" + $.bar", "$.foo + \"_\" + $.fish", "objects[?cow]", "objects[?cow=\"moo\"]", "objects[?cow=moo]",
    "objects[?@.cow>5]", "objects[?cow>5&cat=2]", "objects[/cow]", "objects[\\cat]", "objects[/cow,\\cat]",
    "objects.`sorted`", "objects.`len`", "foo.`sub(/foo\\\\+(.*)/, \\\\1)`", "foo.`split(+, 2, -1)`",
    "cow.`str()`", "$.foo / 2", "foo.baz", "foo[*].baz", "$..baz", "$.*", "*", "foo.`parent`", "$.foo.`parent`.bar",
    # plain jsonpath-rw README
    "foo[*].baz", "foo.bar", "foo.baz", "$.foo[0]", "foo[1:]", "foo[:1]", "foo[-1]", "foo where baz", "(foo|bar).baz",
    "foo|bar", "foo..baz", "foo.`this`", "`this`.foo", "$.`parent`", "a.`parent`.`parent`",
    # ceilometer / StackDistiller shapes
    "payload.glance_metadata[?key=image_id].value", "payload.glance_metadata[?key='image_id'].value",
    "payload.glance_metadata[?key~image].value", "payload.glance_metadata[?value>3]",
    "payload.glance_metadata[?value>=64]", "payload.glance_metadata[?value=12]", "payload.glance_metadata[?value=\"12\"]",
    "payload.glance_metadata[?value = true]", "payload.fixed_ips[?version=4].address",
    "payload.fixed_ips[?version=4 & label=private].address", "payload.fixed_ips[?(version=6)].address",
    "payload.fixed_ips[?((version=6) & address~fe)].address", "publisher_id.`split(., 1, 1)`",
    "publisher_id.`split(., 0, -1)`", "publisher_id.`split(., 5, -1)`", "publisher_id.`split(-, 1, 0)`",
    "publisher_id.`split(.,1,1)`", "publisher_id.`sub(/\\\\./, _)`", "publisher_id.`sub(/compute/, c)`",
    "publisher_id.`sub(/zzz/, c)`", "payload.image_meta.'org.openstack__1__architecture'",
    "payload.image_meta['org.openstack__1__os_distro']", "payload.volume_attachment[0].server_id",
    "payload.volume_attachment[*].server_id", "payload.volume_attachment[-1].id", "payload.objects[/name].name",
    "payload.objects[\\cow,/cat].name", "payload.objects[/cow][0]", "payload.tags.`sorted`", "payload.tags.`len`",
    "payload.memory_mb * 2", "payload.memory_mb + payload.disk_gb", "payload.memory_mb - 1", "payload.disk_gb * 2",
    "payload.name + \"-\" + payload.id", "payload.nothing", "payload.nothing.x", "payload.*", "payload..id",
    "payload..server_id", "$..key", "payload.flag", "payload.trueish", "payload.'true'", "payload.true",
    "ctxt.trustor_user_id", "(ctxt.trustor_user_id)|(ctxt.user_id)", "payload.state where payload",
    "payload.memory_mb[0]", "payload.memory_mb[*]", "payload.state[0]", "payload.state[*]", "payload.state[1:3]",
    "payload.image_meta[0]", "payload.image_meta[*]", "payload.image_meta.`len`", "payload.image_meta.`sorted`",
    "payload.image_meta[/x]", "payload.disk_gb[*]", "payload.nothing[*]", "payload & ctxt", "payload.objects[?cow=2]",
    "payload.objects[?cow>2]", "payload.objects[?name>\"a\"]", "payload.objects[?name<1]", "payload.objects[?name~\"[ab]\"]",
    "payload.objects[?cow~2]", "payload.objects[?cat=1.0]", "payload.objects[?cat<1.5]", "$.`sorted`", "`sorted`",
    "payload.`sorted`", "payload.objects.`sorted`", "payload.tags[/x]", "1 + 2", "1 + 2.5", "1.5 + 2.5", "1 + 2 + 3",
    "1.5 + 2 + 3", "2 * 3", "\"a\" + \"b\"", "a + b", "foo * 3", "* + 1", "payload.memory_mb + 1.b", "$", "@", "",
    " ", "payload.", ".payload", "payload..", "payload[", "payload[x", "payload['x]", "a b", "a]", "$x", "a[1:2:3]",
    "a[?]", "a[?b=]", "a[?b=$.c]", "a[?b ~ ^x]", "`unknown`", "`split(x)`", "`sub(/a/,b)`", "`sub(/(/, b)`",
    "a.`sub(/a(?=b)/, c)`", "a.`sub(/(a)\\\\1/, c)`", "a.`sub(/a/, \\\\q)`", "a.`sub(/a/, \\\\2)`", "a\rb", "a\nb",
    "a\tb", "where", "a where", "'where'", "payload where", "a.-1", "a[-1]", "a.1 + 2", "a,b", "a,*", "['a','b']",
    "['a', 'b']", "[a]", "[0]", "[*]", "[1:]", "[?a]", "[/a]", "a[/b c]", "(a)", "((a))", "(a", "a)", "a.(b)",
    "payload.objects[?(cow)]", "payload.objects[?(cow=2)&cat>3]", "payload.objects[?cow & cat]",
]


def build_doc(path):
    """A document in which a simple dotted path exists."""
    doc = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            node = ext_parser.ExtentedJsonPathParser().parse(path)
    except Exception:
        return None
    chain = []

    def walk(n):
        import jsonpath_rw as j
        if isinstance(n, j.Child):
            return walk(n.left) and walk(n.right)
        if isinstance(n, j.Root):
            return True
        if isinstance(n, j.Fields) and len(n.fields) == 1 and n.fields[0] != "*":
            chain.append(n.fields[0])
            return True
        return False
    if not walk(node) or not chain:
        return None
    cur = doc
    for k in chain[:-1]:
        cur = cur.setdefault(k, {})
    cur[chain[-1]] = "value-of-" + chain[-1]
    return doc


def definition_paths(files):
    import yaml
    out = []
    for f in files:
        with open(f) as fh:
            defs = yaml.safe_load(fh)
        for d in defs or []:
            for name, t in (d.get("traits") or {}).items():
                fields = t.get("fields") if isinstance(t, dict) else t
                if isinstance(fields, str):
                    fields = [fields]
                for p in fields or []:
                    if isinstance(p, str) and p not in out:
                        out.append(p)
                    # ceilometer joins several as (a)|(b)
                if isinstance(fields, list) and len(fields) > 1:
                    joined = "|".join("(%s)" % p for p in fields)
                    if joined not in out:
                        out.append(joined)
    return out


def test_scenarios():
    """(path, data) pairs of jsonpath-rw-ext's own test scenarios."""
    path = os.path.join(os.path.dirname(jsonpath_rw_ext.__file__), "tests", "test_jsonpath_rw_ext.py")
    out = []
    try:
        tree = ast.parse(open(path).read())
    except OSError:
        return out
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            kw = {k.arg: k.value for k in node.keywords}
            if "string" in kw and "data" in kw:
                try:
                    out.append((ast.literal_eval(kw["string"]), ast.literal_eval(kw["data"])))
                except ValueError:
                    pass
    return out


REGEXES = ["a", "^a", "a$", "b+", "[a-c]+", "[^a]", "\\d+", "\\w+", "\\s", "x*", "(a|b)c", "(?i)A", "a.c",
           "\\.", "^$", "[.]", "a{2}", "a{,2}", "a{", "(?P<n>b)", "\\bb", "[\\d-]+", ".*", "\\Ac", "c\\Z",
           "[]a]", "[^]]", "(?s).", "(?m)^b", "\\x61", "\\u0062", "\\101", "[\\s\\S]", "(", "a**", "[z-a]",
           "(?x) a", "a++", "(?=a)", "\\1", "*", "a|", "()", "\\n", "é+", "[[]", "a&&b", "x*|b", "a*?", "|a", "b??"]
REPLS = ["X", "", "<\\g<0>>", "\\1", "\\g<1>", "\\g<n>", "[\\n]", "\\\\", "\\0", "\\q", "\\&", "-\\2-",
         "x\\101", "\\g<9>"]
TEXTS = ["abc", "aabbcc", "a.b.c", "", "b", "xxabxx", "a\nb", "ab\n", "c\n", "AbC", "1.2.3", "x y  z", "éé",
         "compute.host-1.example.org", "aaa", "\n", "a\tb"]


def focused(r):
    """A (path, document) pair aimed at one feature, likely to match."""
    k = r.randrange(8)
    if k == 0:  # filters
        recs = [{key: rand_scalar(r) for key in r.sample(HOT_KEYS[:4], r.randint(1, 3))} for _ in range(r.randint(1, 5))]
        if r.random() < 0.2:
            recs.append(r.choice([3, "s", None, [1], {"a": [1, 2]}]))
        exprs = []
        for _ in range(r.randint(1, 2)):
            t = r.choice(["a", "b", "c", "id", "@.a", "a.`len`", "`this`", "(a)"])
            if r.random() < 0.2:
                exprs.append(t)
            else:
                exprs.append(t + sp(r) + r.choice(["=", "==", "!=", "<", "<=", ">", ">=", "~"]) + sp(r) + rand_value(r))
        tail = r.choice(["", "", ".a", "[0]", ".`len`", "[*]"])
        return "list[?" + " & ".join(exprs) + "]" + tail, {"list": recs}
    if k == 1:  # sorting
        recs = [{key: r.choice([r.randint(0, 3), r.choice("abc"), 1.5, None, True, [1], [r.randint(0, 2), "x"]])
                 for key in r.sample(["a", "b"], r.randint(0, 2))} for _ in range(r.randint(0, 8))]
        if r.random() < 0.3:
            recs = [r.choice([r.randint(0, 5), 2.5, True, "a", "b"]) for _ in range(r.randint(0, 8))]
        if r.random() < 0.1:
            recs = [[r.randint(0, 2), r.choice([1, "x"])] for _ in range(r.randint(0, 6))]
        if r.random() < 0.1:
            # long lists (CPython merges runs): consistent keys only
            recs = [{"a": r.randint(0, 9), "b": r.choice("xyz")} for _ in range(r.randint(60, 140))]
        keys = ",".join(r.choice("/\\") + r.choice(["a", "b", "a.`len`", "@", "[0]"]) for _ in range(r.randint(1, 2)))
        path = r.choice(["list[%s]" % keys, "list.`sorted`", "list[%s][*]" % keys, "list[%s][0].a" % keys,
                         "$.`sorted`", "list[%s].`len`" % keys])
        return path, {"list": recs, "a": {"b": 1}}
    if k == 2:  # arithmetic
        vals = [r.randint(-5, 5), 2.5, -0.5, "ab", "", True, None, [1], [], {"x": 1}, 3, 0]
        doc = {"a": r.choice(vals), "b": r.choice(vals), "list": [{"x": r.choice(vals), "y": r.choice(vals)}
                                                                   for _ in range(r.randint(0, 3))]}
        a = r.choice(["$.a", "$.b", "a", "$.list[*].x", "list[*].y", "2", "1.5", '"s"', "$.list[0].x", "$.nope"])
        b = r.choice(["$.a", "$.b", "b", "$.list[*].y", "3", "0.25", '"_"', "$.list[*].x", "$.nope", "-2"])
        ops = [r.choice(["+", "-", "*"]) for _ in range(2)]
        path = a + sp(r) + ops[0] + sp(r) + b
        if r.random() < 0.3:
            path += " " + ops[1] + " " + r.choice(["$.a", "1", "2.5", '"x"'])
        return path, doc
    if k == 3:  # indexes and slices
        target = r.choice([[1, 2, 3, 4], [], "hello", {"a": 1, "b": 2}, 7, 2.5, True, None, [[1, 2], [3]]])
        sel = r.choice(["[%d]" % r.randint(-5, 5), "[%s:%s]" % (r.choice(["", str(r.randint(-5, 5))]),
                                                                r.choice(["", str(r.randint(-5, 5))])), "[*]", ".*",
                        "[*][*]", "[0][0]", ".`len`"])
        return "x" + sel + r.choice(["", "", ".a", "[0]"]), {"x": target}
    if k == 4:  # structure operators
        doc = rand_doc(r)
        a = r.choice(["a", "b", "list", "$", "*", "a.b", "list[*]"])
        b = r.choice(["a", "b", "c", "id", "*", "[0]", "`parent`", "`this`", "$", "name", "value"])
        op = r.choice(["..", ".", "|", " where ", ".", ".."])
        return a + op + b + r.choice(["", "", ".`parent`", ".a", "[0]", ".`len`", "..a"]), doc
    if k == 5:  # split and sub
        text = r.choice(TEXTS)
        if r.random() < 0.5:
            op = "`split(%s, %d, %s)`" % (r.choice([".", "-", "a", " ", "\\", ","]), r.randint(0, 3),
                                          r.choice(["-1", "0", "1", "2"]))
        else:
            op = "`sub(/%s/, %s)`" % (r.choice(REGEXES), r.choice(REPLS))
        return "t." + op, {"t": r.choice([text, text, 5, None, ["a"]])}
    if k == 6:  # regex filters
        recs = [{"n": r.choice(TEXTS + [1, None, True])} for _ in range(r.randint(1, 4))]
        return "list[?n ~ \"%s\"]" % r.choice(REGEXES).replace('"', ''), {"list": recs}
    # token soup (lexer and grammar corners)
    pieces = ["a", "b", ".", "..", "[", "]", "(", ")", "*", "$", "@", ",", ":", "|", "&", "?", "+", "-", "/", "\\",
              "=", "==", "~", ">", "<=", "!=", "'q.r'", '"s"', "`len`", "`this`", "`parent`", "`sorted`", "true",
              "false", "where", "1", "-1", "2.5", " ", "[0]", "[*]", "[?a]", "[/a]", "trueish", "@a", "a-b", "\n"]
    return "".join(r.choice(pieces) for _ in range(r.randint(1, 7))), rand_doc(r)


def cases(seed, count, definitions, fixed=True):
    r = random.Random(seed)
    docs = []
    doc_index = {}

    def doc_id(d):
        d = sort_keys(d)
        key = json.dumps(d, sort_keys=True)
        if key not in doc_index:
            doc_index[key] = len(docs)
            docs.append(d)
        return doc_index[key]

    out = []

    def add(path, doc):
        i = doc_id(doc)
        res = run(path, docs[i])
        out.append({"path": path, "doc": i, **res})

    if fixed:
        for p in definition_paths(definitions):
            add(p, NOTIFICATION)
            built = build_doc(p)
            if built is not None:
                add(p, built)
        for p, d in test_scenarios():
            add(p, d)
        for p in FIXED_PATHS:
            add(p, NOTIFICATION)
            for d in README_DOCS:
                add(p, d)
    rand_docs = [rand_doc(r) for _ in range(60)] + [NOTIFICATION] + README_DOCS
    n = 0
    while n < count:
        if r.random() < 0.6:
            p, d = focused(r)
            add(p, d)
            n += 1
            continue
        p = rand_path(r)
        if r.random() < 0.25:
            p = mutate(r, p)
        for d in r.sample(rand_docs, 3):
            add(p, d)
            n += 1
    return {"generator": "scripts/distiller-oracle/jsonpath_cases.py", "oracle": VERSION_NOTE, "seed": seed,
            "docs": docs, "cases": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions", nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--live", nargs=2, type=int, metavar=("SEED", "COUNT"))
    a = ap.parse_args()
    sys.setrecursionlimit(10000)
    if a.live:
        data = cases(a.live[0], a.live[1], [], fixed=False)
        json.dump(data, sys.stdout, ensure_ascii=False)
    else:
        data = cases(a.seed, a.count, a.definitions)
        # One document or case per line, so regenerating gives readable diffs.
        line = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
        head = {k: v for k, v in data.items() if k not in ("docs", "cases")}
        sys.stdout.write(line(head)[:-1] + ',\n"docs":[\n')
        sys.stdout.write(",\n".join(line(d) for d in data["docs"]))
        sys.stdout.write('\n],\n"cases":[\n')
        sys.stdout.write(",\n".join(line(c) for c in data["cases"]))
        sys.stdout.write("\n]}")
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
