"""The contract every separator meets.

A separator takes one mono mixture at its own `sample_rate` (float32 numpy,
[T]) and a `Query` saying what to extract, and returns a `Separated`: the
estimate of the queried source (`target`, same length as the mixture), any
other sources it produced (`sources`, e.g. AST-guided passes, NMF's other
classes, the residual) and a JSON-able `info` of what was done. Resampling to
and from the file's rate, folders of mixtures, scoring and result files are
done once, in the separation pipeline, not by each method.

Oracle methods (`needs_references = True`, e.g. the ideal ratio mask) are
given the true sources of a benchmark mixture; they are upper bounds, never
usable on a real file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np


@dataclass
class Query:
    """What to separate. Methods use what they understand and say clearly
    when they get nothing they can use."""
    text: str | None = None                 # e.g. "dog barking" (ESC-50 protocol: the class name)
    audio: np.ndarray | None = None         # a reference clip of the wanted sound, at the separator's rate
    embedding: np.ndarray | None = None     # a precomputed query embedding (e.g. CLAP, 512-d)
    classes: list[str] | None = None        # classes known (or predicted) to be in the mixture, target first


@dataclass
class Separated:
    target: np.ndarray                                          # [T], the queried source
    sources: dict[str, np.ndarray] = field(default_factory=dict)  # other named outputs, each [T]
    info: dict = field(default_factory=dict)                    # JSON-able record of what was done


@dataclass(frozen=True)
class MethodOption:
    """A method's own named option: `separate.py` / `evaluate.py` offer it as
    `--<name with dashes>` when that method is chosen, with this default and
    help; the value reaches `from_options` as `name=value`."""
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str


class Separator:
    #: the rate `separate` works at; the pipeline resamples to and from it
    #: (None: any rate, the input's; an instance may set its own, e.g. NMF
    #: bases learned at 32 kHz)
    sample_rate: ClassVar[int | None]
    #: True for oracle baselines that need the true sources of the mixture
    needs_references: ClassVar[bool] = False
    #: the method's own command-line options
    method_options: ClassVar[tuple[MethodOption, ...]] = ()
    #: the dataset whose class names `Query.classes` must use (NMF: its bases'); None: any names
    dataset: str | None = None

    @classmethod
    def from_options(cls, pretrained_dir: Path, **options) -> "Separator":
        return cls(**options)

    def separate(self, mixture: np.ndarray, query: Query,
                 references: dict[str, np.ndarray] | None = None) -> Separated:
        """`references` (oracle methods only): {"target": [T], "interference": [T]}."""
        raise NotImplementedError

    def training_clips(self) -> set[str]:
        """Clips (benchmark file names or item ids) the method learned from;
        benchmark mixtures that use one are excluded from its scores."""
        return set()

    def unknown_classes(self, names: list[str]) -> list[str]:
        """Those of `names` the method cannot separate (none when it takes any name)."""
        return []

    def config(self) -> dict:
        """JSON-serialisable settings that determine the output (checkpoint, options)."""
        return {}

    def write_extras(self, out_dir: Path, separated: Separated, input_rate: int) -> list[Path]:
        """Called by the pipeline after it has written the separated WAVs
        (`target` and each of `sources` as `<name>.wav` at the input's rate) and
        its JSON record: method-specific files (event lists, debug figures) and
        side effects that must never lose or delay those outputs. Returns the
        files written."""
        return []
