"""Feedback weights that turn readout errors into per-neuron learning signals (e-prop's B matrix).

``L_j = Σ_k B_jk g_k`` for the postsynaptic neurons j of a projection and an output gradient g ``[B, K]``:

- ``"symmetric"``: B_jk = W_out[k, col(j)] for neurons j that feed the readout (column col(j) of the readout
  weights), 0 for the others. Exact e-prop; follows the readout weights as they learn.
- ``"random"``: a fixed Gaussian B (std ``feedback_std``, default 1/√M with M readout inputs, the scale of
  the readout weights), drawn once from ``seed`` on the CPU (the same matrix on every device). Every
  postsynaptic neuron receives a learning signal (random feedback alignment; Bellec et al. 2020).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from encephagen_gym.plasticity.projection import PlasticProjection

__all__ = ["FEEDBACK_MODES", "Feedback", "feedback_matrix", "learning_signal", "make_feedback"]

FEEDBACK_MODES = ("symmetric", "random")


class Feedback(NamedTuple):
    """``mode``; ``random`` ``[V, K]`` (random mode) or None; ``readout_column`` ``[V]`` int64: column of
    each postsynaptic neuron in the readout weights, or M (a zero column) if it does not feed the readout."""

    mode: str
    random: torch.Tensor | None
    readout_column: torch.Tensor


def make_feedback(
    projection: PlasticProjection,
    readout_inputs: torch.Tensor,
    n_outputs: int,
    mode: str = "symmetric",
    feedback_std: float | None = None,
    seed: int = 0,
) -> Feedback:
    """Feedback for ``n_outputs`` readout units reading neurons ``readout_inputs`` ``[M]``."""
    if mode not in FEEDBACK_MODES:
        raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {mode!r}")
    n_inputs = int(readout_inputs.numel())
    device = projection.device
    lookup = torch.full((projection.n_neurons,), n_inputs, dtype=torch.int64, device=device)
    lookup[readout_inputs] = torch.arange(n_inputs, device=device)
    column = lookup.index_select(0, projection.post_neurons)
    random = None
    if mode == "random":
        std = 1.0 / math.sqrt(n_inputs) if feedback_std is None else float(feedback_std)
        generator = torch.Generator()
        generator.manual_seed(seed)
        random = (torch.randn((projection.n_post, n_outputs), generator=generator) * std).to(device)
    return Feedback(mode=mode, random=random, readout_column=column)


def feedback_matrix(feedback: Feedback, readout_weight: torch.Tensor) -> torch.Tensor:
    """B ``[V, K]``: the random matrix, or W_outᵀ restricted to the postsynaptic neurons (symmetric)."""
    if feedback.random is not None:
        return feedback.random
    padded = torch.cat([readout_weight, readout_weight.new_zeros((readout_weight.shape[0], 1))], dim=1)
    return padded.index_select(1, feedback.readout_column).t()


def learning_signal(matrix: torch.Tensor, output_gradient: torch.Tensor) -> torch.Tensor:
    """L = g Bᵀ, ``[B, V]``, for output gradients ``g`` ``[B, K]`` and feedback ``B`` ``[V, K]``."""
    return output_gradient @ matrix.t()
