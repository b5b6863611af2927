"""Shared pytest setup: headless MuJoCo rendering and the list of registered env ids."""

from __future__ import annotations

import os

import pytest

# MuJoCo's offscreen rendering on a machine without a display: EGL (set before mujoco is imported).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: small brains gain nothing from two; a busy 2-core machine loses a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_threads():
    """Restore torch's and numba's thread counts after a test that lets a script change them."""
    import numba
    import torch

    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(threads)
    numba.set_num_threads(numba_threads)
