"""Helpers winchester-rs installs in its embedded interpreter as `_winchester_rs`."""

import abc
import datetime
import sys
import types


class HandlerTimeout(TimeoutError):
    """Raised inside a handler that ran past handler_timeout."""

    def __init__(self, *args):
        super().__init__("handler_timeout exceeded; interrupted by winchester-rs")


class PipelineHandlerBase(abc.ABC):
    """The original's winchester.pipeline_handler.PipelineHandlerBase."""

    def __init__(self, **kw):
        super().__init__()

    @abc.abstractmethod
    def handle_events(self, events, env):
        """Return the events for the next handler."""

    @abc.abstractmethod
    def commit(self):
        """Act on the outside world: every handler succeeded."""

    @abc.abstractmethod
    def rollback(self):
        """Some handler failed."""


class TraitPluginBase(abc.ABC):
    """The original's stackdistiller.trait_plugins.TraitPluginBase."""

    def __init__(self, **kw):
        super().__init__()

    @abc.abstractmethod
    def trait_value(self, match_list):
        """Return the trait's value from the (path, value) pairs that matched."""


def _shim(name, **attrs):
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        mod_name = ".".join(parts[:i])
        if mod_name not in sys.modules:
            mod = types.ModuleType(mod_name)
            mod.__path__ = []
            sys.modules[mod_name] = mod
            if i > 1:
                setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], mod)
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


def install_shims():
    """Base classes the original's handlers and plugins import, unless the real ones are importable."""
    try:
        import winchester.pipeline_handler  # noqa: F401
    except Exception:
        _shim("winchester.pipeline_handler", PipelineHandlerBase=PipelineHandlerBase)
    try:
        import stackdistiller.trait_plugins  # noqa: F401
    except Exception:
        _shim("stackdistiller.trait_plugins", TraitPluginBase=TraitPluginBase)


def add_path(dirs):
    for d in dirs:
        if d not in sys.path:
            sys.path.append(d)


def import_class(path):
    import importlib

    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{path} is not a class")
    return obj


def interrupt(tid, clear):
    """Raises HandlerTimeout in thread `tid` (or cancels that)."""
    import ctypes

    exc = None if clear else ctypes.py_object(HandlerTimeout)
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), exc)


def _ours(filename):
    return (
        filename == "winchester_rs_helpers.py"
        or filename.startswith("<frozen importlib")
        or filename.endswith("importlib/__init__.py")
    )


def format_exception(exc, tb):
    """The traceback without the frames of this module and importlib."""
    import traceback

    tb = tb if tb is not None else exc.__traceback__
    frames = [f for f in traceback.extract_tb(tb) if not _ours(f.filename)]
    lines = traceback.format_exception_only(type(exc), exc)
    if frames:
        lines = ["Traceback (most recent call last):\n"] + traceback.format_list(frames) + lines
    return "".join(lines).rstrip()


def utc_naive(dt):
    """A datetime in UTC without tzinfo (naive ones are taken as UTC)."""
    if dt.tzinfo is not None and dt.utcoffset() is not None:
        dt = dt.astimezone(datetime.timezone.utc)
    return dt.replace(tzinfo=None)


def is_datetime(v):
    return isinstance(v, datetime.datetime)
