#!/usr/bin/env python3
"""StackDistiller 0.12 oracle: distil every corpus sample with every
definitions file StackDistiller can load, the way Winchester does.

Winchester's TriggerManager builds
    Distiller(config, trait_plugin_map=DEFAULT_PLUGINMAP (+ configured),
              catchall=config['catch_all_notifications'])   # default False
and feeds it the raw wire notification dict (envelope already unwrapped)
with its own EventCondenser.  Here: catchall=False, DEFAULT_PLUGINMAP
(split, bitfield), and a condenser that records (name, type, value).

Run inside the StackDistiller venv; see ./regen.
"""

import argparse
import copy
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

from stackdistiller import condenser as sd_condenser  # noqa: E402
from stackdistiller import distiller as sd  # noqa: E402

# A notification with neither `timestamp` nor `_context_timestamp` gets
# utcnow() from StackDistiller; the oracle records that as the string NOW.
_NOW_SENTINEL = datetime.datetime(1900, 1, 1, tzinfo=datetime.timezone.utc)
sd.utcnow = lambda: _NOW_SENTINEL


class RecordingCondenser(sd_condenser.CondenserBase):
    def __init__(self):
        self.clear()

    def clear(self):
        self.traits = []
        self.envelope = None

    def add_trait(self, name, trait_type, value):
        self.traits.append((name, trait_type.name, value))

    def add_envelope_info(self, event_type, message_id, when):
        self.envelope = (event_type, message_id, when)

    def get_event(self):
        event_type, message_id, when = self.envelope
        if when is _NOW_SENTINEL:
            rec = oc.event_record(event_type, message_id,
                                  datetime.datetime(1970, 1, 1), self.traits)
            rec["timestamp"] = "NOW"
            return rec
        return oc.event_record(event_type, message_id, when, self.traits)

    def validate(self):
        return True


def distil(dist, notification):
    cond = RecordingCondenser()
    try:
        if not dist.to_event(copy.deepcopy(notification), cond):
            return oc.DROPPED
        if not cond.validate():
            return {"error": "invalid event"}
        return cond.get_event()
    except Exception as e:  # the reference's failure is the expected output
        return oc.error_record(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions-dir", required=True)
    ap.add_argument("--notifications", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--status", required=True,
                    help="JSON file: per definitions file, loaded or error")
    ap.add_argument("definitions", nargs="+")
    a = ap.parse_args()
    corpus = oc.load_corpus(a.notifications)
    status = {}
    for defs in a.definitions:
        path = os.path.join(a.definitions_dir, defs)
        stem = defs.rsplit(".", 1)[0]
        out = os.path.join(a.out_dir, "%s.stackdistiller.json" % stem)
        try:
            dist = sd.Distiller(sd.load_config(path),
                                trait_plugin_map=None, catchall=False)
        except Exception as e:
            status[defs] = oc.error_record(e)
            if os.path.exists(out):
                os.unlink(out)
            continue
        results = {name: distil(dist, n) for name, n in corpus}
        oc.write_json(out, results)
        status[defs] = {"loaded": True, "output": os.path.basename(out)}
    oc.write_json(a.status, status)


if __name__ == "__main__":
    main()
