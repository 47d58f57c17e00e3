"""Readers of the six datasets in their official layouts."""
from .base import DatasetError, DatasetListing, DatasetWarning, PartialDownloadWarning  # noqa: F401
from .csv_table import ESC50, URBANSOUND8K, CsvDataset  # noqa: F401
from .icbhi import read_icbhi  # noqa: F401
from .librispeech import read_librispeech  # noqa: F401
from .nsynth import read_nsynth  # noqa: F401
from .speech_commands import read_speech_commands  # noqa: F401
