"""Shared fixtures."""
import pytest


def _one_torch_thread():
    """torch on one thread (timing-independent, and fair to parallel work), restored after."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_thread_per_module():
    yield from _one_torch_thread()


@pytest.fixture(scope="session")
def default_bundle():
    """The shipped default model on the CPU, loaded once for the session (tests must not change it)."""
    from engine.models.registry import load_model

    return load_model("default", "cpu")
