"""The separation task folder's declaration: `source_separation/task.py`
holds a `SeparationTask` naming its benchmarks; its scripts hand it to
`common.separation.cli`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .benchmarks import BENCHMARKS


@dataclass
class SeparationTask:
    name: str                               # short id, e.g. "source_separation"
    title: str                              # for help texts and tables
    folder: Path                            # results/ and models/ go here
    benchmarks: tuple[str, ...] = field(default_factory=lambda: tuple(BENCHMARKS))

    def __post_init__(self):
        self.folder = Path(self.folder).resolve()
        if self.folder.is_file():  # allow `folder=__file__`
            self.folder = self.folder.parent
