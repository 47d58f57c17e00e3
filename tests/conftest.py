from pathlib import Path

import pytest

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


# Property-based tests: few examples by default (CI), more with HYPOTHESIS_PROFILE=thorough.
try:
    import os

    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=15, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.register_profile("thorough", max_examples=400, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test extra; its tests skip without it
    pass
