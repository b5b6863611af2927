"""Neuromodulator signals for three-factor rules: reward minus a running baseline.

Frémaux & Gerstner (2016): a three-factor rule estimates a reward gradient only if the modulator has zero
mean, M = r − E[r]; the expectation is tracked by a running average. ``RewardBaseline`` keeps one baseline
per batch element::

    M = r − r̄,   then   r̄ ← r̄ + α (r − r̄)        (α = 1 − e^{−1/τ} per update, τ in updates)
"""

from __future__ import annotations

import math

import torch

from encephagen_gym.plasticity.validation import check_finite, check_rate, check_shape

__all__ = ["RewardBaseline", "TDErrorScaler", "baseline_modulator"]


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


class TDErrorScaler:
    """The third factor of actor and recurrent updates: the TD error divided by its running RMS.

    M = clip(δ / √(v̂ + ε), −``clip``, ``clip``) with v̂ a running mean of δ² over the batch (time constant
    ``tau_updates`` calls; corrected for its start at zero as Adam corrects its moments). The sign and relative size
    of δ are kept while its scale — set by the task's reward units and by how well the critic already
    predicts — is removed, so that one learning rate serves every task. ``scale(δ)`` folds the batch into v̂ and
    returns M (no host read). Where rewards are rare, most steps' δ is ≈ 0 and an RMS over every step is small, so
    the first small penalty arrives at the clip and weighs as much as a large reward; ``scale(δ, counted=...)``
    lets only some steps (e.g. those with an outcome) set v̂, while all are scaled by it. ``floor`` (in the TD
    error's units, default 0: none) is the least divisor, M = clip(δ / max(√(v̂ + ε), floor)): while the only
    outcomes are small penalties, their own RMS would scale each of them to unit size; with a floor set to the
    size of a task's reward they stay small beside it."""

    def __init__(self, tau_updates: float = 1000.0, clip: float = 5.0, eps: float = 1e-8,
                 device: torch.device | str = "cpu", floor: float = 0.0) -> None:  # fmt: skip
        if not (isinstance(tau_updates, int | float) and math.isfinite(tau_updates) and tau_updates >= 1):
            raise ValueError(f"tau_updates must be a number >= 1, got {tau_updates!r}")
        if not (isinstance(clip, int | float) and clip > 0):
            raise ValueError(f"clip must be a positive number, got {clip!r}")
        self.decay = math.exp(-1.0 / tau_updates)
        self.clip = float(clip)
        self.eps = float(eps)
        self.floor = check_rate("floor", floor)
        self.mean_square = torch.zeros((), device=device)
        self.weight_sum = torch.zeros((), device=device)  # bias correction: Σ of the EMA's weights so far

    def scale(self, td_error: torch.Tensor, include: torch.Tensor | None = None,
              counted: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """M ``[B]`` for TD errors ``[B]``, after folding them into the running RMS. ``include`` (``[B]``
        0/1) limits both to some elements (the others get M = 0 and do not count); ``counted`` (``[B]`` 0/1)
        further limits which included elements enter the RMS (all of them are scaled). No host read."""
        td = td_error.detach()
        in_rms = include if counted is None else (counted if include is None else counted * include)
        if in_rms is None:
            batch_mean = td.square().mean()
            weight = torch.ones((), device=td.device)
        else:
            in_rms = in_rms.to(td.dtype)
            count = in_rms.sum()
            batch_mean = (td.square() * in_rms).sum() / count.clamp(min=1.0)
            weight = (count > 0).to(td.dtype)  # a batch with no counted element leaves v̂ as it was
        rate = (1.0 - self.decay) * weight
        self.mean_square.mul_(1.0 - rate).add_(rate * batch_mean)
        self.weight_sum.mul_(1.0 - rate).add_(rate)
        variance = self.mean_square / self.weight_sum.clamp(min=1e-12)
        scaled = (td_error / (variance + self.eps).sqrt().clamp(min=self.floor)).clamp(-self.clip, self.clip)
        return scaled if include is None else scaled * include

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean_square": self.mean_square.clone(), "weight_sum": self.weight_sum.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.mean_square.copy_(state["mean_square"])
        self.weight_sum.copy_(state["weight_sum"])
