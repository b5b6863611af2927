r"""Reward-based e-prop (Bellec et al. 2020, "reward-based e-prop"): an online actor-critic for the brain.

**Loss.** With a policy readout π(a|y) and a value readout V (an
:class:`~encephagen_gym.brain.decoders.ActorCriticReadout`), actor-critic minimises
E = E_π + c_V E_V − c_H H with E_π = −Σ_n (R_n − V_n) log π(a_n), E_V = ½ Σ_n (R_n − V_n)² (R_n the
discounted return) and the policy entropy H. Writing R_n − V_n = Σ_{m≥n} γ^{m−n} δ_m with the TD error
δ_m = r_m + γ V_{m+1} − V_m turns both sums into a forward-in-time rule (the paper's derivation):

    Δw_ji = η Σ_n δ_n ẽ_ji(n),     ẽ_ji(n) = γ ẽ_ji(n−1) + L_j(n) ē_ji(t_n)
    L_j(n) = Σ_k B^π_jk ∂log π(a_n)/∂y_k + c_V B^V_j                 (policy and value learning signals)

so the TD error is the third factor and the "γ-filtered eligibility" ẽ carries the product of learning
signal and e-prop eligibility ē (see :mod:`encephagen_gym.plasticity.eprop`) across decisions. The entropy
term needs no δ: Δw_ji += η c_H Σ_n (Σ_k B^π_jk ∂H/∂y_k) ē_ji(t_n). The readout weights learn with the same
three-factor form using their exact local gradients (∂log π/∂W^π_kj = score_k z̄_j, ∂V/∂w^V_j = z̄_j).

**Time scales.** The brain runs ``substeps`` simulation steps per environment step. ē (κ-filtered, κ per
simulation step) is updated every simulation step by :meth:`RewardEProp.step`; decisions, rewards and TD
errors happen once per environment step, so L_j is non-zero only at the decision step t_n that ends
each environment step, and ẽ decays by γ per *environment* step (γ is the agent's discount).

**Loop (one environment step)**::

    for _ in range(brain.substeps(env_dt_ms)):
        state = brain.step(state, encoder(obs)); traces = rule.step(traces, state)
    out = rule.evaluate(traces)                                  # policy [B, K], value [B]
    if previous is not None:                                     # δ for the previous decision
        delta = rule.td_error(reward, done, previous.value, out.value)
        rule.reinforce(brain.weights, traces, delta, done)       # applies Δw, resets ẽ where done
    action = readout.sample(out, generator)
    traces = rule.record_decision(traces, out, action)           # L_j, ẽ ← γ ẽ + L ē
    obs, reward, done = env.step(action); previous = out

Weights change only in :meth:`RewardEProp.reinforce` (recurrent projection: clamped to [0, w_max], Dale's
law; readout parameters: unbounded).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from encephagen_gym.brain.decoders import ActorCriticOutput, ActorCriticReadout
from encephagen_gym.brain.network import Network, check_same_network
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.eprop import (
    DEFAULT_GAMMA_PD,
    EpropTraces,
    eprop_trace_step,
    init_eprop_traces,
    make_eprop_params,
    per_synapse_signal,
)
from encephagen_gym.plasticity.feedback import FEEDBACK_MODES, feedback_matrix, learning_signal, make_feedback
from encephagen_gym.plasticity.projection import PlasticProjection, apply_weight_update
from encephagen_gym.plasticity.validation import (
    check_activity,
    check_finite,
    check_shape,
    check_state_network,
    check_synapse_rows,
)

__all__ = ["RewardEProp", "RewardEpropConfig", "RewardEpropTraces"]


@dataclasses.dataclass(frozen=True)
class RewardEpropConfig:
    """Hyper-parameters of reward-based e-prop.

    ``gamma``: discount per environment step. ``learning_rate``: η of the recurrent weights (mV per unit of
    δ·ẽ). ``readout_learning_rate``: η of the readout parameters. ``value_coef`` c_V, ``entropy_coef``
    c_H. ``feedback``: ``"random"`` (fixed Gaussian B^π, B^V, every postsynaptic neuron learns) or
    ``"symmetric"`` (B^π = W^πᵀ, B^V = w^V on the neurons that feed the readout). ``feedback_std``: std of
    the random feedback (default 1/√M). ``gamma_pd``: pseudo-derivative dampening. ``seed``: feedback draw.
    """

    gamma: float = 0.99
    learning_rate: float = 1.0
    readout_learning_rate: float = 0.05
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    feedback: str = "random"
    feedback_std: float | None = None
    gamma_pd: float = DEFAULT_GAMMA_PD
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        for name in ("learning_rate", "readout_learning_rate", "value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {self.feedback!r}")


class RewardEpropTraces(NamedTuple):
    """State of reward-based e-prop for a batch of B brains (tensors updated in place).

    ``eprop``: the κ-filtered eligibility ē and its per-neuron traces; ``readout`` ``[B, M]``: filtered
    spikes z̄ of the readout inputs; γ-filtered traces: ``recurrent`` ``[P, B]`` (ẽ), ``policy_weight``
    ``[B, K, M]``, ``policy_bias`` ``[B, K]``, ``value_weight`` ``[B, M]``, ``value_bias`` ``[B]``,
    ``log_std`` ``[B, K]`` (continuous actions, else None); entropy-bonus directions accumulated since the
    last :meth:`RewardEProp.reinforce` (batch means): ``entropy_recurrent`` ``[P]``,
    ``entropy_policy_weight`` ``[K, M]``, ``entropy_policy_bias`` ``[K]``, ``entropy_log_std`` ``[K]`` or
    None."""

    eprop: EpropTraces
    readout: torch.Tensor
    recurrent: torch.Tensor
    policy_weight: torch.Tensor
    policy_bias: torch.Tensor
    value_weight: torch.Tensor
    value_bias: torch.Tensor
    log_std: torch.Tensor | None
    entropy_recurrent: torch.Tensor
    entropy_policy_weight: torch.Tensor
    entropy_policy_bias: torch.Tensor
    entropy_log_std: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.readout.shape[0]


class RewardEProp:
    """Reward-based e-prop on a plastic ``projection`` with an actor-critic ``readout`` (see module doc)."""

    def __init__(
        self,
        network: Network,
        projection: PlasticProjection,
        readout: ActorCriticReadout,
        config: RewardEpropConfig | None = None,
        **overrides: object,
    ) -> None:
        config = config or RewardEpropConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(readout, ActorCriticReadout):
            raise ValueError("readout must be an ActorCriticReadout")
        check_same_network(network.fingerprint, projection.fingerprint, "the projection", "the network")
        check_same_network(network.fingerprint, readout.fingerprint, "the readout", "the network")
        self.config = config
        self.network = network
        self.projection = projection
        self.readout = readout
        self.params = make_eprop_params(network, projection, readout.kappa, config.gamma_pd)
        k = readout.n_actions
        self.policy_feedback = make_feedback(
            projection, readout.input_neurons, k, config.feedback, config.feedback_std, config.seed
        )
        self.value_feedback = make_feedback(
            projection, readout.input_neurons, 1, config.feedback, config.feedback_std, config.seed + 1
        )
        self._ones_cache: dict[int, torch.Tensor] = {}

    def _ones(self, batch: int) -> torch.Tensor:
        ones = self._ones_cache.get(batch)
        if ones is None:
            ones = self._ones_cache[batch] = torch.ones(batch, device=self.readout.input_neurons.device)
        return ones

    # ----------------------------------------------------------------------------------- per step

    def init_traces(self, batch_size: int) -> RewardEpropTraces:
        """Zero traces for ``batch_size`` brains."""
        readout = self.readout
        device = readout.input_neurons.device
        k, m = readout.n_actions, readout.n_inputs
        continuous = readout.continuous
        return RewardEpropTraces(
            eprop=init_eprop_traces(self.params, batch_size),
            readout=readout.init_trace(batch_size),
            recurrent=torch.zeros((self.projection.n_synapses, batch_size), device=device),
            policy_weight=torch.zeros((batch_size, k, m), device=device),
            policy_bias=torch.zeros((batch_size, k), device=device),
            value_weight=torch.zeros((batch_size, m), device=device),
            value_bias=torch.zeros(batch_size, device=device),
            log_std=torch.zeros((batch_size, k), device=device) if continuous else None,
            entropy_recurrent=torch.zeros(self.projection.n_synapses, device=device),
            entropy_policy_weight=torch.zeros((k, m), device=device),
            entropy_policy_bias=torch.zeros(k, device=device),
            entropy_log_std=torch.zeros(k, device=device) if continuous else None,
        )

    def step(self, traces: RewardEpropTraces, state: BrainState) -> RewardEpropTraces:
        """After each simulation step: e-prop eligibility ē and the readout trace z̄ (in place)."""
        check_state_network(self.projection, state)
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        check_activity(state.spikes, traces.batch_size, self.network.n_neurons)
        self.readout.filter_spikes(traces.readout, state.spikes)
        adaptation = state.adaptation if self.params.use_alif else None
        eprop = eprop_trace_step(self.params, traces.eprop, state.spikes, state.v_pre_reset, adaptation)
        return traces._replace(eprop=eprop)

    # ----------------------------------------------------------------------------------- per env step

    def evaluate(self, traces: RewardEpropTraces) -> ActorCriticOutput:
        """Policy outputs and values of the current readout trace."""
        return self.readout(traces.readout)

    def record_decision(
        self, traces: RewardEpropTraces, output: ActorCriticOutput, actions: torch.Tensor
    ) -> RewardEpropTraces:
        """Register the decision ``actions`` taken from ``output`` (computed by :meth:`evaluate` on the
        current traces): learning signals L_j, ẽ ← γ ẽ + L ē for the recurrent and readout traces, and the
        entropy-bonus directions. Call once per environment step, after :meth:`reinforce`."""
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        readout, cfg = self.readout, self.config
        score = readout.score(output, actions)  # [B, K]
        check_finite("policy score (readout output or action)", score)
        value_coef = cfg.value_coef
        b_pi = feedback_matrix(self.policy_feedback, readout.policy_weight)  # [V, K]
        b_v = feedback_matrix(self.value_feedback, readout.value_weight[None, :])  # [V, 1]
        signal = learning_signal(b_pi, score) + value_coef * b_v.t()  # [B, V]
        eligibility = traces.eprop.eligibility
        gamma = cfg.gamma
        traces.recurrent.mul_(gamma).addcmul_(per_synapse_signal(self.params, signal), eligibility)
        z_bar = traces.readout
        traces.policy_weight.mul_(gamma).add_(score[:, :, None] * z_bar[:, None, :])
        traces.policy_bias.mul_(gamma).add_(score)
        traces.value_weight.mul_(gamma).add_(z_bar, alpha=value_coef)
        traces.value_bias.mul_(gamma).add_(value_coef)
        if traces.log_std is not None:
            traces.log_std.mul_(gamma).add_(readout.log_std_score(output, actions))
        if cfg.entropy_coef > 0:
            entropy_grad = readout.entropy_gradient(output)  # [B, K]
            if not readout.continuous:
                entropy_signal = learning_signal(b_pi, entropy_grad)
                batch = z_bar.shape[0]
                per_synapse = per_synapse_signal(self.params, entropy_signal).mul_(eligibility)  # [P, B]
                traces.entropy_recurrent.addmv_(per_synapse, self._ones(batch), alpha=1.0 / batch)
                traces.entropy_policy_weight.add_(entropy_grad.t() @ z_bar / batch)
                traces.entropy_policy_bias.add_(entropy_grad.mean(0))
            else:
                traces.entropy_log_std.add_(1.0)  # ∂H/∂log σ_k = 1
        return traces

    @staticmethod
    def td_error(
        reward: torch.Tensor, done: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor, gamma: float
    ) -> torch.Tensor:
        """δ = r + γ (1 − done) V(next) − V, ``[B]`` (values treated as constants)."""
        not_done = 1.0 - done.to(value.dtype)
        return reward.to(value.dtype) + gamma * not_done * next_value.detach() - value.detach()

    def weight_update(self, traces: RewardEpropTraces, td_error: torch.Tensor) -> torch.Tensor:
        """Δw ``[P]`` (mV) = η (mean_b δ_b ẽ_b + c_H · entropy direction) for the recurrent projection."""
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        check_shape("td_error", td_error, (traces.batch_size,))
        check_finite("td_error", td_error)
        cfg = self.config
        td = td_error.to(traces.recurrent.dtype)
        rate = cfg.learning_rate
        return torch.addmv(traces.entropy_recurrent, traces.recurrent, td, beta=rate * cfg.entropy_coef,
                           alpha=rate / traces.batch_size)  # fmt: skip

    def reinforce(
        self, weights: torch.Tensor, traces: RewardEpropTraces, td_error: torch.Tensor, done: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Apply the TD error ``δ`` ``[B]`` of the last decision: recurrent weights (clamped, Dale's law),
        readout parameters, then reset the γ-filtered traces of finished episodes (``done`` ``[B]``) and the
        entropy accumulators. Returns 0-d tensors on the device (no host read): mean |Δw| (mV), mean δ."""
        delta_w = self.weight_update(traces, td_error)
        check_shape("done", done, (traces.batch_size,))
        apply_weight_update(weights, self.projection, delta_w, check_finite=False)
        cfg, readout = self.config, self.readout
        batch = traces.batch_size
        td = td_error.to(traces.value_weight.dtype)
        lr = cfg.readout_learning_rate
        with torch.no_grad():
            readout.policy_weight.add_(torch.einsum("b,bkm->km", td, traces.policy_weight) / batch, alpha=lr)
            readout.policy_weight.add_(traces.entropy_policy_weight, alpha=lr * cfg.entropy_coef)
            readout.policy_bias.add_(td @ traces.policy_bias / batch, alpha=lr)
            readout.policy_bias.add_(traces.entropy_policy_bias, alpha=lr * cfg.entropy_coef)
            readout.value_weight.add_(td @ traces.value_weight / batch, alpha=lr)
            readout.value_bias.add_(td @ traces.value_bias / batch, alpha=lr)
            if readout.continuous:
                readout.log_std.add_(td @ traces.log_std / batch, alpha=lr)
                readout.log_std.add_(traces.entropy_log_std, alpha=lr * cfg.entropy_coef)
        keep = 1.0 - done.to(td.dtype)
        traces.recurrent.mul_(keep)
        traces.policy_weight.mul_(keep[:, None, None])
        traces.policy_bias.mul_(keep[:, None])
        traces.value_weight.mul_(keep[:, None])
        traces.value_bias.mul_(keep)
        if traces.log_std is not None:
            traces.log_std.mul_(keep[:, None])
            traces.entropy_log_std.zero_()
        traces.entropy_recurrent.zero_()
        traces.entropy_policy_weight.zero_()
        traces.entropy_policy_bias.zero_()
        return {"mean_abs_dw_mv": delta_w.abs().mean(), "mean_td_error": td.mean()}

    def apply(self, weights: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Add ``delta`` ``[P]`` to the projection's weights, clamped to [0, w_max] (Dale's law)."""
        return apply_weight_update(weights, self.projection, delta)
