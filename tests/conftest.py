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
