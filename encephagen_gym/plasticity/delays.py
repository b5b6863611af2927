"""Per-neuron traces as they arrive at each synapse, after the synapse's conduction delay.

A presynaptic trace must be read at the synapse as it was ``d`` steps ago (the spike needs ``d`` steps to
arrive). We keep a short history of the per-neuron trace (``[U, B]`` per step) in a ring of depth
``H = max_delay + 1`` stored twice (slots ``s`` and ``s + H`` hold the same time), so that the values of
all synapses at times ``t − d`` lie in one contiguous window that starts at slot ``t mod H``: the gather
index is a constant per synapse, ``(H − d)·U + u``, and a step costs one slice (a view) and one
``index_select`` with no per-step index arithmetic and no host↔device traffic.

Layout: histories are ``[2H·U, B]`` (neuron-major) and gathers return ``[P, B]`` (synapse-major): on a CPU,
gathering rows of B floats is 2–3× faster than gathering columns of a ``[B, ·]`` tensor.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "DelayedHistory",
    "gather_neurons",
    "gather_rows",
    "history_gather",
    "history_push",
    "init_history",
]


class DelayedHistory(NamedTuple):
    """A doubled ring of per-neuron values. ``buffer`` ``[2H·W, B]``; ``index`` ``[P]`` (constant gather
    index of each synapse, ``(H − d)·W + column``); ``depth`` H; ``width`` W (values per step, e.g. U)."""

    buffer: torch.Tensor
    index: torch.Tensor
    depth: int
    width: int


def init_history(
    columns: torch.Tensor,
    delay_steps: torch.Tensor,
    width: int,
    max_delay_steps: int,
    batch_size: int,
    extra_steps: int = 0,
) -> DelayedHistory:
    """A zeroed history of ``width`` values per step, for synapses reading value ``columns`` (0..W−1, e.g.
    the presynaptic neuron's position) with delays ``delay_steps`` (≥ 1 step). ``extra_steps`` more steps
    are kept, so that a value can still be read that many steps after it was due."""
    if isinstance(extra_steps, bool) or not isinstance(extra_steps, int) or extra_steps < 0:
        raise ValueError(f"extra_steps must be an integer >= 0, got {extra_steps!r}")
    depth = max_delay_steps + 1 + extra_steps
    if bool((delay_steps < 1).any()) or bool((delay_steps > max_delay_steps).any()):
        raise ValueError(f"delays must lie in [1, {max_delay_steps}] steps")
    index = (depth - delay_steps) * width + columns
    buffer = torch.zeros((2 * depth * width, batch_size), device=columns.device)
    return DelayedHistory(buffer=buffer, index=index, depth=depth, width=width)


def history_push(history: DelayedHistory, values: torch.Tensor, time: int) -> None:
    """Store ``values`` ``[W, B]`` as the trace at time ``time`` (in place, both copies of the slot)."""
    slot = time % history.depth
    width = history.width
    history.buffer[slot * width : (slot + 1) * width].copy_(values)
    upper = slot + history.depth
    history.buffer[upper * width : (upper + 1) * width].copy_(values)


def gather_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source[index]`` for a ``[X, B]`` tensor → ``[P, B]``; uses the (much faster) flat gather at B = 1."""
    if source.shape[1] == 1:
        return source.reshape(-1).index_select(0, index).unsqueeze(1)
    return source.index_select(0, index)


def gather_neurons(values: torch.Tensor, neurons: torch.Tensor) -> torch.Tensor:
    """``values[:, neurons]`` of a ``[B, N]`` tensor, transposed to a new contiguous ``[len, B]`` tensor."""
    if values.shape[0] == 1:
        return values.reshape(-1).index_select(0, neurons).unsqueeze(1)
    return values.t().index_select(0, neurons)


def history_gather(history: DelayedHistory, time: int) -> torch.Tensor:
    """``[P, B]``: for each synapse, the stored trace of its presynaptic neuron at ``time − delay``.

    Times before the first push read zero."""
    start = (time % history.depth) * history.width
    window = history.buffer[start : start + history.depth * history.width]
    return gather_rows(window, history.index)
