"""Shared by the two oracle scripts: corpus loading and result encoding.

Plain Python 3, no third-party imports: each oracle script runs in its
own venv and imports this file from its own directory.
"""

import datetime
import json
import math
import os

# "none" only arises from ceilometer's `type: none` (edges-ceilometer.yaml)
TYPE_NAMES = ("text", "int", "float", "datetime", "none")


def load_corpus(notifications_dir):
    """[(file name, notification dict)] in sorted file-name order."""
    out = []
    for name in sorted(os.listdir(notifications_dir)):
        if not name.endswith(".json") or name == "SOURCES.json":
            continue
        with open(os.path.join(notifications_dir, name)) as f:
            out.append((name, json.load(f)))
    return out


def utc_iso(dt):
    """UTC ISO-8601 with microseconds and a Z.

    Aware datetimes are converted to UTC; naive ones are taken as UTC
    (ceilometer's timeutils.normalize_time returns naive UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_value(type_name, value):
    if type_name == "datetime":
        return utc_iso(value)
    if type_name == "float" and (math.isnan(value) or math.isinf(value)):
        return {"float": repr(value)}
    return value


def event_record(event_type, message_id, when, traits):
    """traits: iterable of (name, type name, python value)."""
    ts = []
    for name, type_name, value in traits:
        assert type_name in TYPE_NAMES, type_name
        ts.append({"name": name, "type": type_name,
                   "value": encode_value(type_name, value)})
    ts.sort(key=lambda t: t["name"])
    names = [t["name"] for t in ts]
    assert len(names) == len(set(names)), names
    return {"event_type": event_type, "message_id": message_id,
            "timestamp": utc_iso(when), "traits": ts}


def exc_message(exc):
    """str(exc); StackDistiller's EventDefinitionException.__str__ fails
    on Python 3 (it reads self.message), so fall back to its args[0]."""
    try:
        return str(exc)
    except Exception:
        return str(exc.args[0]) if exc.args else ""


def error_record(exc):
    return {"error": "%s: %s" % (type(exc).__name__, exc_message(exc))}


DROPPED = {"dropped": True}


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False,
                  allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
