"""The one interface every learning rule follows, and the two records that carry what differs between rules.

A rule is a set of pure functions over ``(params, traces, activity)`` — like the brain's
``brain_step(network, weights, state, input)`` — wrapped by a thin class holding the params. Every rule
class offers the same six methods, so that an agent never needs to know which rule it drives:

- ``rule.init_traces(batch_size)``: zeroed traces (a mutable record of tensors; per-neuron factors
  ``[U|V, B]``, per-synapse ones ``[P, B]``);
- ``rule.step(traces, state)``: after every simulation step, update the traces from the step's pre/post
  activity (``state.spikes``, and ``state.v_pre_reset`` where the rule needs the membrane). **In place**;
  returns None;
- ``rule.record_decision(traces, decision)``: at every decision (environment step), register what the
  readout decided (:class:`Decision`); in place; a no-op for rules that do not use decisions;
- ``rule.weight_update(traces, signal)``: the change the rule would make now for a :class:`LearningSignal`
  (batch-averaged, not applied): ``[P]`` mV for a projection rule;
- ``rule.apply(weights, traces, signal)``: make that change (projection rules through
  :func:`~encephagen_gym.plasticity.projection.apply_weight_update`: clamp to ``[0, w_max]``, Dale's law),
  then forget the traces of the batch elements whose episode ended (``signal.done``); returns 0-d
  diagnostic tensors on the device (no host read);
- ``rule.reset_traces(traces, mask)``: clear the traces of the batch elements where ``mask`` is True (in place).

What a rule needs from the world travels in one :class:`LearningSignal`; a rule raises a ValueError naming
the field it needs when that field is missing.

| rule | traces updated by ``step`` | reads from ``LearningSignal`` |
|---|---|---|
| ``EProp`` (supervised e-prop) | ē (κ-filtered e-prop eligibility) | ``output_error`` |
| ``RewardEProp`` (actor-critic e-prop, recurrent weights) | ē; ẽ at decisions | ``modulator``, ``done`` |
| ``ReadoutActorCritic`` (readout weights) | — ; γλ-traces at decisions | ``td_error``, ``modulator``, ``done`` |
| ``RewardModulatedSTDP`` | STDP pairing traces, tags e | ``modulator``, ``done`` |
| ``SynapticScaling`` (homeostasis) | rate estimates ν̂ | ``elapsed_ms`` |
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from encephagen_gym.brain.decoders import ActorCriticOutput
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.validation import check_finite, check_shape

__all__ = ["Decision", "LearningSignal", "PlasticityRule", "keep_mask", "require"]


class Decision(NamedTuple):
    """What the actor-critic readout decided at one environment step, for ``B`` brains.

    ``output``: the readout's policy outputs ``[B, K]`` and values ``[B]``; ``actions``: the actions taken
    (``[B]`` int64 or ``[B, K]``); ``readout_trace``: the filtered spikes z̄ ``[B, M]`` the readout read."""

    output: ActorCriticOutput
    actions: torch.Tensor
    readout_trace: torch.Tensor


class LearningSignal(NamedTuple):
    """The third factors and context of one update (fields a rule does not use may stay None).

    ``td_error``: ``[B]`` the critic's TD error δ = r + γ V(s') − V(s), in reward units.
    ``modulator``: ``[B]`` the neuromodulator that gates actor and recurrent updates — the TD error scaled
    to unit size (see :class:`~encephagen_gym.plasticity.neuromodulation.TDErrorScaler`) or a reward minus a
    baseline. ``done``: ``[B]`` episodes that ended with the decision being credited (their γ-filtered traces
    are dropped after the update). ``output_error``: ``[B, K]`` readout error y − y* (supervised e-prop).
    ``elapsed_ms``: time since the previous update (homeostatic scaling). ``credited``: ``[B]`` 1 where this
    update credits the element's latest decision, 0 where it does not (e.g. the other envs of an update made
    for the episodes that just ended); None: every element."""

    td_error: torch.Tensor | None = None
    modulator: torch.Tensor | None = None
    done: torch.Tensor | None = None
    output_error: torch.Tensor | None = None
    elapsed_ms: float | None = None
    credited: torch.Tensor | None = None


def require(signal: LearningSignal, name: str, rule: str, shape: tuple[int | None, ...] | None = None) -> Any:
    """``signal.<name>``, or a ValueError saying that ``rule`` needs it; checks shape and finiteness of
    tensors (one device→host read: updates happen once per environment step, not per simulation step)."""
    value = getattr(signal, name)
    if value is None:
        raise ValueError(f"{rule} needs LearningSignal.{name}")
    if isinstance(value, torch.Tensor):
        if shape is not None:
            check_shape(name, value, shape)
        check_finite(name, value)
    return value


def keep_mask(done: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor | None:
    """``1 − done`` as a float ``[B]`` on ``device`` (None when ``done`` is None)."""
    if done is None:
        return None
    check_shape("done", done, (batch,))
    return 1.0 - done.to(device=device, dtype=torch.float32)


@runtime_checkable
class PlasticityRule(Protocol):
    """Structural type of a learning rule (see the module docstring)."""

    def init_traces(self, batch_size: int) -> Any: ...

    def step(self, traces: Any, state: BrainState) -> None: ...

    def record_decision(self, traces: Any, decision: Decision) -> None: ...

    def weight_update(self, traces: Any, signal: LearningSignal) -> Any: ...

    def apply(self, weights: torch.Tensor, traces: Any, signal: LearningSignal) -> dict[str, torch.Tensor]: ...

    def reset_traces(self, traces: Any, mask: torch.Tensor) -> None: ...
