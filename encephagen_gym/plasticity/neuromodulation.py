"""Neuromodulator signals for three-factor rules: reward minus a running baseline.

Frémaux & Gerstner (2016): a three-factor rule estimates a reward gradient only if the modulator has zero
mean, M = r − E[r]; the expectation is tracked by a running average. ``RewardBaseline`` keeps one baseline
per batch element::

    M = r − r̄,   then   r̄ ← r̄ + α (r − r̄)        (α = 1 − e^{−1/τ} per update, τ in updates)
"""

from __future__ import annotations

import math

import torch

from encephagen_gym.plasticity.validation import check_finite, check_shape

__all__ = ["RewardBaseline", "baseline_modulator"]


def baseline_modulator(baseline: torch.Tensor, reward: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, new_baseline)`` with M = r − r̄ and r̄ ← r̄ + rate·(r − r̄); pure (does not modify inputs)."""
    modulator = reward - baseline
    return modulator, baseline + rate * modulator


class RewardBaseline:
    """A running reward baseline for ``batch_size`` brains with time constant ``tau_updates`` (in calls)."""

    def __init__(self, batch_size: int, tau_updates: float = 100.0, device: torch.device | str = "cpu",
                 initial: float = 0.0) -> None:  # fmt: skip
        if not (isinstance(tau_updates, int | float) and math.isfinite(tau_updates) and tau_updates > 0):
            raise ValueError(f"tau_updates must be a positive number, got {tau_updates!r}")
        self.rate = 1.0 - math.exp(-1.0 / tau_updates)
        self.baseline = torch.full((batch_size,), float(initial), device=device)

    def modulator(self, reward: torch.Tensor, check: bool = True) -> torch.Tensor:
        """M = r − r̄ ``[B]`` for rewards ``[B]``, then update r̄."""
        check_shape("reward", reward, tuple(self.baseline.shape))
        if check:
            check_finite("reward", reward)
        reward = reward.to(self.baseline.dtype)
        modulator, self.baseline = baseline_modulator(self.baseline, reward, self.rate)
        return modulator
