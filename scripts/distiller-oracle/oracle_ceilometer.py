#!/usr/bin/env python3
"""Ceilometer 27.0.0 oracle: distil every corpus sample the way
ceilometer-agent-notification's event pipeline does.

Path mirrored (all through the installed code, nothing re-implemented):
  1. oslo.messaging AMQP listener: rpc_amqp.unpack_context(message) pops
     every `_context_*` key into the context (prefix stripped), plus
     _msg_id/_reply_q/_timeout; ctxt = RpcContext.to_dict(); the
     duplicate-check pops `_unique_id`   (AMQPListener.__call__)
  2. NotificationDispatcher._extract_user_message builds
     {ctxt, publisher_id, event_type, payload,
      metadata: {message_id, timestamp}}  and priority = lower(priority)
  3. the dispatcher routes by priority; ceilometer's EventEndpoint
     converts only `info` and `error` (every other priority is
     consumed and dropped by NotificationEndpoint._consume_and_drop)
  4. EventEndpoint.process_notifications -> converter.to_event(priority,
     message); an exception there is logged and the notification acked
     (ack_on_event_error=True) - the oracle records the exception.

Config: ceilometer defaults ([event] drop_unmatched_notifications=False,
store_raw=[]), [event] definitions_cfg_file = the fixture, trait plugins
from the `ceilometer.event.trait_plugin` entry points.

Run inside the ceilometer venv; see ./regen.
"""

import argparse
import copy
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_common as oc  # noqa: E402

from oslo_config import cfg  # noqa: E402
from oslo_messaging._drivers import amqp as rpc_amqp  # noqa: E402
from oslo_messaging.notify import dispatcher as notify_dispatcher  # noqa
from stevedore import extension  # noqa: E402

from ceilometer.event import converter  # noqa: E402
from ceilometer.event import models  # noqa: E402
from ceilometer.pipeline import event as event_pipeline  # noqa: E402

logging.basicConfig(level=logging.CRITICAL)

TYPE_NAMES = {models.Trait.NONE_TYPE: "none",  # `type: none` is accepted
              models.Trait.TEXT_TYPE: "text", models.Trait.INT_TYPE: "int",
              models.Trait.FLOAT_TYPE: "float",
              models.Trait.DATETIME_TYPE: "datetime"}


class Incoming:
    """What the AMQP listener hands the dispatcher (ctxt, message)."""

    def __init__(self, raw):
        message = copy.deepcopy(raw)
        ctxt = rpc_amqp.unpack_context(message)
        message.pop(rpc_amqp.UNIQUE_ID, None)  # _MsgIdCache.check_duplicate
        self.ctxt = ctxt.to_dict()
        self.message = message


class RecordingEndpoint(event_pipeline.EventEndpoint):
    """ceilometer's EventEndpoint; process_notifications records instead
    of publishing (same converter call, same priorities)."""

    def __init__(self, conf):
        super().__init__(conf, publisher=None)
        self.results = []

    def process_notifications(self, priority, notifications):
        for message in notifications:
            try:
                event = self.event_converter.to_event(priority, message)
            except Exception as e:
                self.results.append(oc.error_record(e))
                continue
            if event is None:
                self.results.append(oc.DROPPED)
                continue
            self.results.append(oc.event_record(
                event.event_type, event.message_id, event.generated,
                [(t.name, TYPE_NAMES[t.dtype], t.value)
                 for t in event.traits]))


def make_conf(definitions):
    conf = cfg.ConfigOpts()
    conf.register_opts(converter.OPTS, group="event")
    conf([], project="ceilometer", default_config_files=[],
         default_config_dirs=[])
    conf.set_override("definitions_cfg_file", definitions, group="event")
    return conf


def distil(dispatcher, endpoint, raw):
    endpoint.results = []
    try:
        dispatcher.dispatch([Incoming(raw)])
    except Exception as e:  # failure before the converter (dispatch)
        return oc.error_record(e)
    if not endpoint.results:
        return oc.DROPPED  # priority not handled by the event endpoint
    assert len(endpoint.results) == 1
    return endpoint.results[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions-dir", required=True)
    ap.add_argument("--notifications", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("definitions", nargs="+")
    a = ap.parse_args()
    corpus = oc.load_corpus(a.notifications)
    status = {}
    for defs in a.definitions:
        path = os.path.abspath(os.path.join(a.definitions_dir, defs))
        stem = defs.rsplit(".", 1)[0]
        out = os.path.join(a.out_dir, "%s.ceilometer.json" % stem)
        try:
            endpoint = RecordingEndpoint(make_conf(path))
        except Exception as e:
            status[defs] = oc.error_record(e)
            if os.path.exists(out):
                os.unlink(out)
            continue
        dispatcher = notify_dispatcher.BatchNotificationDispatcher(
            [endpoint], None)
        results = {name: distil(dispatcher, endpoint, n)
                   for name, n in corpus}
        oc.write_json(out, results)
        status[defs] = {"loaded": True, "output": os.path.basename(out)}
    oc.write_json(a.status, status)


if __name__ == "__main__":
    main()
