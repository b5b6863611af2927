"""The ``"numba"`` CPU path of :class:`~encephagen_gym.plasticity.reward_eprop.RewardEProp`'s per-decision work.

Two compiled passes over the plastic synapses replace the chains of tensor operations (each a full sweep
over ``[P, B]`` arrays, with temporaries) that the torch path runs once per decision:

- :func:`record`: ẽ ← γλ ẽ + L_post ē and the entropy direction += H_post ē, in one pass;
- :func:`apply`: Δw = η (c_H · entropy direction + M ẽ / ℓ), w ← clamp(w + Δw, 0, w_max)
  and the entropy direction cleared, in one pass; returns mean |Δw|.

Same equations and results as the torch path to float32 rounding (tested); used when the brain's backend is
``"numba"`` (the CPU default) and the batch is 1: there the passes take 1.5–2.5× less time than the tensor path
at 96×200 and up to 1.4× less at 96×20 (``record`` + ``apply`` per decision, medians of alternating runs on a
2-core VM), while at batch 16 the tensor path's vectorised batch sums were 2–3× faster than compiled loops.
From ``PARALLEL_MIN_SYNAPSES`` plastic synapses on, both run in ``BLOCKS`` blocks on numba's threads when there
are several (:func:`~encephagen_gym.plasticity.eprop_kernel.launch`): the same values on any thread count (the
logged Σ |Δw|, a float64 sum taken block by block in parallel, to float64 rounding).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from encephagen_gym.brain.cpu_kernel import cached_for
from encephagen_gym.plasticity.eprop_kernel import BLOCKS, _float32_view, _view, launch

__all__ = ["apply", "record"]


@numba.njit(inline="always")
def _record_range(start, stop, post_local, eligibility, recurrent, signal, decay, entropy_signal, entropy,
                  use_entropy):  # fmt: skip
    for p in range(start, stop):
        post, value = post_local[p], eligibility[p]
        recurrent[p] = recurrent[p] * decay + signal[post] * value
        if use_entropy:
            entropy[p] += entropy_signal[post] * value


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _record_pass(post_local, eligibility, recurrent, signal, decay, entropy_signal, entropy, use_entropy):
    """One brain: ``eligibility``/``recurrent``/``entropy`` ``[P]``, ``signal``/``entropy_signal`` ``[V]``."""
    _record_range(0, post_local.shape[0], post_local, eligibility, recurrent, signal, decay, entropy_signal, entropy,
                  use_entropy)  # fmt: skip


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def _record_pass_parallel(post_local, eligibility, recurrent, signal, decay, entropy_signal, entropy, use_entropy):
    """:func:`_record_pass` in ``BLOCKS`` blocks on numba's threads (the same values)."""
    n = post_local.shape[0]
    for c in numba.prange(BLOCKS):
        _record_range(c * n // BLOCKS, (c + 1) * n // BLOCKS, post_local, eligibility, recurrent, signal, decay,
                      entropy_signal, entropy, use_entropy)  # fmt: skip


@numba.njit(inline="always")
def _apply_range(start, stop, by_id, synapses_by_id, w_max_by_id, weights, recurrent, coefficient, entropy, alpha,
                 beta):  # fmt: skip
    total = 0.0
    zero = np.float32(0.0)
    scale = alpha * coefficient
    for q in range(start, stop):
        p = by_id[q]
        delta = beta * entropy[p] + scale * recurrent[p]
        total += abs(delta)
        synapse = synapses_by_id[q]
        weights[synapse] = min(max(weights[synapse] + delta, zero), w_max_by_id[q])
        entropy[p] = zero
    return total


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _apply_pass(by_id, synapses_by_id, w_max_by_id, weights, recurrent, coefficient, entropy, alpha, beta):
    """One brain: Δw = β entropy + α c ẽ per synapse; returns Σ |Δw|. The synapses are visited in increasing
    weight index (``by_id``), so that the weight array is swept in order: in the projection's order (by delay,
    then presynaptic neuron) the scattered writes took 2× longer at 96×200 (1.6 against 0.8 ms per decision,
    standalone, caches flushed before each pass). (Summing block by block here, as the parallel pass does, made
    it 35 % slower: 1.2 against 0.9 ms at 96×200.)"""
    return _apply_range(0, by_id.shape[0], by_id, synapses_by_id, w_max_by_id, weights, recurrent, coefficient,
                        entropy, alpha, beta)  # fmt: skip


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def _apply_pass_parallel(by_id, synapses_by_id, w_max_by_id, weights, recurrent, coefficient, entropy, alpha, beta):
    """:func:`_apply_pass` in ``BLOCKS`` blocks on numba's threads (the same weights; the sum to rounding)."""
    n = by_id.shape[0]
    partial = np.zeros(BLOCKS)
    for c in numba.prange(BLOCKS):
        partial[c] = _apply_range(c * n // BLOCKS, (c + 1) * n // BLOCKS, by_id, synapses_by_id, w_max_by_id,
                                  weights, recurrent, coefficient, entropy, alpha, beta)  # fmt: skip
    total = 0.0
    for c in range(BLOCKS):
        total += partial[c]
    return total


_INDEX: dict = {}


def _indices(projection) -> tuple[np.ndarray, ...]:
    """int32/int64 numpy copies of the projection's synapse tables, made once per projection: ``post_local``,
    and, in increasing weight index, the positions ``by_id``, the weight indices and their bounds."""

    def build() -> tuple[np.ndarray, ...]:
        return (
            projection.post_local.numpy().astype(np.int32),
            projection.by_id.numpy().astype(np.int32),
            projection.synapses_by_id.numpy().astype(np.int64),
            projection.w_max_by_id.numpy().astype(np.float32),
        )

    return cached_for(_INDEX, projection.post_local, build)


def record(projection, eligibility: torch.Tensor, recurrent: torch.Tensor, signal: torch.Tensor, decay: float,
           entropy_signal: torch.Tensor | None, entropy: torch.Tensor) -> None:  # fmt: skip
    """ẽ ← ``decay`` ẽ + L ē (``recurrent`` ``[P, 1]``, in place) for learning signals ``signal`` ``[1, V]``, and
    ``entropy`` ``[P]`` += H ē for ``entropy_signal`` ``[1, V]`` (None: no entropy term). One brain (batch 1)."""
    post_local = _indices(projection)[0]
    use_entropy = entropy_signal is not None
    signal_row = _float32_view(signal)
    entropy_row = _float32_view(entropy_signal) if use_entropy else signal_row
    launch(_record_pass, _record_pass_parallel, post_local.shape[0], post_local, _float32_view(eligibility),
           _view(recurrent), signal_row, np.float32(decay), entropy_row, _view(entropy), use_entropy)  # fmt: skip


def apply(projection, weights: torch.Tensor, recurrent: torch.Tensor, coefficient: float, entropy: torch.Tensor,
          alpha: float, beta: float) -> torch.Tensor:  # fmt: skip
    """w ← clamp(w + Δw, 0, w_max) with Δw = ``beta`` · entropy + ``alpha`` · ``coefficient`` · ẽ (``recurrent``
    ``[P, 1]``; in place, like :func:`~encephagen_gym.plasticity.projection.apply_weight_update`); clears
    ``entropy``. One brain (batch 1). Returns mean |Δw| (0-d tensor, mV)."""
    _, by_id, synapses, w_max = _indices(projection)
    total = launch(_apply_pass, _apply_pass_parallel, by_id.shape[0], by_id, synapses, w_max, _view(weights.detach()),
                   _float32_view(recurrent), np.float32(coefficient), _view(entropy), np.float32(alpha),
                   np.float32(beta))  # fmt: skip
    return torch.tensor(total / max(1, synapses.shape[0]), dtype=torch.float32)
