import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("qtnn", deadline=None, max_examples=40, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "qtnn"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def float64_default():
    """Run a test with torch's default dtype float64, restoring it afterwards."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
