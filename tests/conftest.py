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
