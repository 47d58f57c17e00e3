import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
    from common.data.demo import make_demo_datasets
    return make_demo_datasets(tmp_path_factory.mktemp("demo_data"))



# Property-based tests: a few fixed cases by default (CI: the same ones every run),
# many random ones with HYPOTHESIS_PROFILE=thorough.
_quiet = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=15, deadline=None, derandomize=True, suppress_health_check=_quiet)
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
