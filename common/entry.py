"""How every script reports errors: in one line and with a non-zero exit.

    @entry_point
    def main(argv=None): ...

turns the project's own errors (`common.errors.UserError`) and the ordinary
environmental ones (a missing or unreadable file, a full disk, a damaged
safetensors or JSON file, a device that is not there) into `error: <one
line>` on stderr and exit status 1. `--debug` on the command line, or
AUDIO_PROBES_DEBUG=1 in the environment, lets the traceback through instead.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from .errors import UserError

DEBUG_ENV = "AUDIO_PROBES_DEBUG"


def add_debug_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")
    return parser


def debugging(argv: list[str] | None = None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _os_message(err: OSError) -> str:
    what = err.strerror or str(err)
    if err.filename is not None and err.filename2 is not None:
        return f"{what}: {err.filename} -> {err.filename2}"
    if err.filename is not None:
        return f"{what}: {err.filename}"
    return what


def one_line(err: BaseException) -> str | None:
    """The message a user sees for `err`, or None when it is a bug (traceback)."""
    if isinstance(err, UserError):
        message = str(err)
    elif isinstance(err, KeyError) and err.args:   # lookups of user-given names (task, protocol, layer)
        message = str(err.args[0])
    elif isinstance(err, json.JSONDecodeError):
        message = f"a JSON file is malformed ({err.msg} at line {err.lineno}, column {err.colno}); " \
                  "--debug shows which one"
    elif isinstance(err, OSError):
        message = _os_message(err)
        if getattr(err, "errno", None) == 28:
            message += " (the disk is full: free space and run again; finished parts are kept)"
    elif type(err).__name__ == "SafetensorError":
        message = f"a safetensors file is damaged: {err}"
    elif type(err).__name__ == "OutOfMemoryError":
        message = "the device ran out of memory: lower --max-batch-seconds or --batch-size, or use --device cpu"
    elif isinstance(err, (ValueError, RuntimeError)) and _is_device_error(err):
        message = f"device error: {str(err).splitlines()[0]} (choose --device cpu, cuda or cuda:N)"
    elif isinstance(err, ValueError):  # older checks of user data and settings raise plain ValueError
        message = f"{err} (--debug shows where)"
    else:
        return None
    return " ".join(message.split()) or type(err).__name__


def _is_device_error(err: BaseException) -> bool:
    text = str(err)
    return any(key in text for key in ("CUDA", "device string", "Invalid device", "no CUDA GPUs", "device type"))


def report(err: BaseException) -> None:
    """Exit with `err` as one line when it is one the user can act on; else re-raise."""
    message = one_line(err)
    if message is None:
        raise err
    sys.exit(f"error: {message}")


def entry_point(main):
    """Decorator for a script's `main(argv=None)`: see the module docstring."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        argv = args[-1] if args and isinstance(args[-1], list) else kwargs.get("argv")
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            if debugging(argv):
                raise
            sys.exit("interrupted: finished shards and results are kept; run the same command again to continue")
        except Exception as err:  # noqa: BLE001: sorted into the user's errors and bugs by one_line
            if debugging(argv) or one_line(err) is None:
                raise
            report(err)
    return wrapper
