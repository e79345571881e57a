"""Test configuration.

The CI machines have 2 shared cores, where multithreaded BLAS was measured 5-20x slower than one
thread; the test process therefore runs torch single-threaded. This is the test harness's choice:
the library itself never changes torch's thread count (tests/test_backend.py checks that).
"""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"
UCI = SHARED / "data" / "uci"


def shared_path(*parts):
    """A path under ../shared, or skip the test with a clear message when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: reference files live beside the project, in ../shared")
    return path


@pytest.fixture
def reference_dir():
    return shared_path("reference")

