"""Parsers of user-given settings, shared by every command line (as argparse
`type=`) and by the encoders' declared options (`--encoder-option KEY=VALUE`).

Each takes the text the user typed and returns the value, or raises
`OptionError` whose message says what is accepted. A value that would be
accepted and then silently give a meaningless result (a negative batch size,
a learning rate of 0 or NaN, a device that is not there) never gets past the
command line.
"""
from __future__ import annotations

import argparse
import math
import re

from .errors import UserError


class OptionError(UserError, argparse.ArgumentTypeError, ValueError):
    """A setting outside its valid range (argparse shows it after the option's name)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help of every command line: each option's default stated once. Where
    the help text already says it ("default: ...") or there is none to state
    (None, a switch that is off, a required option), nothing is appended;
    elsewhere "(default: X)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.required:
            return text
        return super()._get_help_string(action)


def _number(text, kind, name: str):
    try:
        return kind(text)
    except (TypeError, ValueError):
        raise OptionError(f"{text!r} is not {'an integer' if kind is int else 'a number'}"
                          + (f" ({name})" if name else "")) from None


def positive_int(text) -> int:
    value = _number(text, int, "")
    if value <= 0:
        raise OptionError(f"{value} must be a positive integer (1 or more)")
    return value


def non_negative_int(text) -> int:
    value = _number(text, int, "")
    if value < 0:
        raise OptionError(f"{value} must be 0 or more")
    return value


def positive_float(text) -> float:
    value = _number(text, float, "")
    if not math.isfinite(value) or value <= 0:
        raise OptionError(f"{text!r} must be a finite number greater than 0")
    return value


def learning_rate(text) -> float:
    value = positive_float(text)
    if value >= 10:
        raise OptionError(f"learning rate {value:g} is far outside any useful range (take 1e-5 .. 1)")
    return value


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def boolean(text) -> bool:
    value = str(text).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise OptionError(f"{text!r} is not a yes/no value (true or false)")


def auto_or_boolean(text) -> str | bool:
    """"auto" (decided by the checkpoint's own files) or a yes/no value."""
    return "auto" if str(text).strip().lower() == "auto" else boolean(text)


def one_of(*choices: str):
    def parse(text) -> str:
        if str(text) not in choices:
            raise OptionError(f"{text!r} is not one of {', '.join(choices)}")
        return str(text)
    parse.__name__ = "one_of"
    return parse


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device(text) -> str:
    """auto, cpu, cuda, cuda:N (a GPU this machine has) or mps."""
    value = str(text).strip().lower()
    if not _DEVICE.match(value):
        raise OptionError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    if value.startswith("cuda"):
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"{value} was asked for but torch sees no CUDA device here; use --device auto or cpu")
        if ":" in value and int(value.split(":")[1]) >= count:
            raise OptionError(f"{value}: this machine has {count} CUDA device(s), numbered from 0")
    if value == "mps":
        import torch
        if not torch.backends.mps.is_available():
            raise OptionError("mps was asked for but this machine has no Apple GPU; use --device auto or cpu")
    return value
