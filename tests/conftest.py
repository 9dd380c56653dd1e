import os

import pytest
import torch

# Helpers and CI share 2 cores: keep each test process to what it needs.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
