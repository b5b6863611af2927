"""The encephagen-gym tasks (installed as ``encephagen_gym.envs``).

Every env module holds its env class (whose docstring is the task's specification) and a scripted reference
policy, available from any env as ``env.unwrapped.make_reference_policy()``. Envs depend only on gymnasium,
mujoco and numpy (and on matplotlib's font rasteriser, imported on the first text drawn on a rendered frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np


class ReferencePolicy(Protocol):
    """A scripted policy: ``reset()`` at the start of an episode, then ``policy(obs) -> action`` each step."""

    def reset(self) -> None: ...

    def __call__(self, obs: np.ndarray) -> Any: ...


def layout_from_sizes(sizes: Mapping[str, int]) -> dict[str, slice]:
    """Consecutive slices, in order, for modalities of the given sizes: ``{"a": 2, "b": 3}`` → 0:2, 2:5."""
    layout: dict[str, slice] = {}
    start = 0
    for name, size in sizes.items():
        layout[name] = slice(start, start + size)
        start += size
    return layout


__all__ = ["ReferencePolicy", "layout_from_sizes"]
