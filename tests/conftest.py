"""Shared fixtures."""
import pytest


@pytest.fixture
def one_thread():
    """torch on one thread for the test (timing-independent, and fair to parallel work), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
