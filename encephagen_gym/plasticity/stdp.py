r"""Three-factor reward-modulated STDP (Izhikevich 2007; Frémaux & Gerstner 2016).

All-to-all pair-based STDP with exponential traces, read at the synapse:

    x_i(t) = λ₊ x_i(t−1) + z_i(t)        presynaptic trace (τ₊, per neuron)
    y_j(t) = λ₋ y_j(t−1) + z_j(t)        postsynaptic trace (τ₋, per neuron)
    STDP_ji(t) = A₊ x_i(t−d) z_j(t) − A₋ λ₋ y_j(t−1) z_i(t−d)

with λ = e^{−dt/τ}. A presynaptic spike counts when it *arrives* at the synapse (after the conduction delay
d: ``x_i(t−d)``, ``z_i(t−d)`` from a delayed history), so "pre before post" means arrival before the
postsynaptic spike; an arrival in the same step as a postsynaptic spike counts as pre-before-post (LTP) and
not as LTD (the LTD term reads the postsynaptic trace without this step's spike). So a pairing with the
postsynaptic spike Δ steps after the arrival adds A₊ e^{−Δ dt/τ₊}, Δ steps before it −A₋ e^{−Δ dt/τ₋}.

The STDP terms do not change the weights. They feed a slow per-synapse eligibility trace (the synaptic
"tag"), and a neuromodulator M (e.g. dopamine: reward minus a running baseline, or a TD error) turns tags
into weight changes:

    e_ji(t) = λ_e e_ji(t−1) + STDP_ji(t)       λ_e = e^{−dt/τ_e}, τ_e ≈ 0.2–1 s
    Δw_ji   = η · mean_b M_b · e_ji,b           (whenever a modulator value is applied)

This solves the distal-reward problem: a pairing that is followed by reward within ~τ_e is reinforced,
while unrelated pairings average out because M has zero mean. Units: traces are dimensionless (1 per spike),
A₊, A₋ and e are in mV, η is per unit of M.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from encephagen_gym.brain.network import Network
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.base import Decision, LearningSignal, require
from encephagen_gym.plasticity.delays import (
    DelayedHistory,
    gather_rows,
    history_gather,
    history_push,
    init_history,
)
from encephagen_gym.plasticity.projection import PlasticProjection, apply_weight_update
from encephagen_gym.plasticity.validation import check_activity

__all__ = [
    "RewardModulatedSTDP",
    "StdpConfig",
    "StdpParams",
    "StdpTraces",
    "init_stdp_traces",
    "make_stdp_params",
    "modulated_update",
    "reset_stdp_traces",
    "stdp_trace_step",
]


@dataclasses.dataclass(frozen=True)
class StdpConfig:
    """STDP window and eligibility: ``tau_plus_ms``/``tau_minus_ms`` (≈ 20 ms), amplitudes ``a_plus_mv`` and
    ``a_minus_mv`` (mV per pairing; A₋ slightly larger than A₊ makes uncorrelated firing depress the tags on
    average, as in Izhikevich 2007), ``tau_eligibility_ms`` τ_e of the synaptic tag, ``learning_rate`` η."""

    tau_plus_ms: float = 20.0
    tau_minus_ms: float = 20.0
    a_plus_mv: float = 0.01
    a_minus_mv: float = 0.012
    tau_eligibility_ms: float = 500.0
    learning_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tau_plus_ms", "tau_minus_ms", "tau_eligibility_ms"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of ms, got {value!r}")
        for name in ("a_plus_mv", "a_minus_mv", "learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class StdpParams(NamedTuple):
    """Constants: the projection, per-step decays λ₊, λ₋, λ_e, amplitudes A₊, A₋ (mV) and η."""

    projection: PlasticProjection
    decay_plus: float
    decay_minus: float
    decay_eligibility: float
    a_plus: float
    a_minus: float
    learning_rate: float


@dataclasses.dataclass(eq=False)
class StdpTraces:
    """``pre`` ``[U, B]`` x; ``pre_history``/``spike_history``: delayed rings of x and z; ``post`` ``[V, B]``
    y; ``eligibility`` ``[P, B]`` the synaptic tags e (mV); ``time`` steps seen."""

    pre: torch.Tensor
    pre_history: DelayedHistory
    spike_history: DelayedHistory
    post: torch.Tensor
    eligibility: torch.Tensor
    time: int


def make_stdp_params(projection: PlasticProjection, dt_ms: float, config: StdpConfig) -> StdpParams:
    """Per-step constants for simulation step ``dt_ms``."""
    return StdpParams(
        projection=projection,
        decay_plus=math.exp(-dt_ms / config.tau_plus_ms),
        decay_minus=math.exp(-dt_ms / config.tau_minus_ms),
        decay_eligibility=math.exp(-dt_ms / config.tau_eligibility_ms),
        a_plus=config.a_plus_mv,
        a_minus=config.a_minus_mv,
        learning_rate=config.learning_rate,
    )


def init_stdp_traces(params: StdpParams, batch_size: int) -> StdpTraces:
    """Zero traces for ``batch_size`` brains."""
    proj = params.projection
    device = proj.device

    def history() -> DelayedHistory:
        return init_history(proj.pre_local, proj.delay_steps, proj.n_pre, proj.max_delay_steps, batch_size)

    return StdpTraces(
        pre=torch.zeros((proj.n_pre, batch_size), device=device),
        pre_history=history(),
        spike_history=history(),
        post=torch.zeros((proj.n_post, batch_size), device=device),
        eligibility=torch.zeros((proj.n_synapses, batch_size), device=device),
        time=0,
    )


def stdp_trace_step(params: StdpParams, traces: StdpTraces, spikes: torch.Tensor) -> None:
    """One simulation step, in place, from the step's ``spikes`` ``[B, N]``."""
    proj = params.projection
    time = traces.time + 1
    z_pre = spikes.index_select(1, proj.pre_neurons).t()  # [U, B]
    z_post = spikes.index_select(1, proj.post_neurons).t().contiguous()  # [V, B]
    traces.pre.mul_(params.decay_plus).add_(z_pre)
    history_push(traces.pre_history, traces.pre, time)
    history_push(traces.spike_history, z_pre, time)
    pre_arrived = history_gather(traces.pre_history, time)  # x_i(t − d), [P, B]
    spike_arrived = history_gather(traces.spike_history, time)  # z_i(t − d)
    post_spike = gather_rows(z_post, proj.post_local)
    traces.post.mul_(params.decay_minus)  # λ₋ y_j(t − 1): the trace now, without this step's spike
    post_before = gather_rows(traces.post, proj.post_local)
    eligibility = traces.eligibility.mul_(params.decay_eligibility)
    eligibility.addcmul_(pre_arrived, post_spike, value=params.a_plus)
    eligibility.addcmul_(post_before, spike_arrived, value=-params.a_minus)
    traces.post.add_(z_post)
    traces.time = time


def reset_stdp_traces(traces: StdpTraces, mask: torch.Tensor) -> None:
    """Zero the pairing traces, histories and tags of the batch elements where ``mask`` is True (in place)."""
    keep = 1.0 - mask.to(device=traces.eligibility.device, dtype=traces.eligibility.dtype)
    for tensor in (traces.pre, traces.pre_history.buffer, traces.spike_history.buffer, traces.post,
                   traces.eligibility):  # fmt: skip
        tensor.mul_(keep)


def modulated_update(params: StdpParams, traces: StdpTraces, modulator: torch.Tensor) -> torch.Tensor:
    """Δw ``[P]`` (mV) = η · mean_b M_b e_b for a neuromodulator value ``modulator`` ``[B]``."""
    batch = traces.eligibility.shape[1]
    return traces.eligibility @ modulator.to(traces.eligibility.dtype) * (params.learning_rate / batch)


class RewardModulatedSTDP:
    """Three-factor STDP on ``projection`` (see the module docstring).

    Per simulation step call :meth:`step`; whenever a neuromodulator value is available (every step for a
    continuous dopamine signal, at rewards, or a TD error every environment step), :meth:`apply` the update
    it gates with ``LearningSignal(modulator=M)``. Use
    :class:`~encephagen_gym.plasticity.neuromodulation.RewardBaseline` for M = r − r̄.
    ``learning_rate`` (η, initialised from the config) may be changed between updates (schedules)."""

    def __init__(self, network: Network, projection: PlasticProjection, config: StdpConfig | None = None,
                 **overrides: object) -> None:  # fmt: skip
        config = config or StdpConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if projection.n_neurons != network.n_neurons:
            raise ValueError("the projection was built for another network")
        self.config = config
        self.network = network
        self.projection = projection
        self.params = make_stdp_params(projection, network.config.dt_ms, config)
        self.learning_rate = config.learning_rate

    def init_traces(self, batch_size: int) -> StdpTraces:
        """Zero traces for ``batch_size`` brains."""
        return init_stdp_traces(self.params, batch_size)

    def step(self, traces: StdpTraces, state: BrainState | torch.Tensor) -> None:
        """Update the traces after one step, in place; ``state`` is a brain state or a ``[B, N]`` spike tensor."""
        spikes = state if isinstance(state, torch.Tensor) else state.spikes
        check_activity(spikes, traces.eligibility.shape[1], self.network.n_neurons)
        stdp_trace_step(self.params, traces, spikes)

    def record_decision(self, traces: StdpTraces, decision: Decision) -> None:
        """Nothing to record: the tags do not depend on decisions."""

    def weight_update(self, weights: torch.Tensor, traces: StdpTraces, signal: LearningSignal) -> torch.Tensor:
        """Δw ``[P]`` = η · mean_b M_b e_b for ``signal.modulator`` ``[B]``."""
        modulator = require(signal, "modulator", "RewardModulatedSTDP", (traces.eligibility.shape[1],))
        params = self.params._replace(learning_rate=self.learning_rate)
        return modulated_update(params, traces, modulator)

    def apply(self, weights: torch.Tensor, traces: StdpTraces, signal: LearningSignal) -> dict[str, torch.Tensor]:
        """Apply the gated update (clamped to [0, w_max], Dale's law), then clear the traces of finished
        episodes (``signal.done``); returns the mean |Δw| (mV)."""
        delta = self.weight_update(weights, traces, signal)
        apply_weight_update(weights, self.projection, delta, check_finite=False)
        if signal.done is not None:
            self.reset_traces(traces, signal.done.bool())
        return {"mean_abs_dw_mv": delta.abs().mean()}

    def reset_traces(self, traces: StdpTraces, mask: torch.Tensor) -> None:
        """Clear the traces of the batch elements where ``mask`` is True."""
        reset_stdp_traces(traces, mask)
