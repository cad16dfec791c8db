import os
import warnings
from pathlib import Path

import pytest
import torch

# Avalanche writes ~/.avalanche on import; keep tests hermetic.
os.environ.setdefault("HOME", "/tmp")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
warnings.filterwarnings("ignore", category=DeprecationWarning, module="avalanche")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR_MINI = SHARED_DATA / "cifar10_mini.npz"


@pytest.fixture(scope="session")
def digits():
    from edgecond.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def cifar_mini_path():
    if not CIFAR_MINI.is_file():
        pytest.skip("../shared/data/cifar10_mini.npz is not present (only in the project's workspace)")
    return CIFAR_MINI


# Hypothesis: the default run keeps fuzzing to seconds, derandomized; HYPOTHESIS_PROFILE=slow runs 10x
# the examples, drawn afresh. No example database is written into the checkout.
try:
    from hypothesis import HealthCheck, settings

    _common = dict(deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    # the default run draws the same examples every time (CI is reproducible); slow draws afresh
    settings.register_profile("default", max_examples=60, derandomize=True, **_common)
    settings.register_profile("slow", max_examples=600, derandomize=False, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # hypothesis is a [dev] extra; only the fuzz tests need it
    pass
