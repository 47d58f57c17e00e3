import os
import tempfile
from pathlib import Path

import pytest

# No test reaches the network: downloads are off (tests that fetch turn them
# on towards a server on 127.0.0.1), and the weight caches are empty folders
# of this run, so a user's cached weights never change what a test sees.
os.environ["AUDIO_PROBES_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
_CACHES = tempfile.mkdtemp(prefix="audio-probes-test-caches-")
os.environ["AUDIO_PROBES_CACHE"] = os.path.join(_CACHES, "weights")
os.environ["HF_HUB_CACHE"] = os.path.join(_CACHES, "huggingface")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Fixtures the project cannot download live beside the clone, never inside it.
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (parity fixtures, real data subsets, offline weights) is not present")
    return SHARED


@pytest.fixture(scope="session")
def demo_roots(tmp_path_factory) -> dict:
    """Small synthetic datasets in the six official layouts, made once per run."""
    from common.demo import make_demo_datasets
    return make_demo_datasets(tmp_path_factory.mktemp("demo_data"))
