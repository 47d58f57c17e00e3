"""One registry of source separators, like `common.encoders`. Adding one = one
file in this folder and one line here: `name: "module:Class"`; the class
subclasses `common.separation.base.Separator`. Imports are lazy so that a
method's dependencies are only needed when it is used."""
from __future__ import annotations

import importlib
from pathlib import Path

from .base import MethodOption, Query, Separated, Separator  # noqa: F401

SEPARATORS: dict[str, str] = {
    "mixture": "common.separation.baselines:MixtureBaseline",
    "oracle_irm": "common.separation.baselines:OracleIRM",
    "nmf": "common.separation.nmf:NMFSeparator",
    "audiosep": "common.separation.audiosep:AudioSepSeparator",
    "ast_guided": "common.separation.ast_guided:ASTGuidedSeparator",
}


def separator_class(name: str) -> type[Separator]:
    if name not in SEPARATORS:
        raise KeyError(f"unknown separation method {name!r}; registered: {', '.join(sorted(SEPARATORS))}")
    module, cls = SEPARATORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_separator(name: str, pretrained_dir: str | Path | None = None, **options) -> Separator:
    from ..encoders import default_pretrained_dir
    return separator_class(name).from_options(Path(pretrained_dir or default_pretrained_dir()), **options)
