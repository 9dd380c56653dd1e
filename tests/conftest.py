import os
import tempfile

import pytest
import torch

# Helpers and CI share 2 cores: keep each test process to what it needs.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# The tokenised-split cache of the runs the tests make goes to a temporary directory, not
# the user's ~/.cache (subprocesses inherit it).
os.environ.setdefault("LXMERT_CACHE_DIR", tempfile.mkdtemp(prefix="lxmert-test-cache-"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
