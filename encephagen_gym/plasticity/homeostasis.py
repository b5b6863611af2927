"""Homeostatic synaptic scaling (Turrigiano et al. 1998): each neuron multiplies all its incoming excitatory
weights by a common factor that pulls its firing rate toward a target, slowly.

Per postsynaptic neuron j (rate estimate from its own spikes, averaged over the batch, which shares the
weights)::

    ν̂_j(t) = λ ν̂_j(t−1) + (1 − λ) z_j(t) / dt                 λ = e^{−dt/τ_rate}     (Hz)
    w_ji  ← w_ji · (1 + (Δt/τ_scaling) · (ν_target − ν̂_j)/ν_target)                   (every update)

with Δt the time since the last update. Multiplicative scaling keeps the relative strengths of a neuron's
inputs (what other rules have learned) while moving its total excitatory drive. Weights are then clamped to
[0, w_max] like every other update.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from encephagen_gym.brain.network import Network
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.base import Decision, LearningSignal, require
from encephagen_gym.plasticity.delays import gather_rows
from encephagen_gym.plasticity.projection import PlasticProjection, apply_weight_update
from encephagen_gym.plasticity.validation import check_activity

__all__ = [
    "ScalingConfig",
    "ScalingParams",
    "ScalingTraces",
    "SynapticScaling",
    "init_scaling_traces",
    "make_scaling_params",
    "scaling_trace_step",
    "scaling_update",
]


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """``target_rate_hz`` ν_target; ``tau_rate_ms`` τ of the rate estimate; ``tau_scaling_ms`` τ of the
    scaling (slow: seconds to hours in biology; shorten it in small experiments)."""

    target_rate_hz: float = 8.0
    tau_rate_ms: float = 1000.0
    tau_scaling_ms: float = 100_000.0

    def __post_init__(self) -> None:
        for name in ("target_rate_hz", "tau_rate_ms", "tau_scaling_ms"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")


class ScalingParams(NamedTuple):
    """Constants: the projection (excitatory inputs of the scaled neurons), λ of the rate estimate, the
    rate gain (1 − λ)·1000/dt (Hz per spike), ν_target and τ_scaling."""

    projection: PlasticProjection
    rate_decay: float
    rate_gain: float
    target_rate_hz: float
    tau_scaling_ms: float


@dataclasses.dataclass(eq=False)
class ScalingTraces:
    """``rate_hz`` ``[V, B]``: rate estimate ν̂ of each postsynaptic neuron; ``time`` steps seen."""

    rate_hz: torch.Tensor
    time: int


def make_scaling_params(projection: PlasticProjection, dt_ms: float, config: ScalingConfig) -> ScalingParams:
    decay = math.exp(-dt_ms / config.tau_rate_ms)
    return ScalingParams(projection, decay, (1.0 - decay) * 1000.0 / dt_ms, config.target_rate_hz,
                         config.tau_scaling_ms)  # fmt: skip


def init_scaling_traces(params: ScalingParams, batch_size: int) -> ScalingTraces:
    """Rate estimates start at the target (no scaling before the neuron has been observed)."""
    shape = (params.projection.n_post, batch_size)
    return ScalingTraces(torch.full(shape, params.target_rate_hz, device=params.projection.device), 0)


def scaling_trace_step(params: ScalingParams, traces: ScalingTraces, spikes: torch.Tensor) -> None:
    """Update the rate estimates from one step's ``spikes`` ``[B, N]``, in place."""
    z_post = spikes.index_select(1, params.projection.post_neurons).t()
    traces.rate_hz.mul_(params.rate_decay).add_(z_post, alpha=params.rate_gain)
    traces.time += 1


def scaling_update(
    params: ScalingParams, traces: ScalingTraces, weights: torch.Tensor, elapsed_ms: float
) -> torch.Tensor:
    """Δw ``[P]`` (mV) = w · (Δt/τ_scaling) · (ν_target − ν̂_j)/ν_target with ν̂ averaged over the batch."""
    rate = traces.rate_hz.mean(dim=1, keepdim=True)  # [V, 1]
    factor = (params.target_rate_hz - rate) * (elapsed_ms / (params.tau_scaling_ms * params.target_rate_hz))
    per_synapse = gather_rows(factor, params.projection.post_local).squeeze(1)
    return weights.index_select(0, params.projection.synapses) * per_synapse


class SynapticScaling:
    """Homeostatic scaling of the excitatory inputs of ``projection``'s postsynaptic neurons (build the
    projection with :func:`~encephagen_gym.plasticity.projection.incoming_projection`). Updates read
    ``LearningSignal(elapsed_ms=...)``, the time since the previous update."""

    def __init__(self, network: Network, projection: PlasticProjection, config: ScalingConfig | None = None,
                 **overrides: object) -> None:  # fmt: skip
        config = config or ScalingConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if projection.n_neurons != network.n_neurons:
            raise ValueError("the projection was built for another network")
        if not bool(projection.is_excitatory.all()):
            raise ValueError("synaptic scaling acts on excitatory synapses; build the projection with "
                             "excitatory_only=True")  # fmt: skip
        self.config = config
        self.network = network
        self.projection = projection
        self.params = make_scaling_params(projection, network.config.dt_ms, config)

    def init_traces(self, batch_size: int) -> ScalingTraces:
        return init_scaling_traces(self.params, batch_size)

    def step(self, traces: ScalingTraces, state: BrainState | torch.Tensor) -> None:
        """Update the rate estimates after one step, in place (``state`` or its ``[B, N]`` spikes)."""
        spikes = state if isinstance(state, torch.Tensor) else state.spikes
        check_activity(spikes, traces.rate_hz.shape[1], self.network.n_neurons)
        scaling_trace_step(self.params, traces, spikes)

    def record_decision(self, traces: ScalingTraces, decision: Decision) -> None:
        """Nothing to record: scaling follows firing rates only."""

    def weight_update(self, weights: torch.Tensor, traces: ScalingTraces, signal: LearningSignal) -> torch.Tensor:
        """Δw ``[P]`` for ``signal.elapsed_ms`` of scaling at the current rate estimates."""
        elapsed_ms = require(signal, "elapsed_ms", "SynapticScaling")
        if not (isinstance(elapsed_ms, int | float) and math.isfinite(elapsed_ms) and elapsed_ms >= 0):
            raise ValueError(f"elapsed_ms must be a finite number >= 0, got {elapsed_ms!r}")
        return scaling_update(self.params, traces, weights, elapsed_ms)

    def apply(self, weights: torch.Tensor, traces: ScalingTraces, signal: LearningSignal) -> dict[str, torch.Tensor]:
        """Scale the weights in place (clamped to [0, w_max]); returns the mean |Δw| (mV). Rate estimates
        are kept across episodes (homeostasis is slow and not tied to episodes)."""
        delta = self.weight_update(weights, traces, signal)
        apply_weight_update(weights, self.projection, delta, check_finite=False)
        return {"mean_abs_dw_mv": delta.abs().mean()}

    def reset_traces(self, traces: ScalingTraces, mask: torch.Tensor) -> None:
        """Nothing to clear: a neuron's rate estimate outlives an episode."""
