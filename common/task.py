"""A task = a dataset reader + its protocols, declared in a task folder's
`task.py`. Everything a task folder's scripts do is done here from that
declaration, so a copied folder with an edited declaration is a new task."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from .data import DatasetListing
from .data.fetch import DatasetDownload
from .probing.protocols import Protocol


@dataclass
class Task:
    name: str                                   # short id, e.g. "esc50"
    title: str                                  # for tables, e.g. "ESC-50"
    read: Callable[[Path | None], DatasetListing]
    protocols: dict[str, Protocol]              # the official ones; the first is the primary
    folder: Path                                # the task folder (features/ and results/ go here)
    data_env: str                               # environment variable holding the data root
    download: str                               # where the dataset comes from
    subsets: dict[str, Callable[[pd.DataFrame], pd.Series]] = field(default_factory=dict)
    downloads: tuple[DatasetDownload, ...] = ()  # what --download fetches (the first by default)

    def __post_init__(self):
        self.folder = Path(self.folder).resolve()
        if self.folder.is_file():  # allow `folder=__file__`
            self.folder = self.folder.parent

    def data_root(self, given: str | Path | None) -> Path | None:
        value = given or os.environ.get(self.data_env)
        return Path(value) if value else None

    def protocol(self, name: str) -> Protocol:
        if name not in self.protocols:
            raise KeyError(f"{self.name} has no protocol {name!r}; choose from {', '.join(self.protocols)}")
        return self.protocols[name]


def load_task(folder: str | Path) -> Task:
    """The `TASK` declared in `<folder>/task.py`."""
    path = Path(folder) / "task.py"
    spec = importlib.util.spec_from_file_location(f"{Path(folder).name}_task", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TASK
