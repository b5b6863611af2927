"""The one interface every learning rule follows.

A rule is a set of pure functions over ``(params, traces, activity)`` — like the brain's
``brain_step(network, weights, state, input)`` — wrapped by a thin class holding the params:

- ``rule.projection``: the :class:`~encephagen_gym.plasticity.projection.PlasticProjection` it may change;
- ``rule.init_traces(batch_size)``: zeroed traces (a NamedTuple of tensors; per-neuron factors ``[U|V, B]``,
  per-synapse ones ``[P, B]``);
- ``rule.step(traces, state)``: after every simulation step, update the traces from the step's pre/post
  activity (``state.spikes``, and ``state.v_pre_reset`` where the rule needs the membrane), in place;
- ``rule.weight_update(traces, *signals)``: the batch-averaged weight change ``Δw`` ``[P]`` (mV) from traces ×
  learning signal(s) — not yet applied;
- ``rule.apply(weights, ...)`` / :func:`~encephagen_gym.plasticity.projection.apply_weight_update`: add it,
  clamped to ``[0, w_max]`` (Dale's law: weights are non-negative magnitudes).

| rule | traces updated by ``step`` | signals of ``weight_update`` |
|---|---|---|
| ``EProp`` (supervised e-prop) | ē (κ-filtered e-prop eligibility) | learning signal L ``[B, V]``, rate |
| ``RewardEProp`` (actor-critic e-prop) | ē, readout trace z̄ | TD error δ ``[B]`` |
| ``RewardModulatedSTDP`` | STDP pairing traces, tags e | neuromodulator M ``[B]`` |
| ``SynapticScaling`` (homeostasis) | rate estimates ν̂ | weights, elapsed ms |
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.projection import PlasticProjection

__all__ = ["PlasticityRule"]


@runtime_checkable
class PlasticityRule(Protocol):
    """Structural type of a learning rule (see the module docstring)."""

    projection: PlasticProjection

    def init_traces(self, batch_size: int) -> Any: ...

    def step(self, traces: Any, state: BrainState) -> Any: ...

    def weight_update(self, traces: Any, *signals: Any) -> torch.Tensor: ...
