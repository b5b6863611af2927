r"""Reward-based e-prop (Bellec et al. 2020, "reward-based e-prop"): the recurrent half of an online actor-critic.

**Loss.** With a policy readout π(a|y) and a value readout V (an
:class:`~encephagen_gym.brain.decoders.ActorCriticReadout`), actor-critic minimises
E = E_π + c_V E_V − c_H H with E_π = −Σ_n (R_n − V_n) log π(a_n), E_V = ½ Σ_n (R_n − V_n)² (R_n the
discounted return) and the policy entropy H. Writing R_n − V_n = Σ_{m≥n} γ^{m−n} δ_m with the TD error
δ_m = r_m + γ V_{m+1} − V_m turns both sums into a forward-in-time rule (the paper's derivation):

    Δw_ji = η Σ_n M_n ẽ_ji(n) / ℓ(n),     ẽ_ji(n) = γλ ẽ_ji(n−1) + L_j(n) ē_ji(t_n),   ℓ(n) = γλ ℓ(n−1) + 1
    L_j(n) = Σ_k B^π_jk ∂log π(a_n)/∂y_k + c_V B^V_j                 (policy and value learning signals)

(for continuous actions, a departure from the paper: ∂log π/∂y is replaced by the natural-gradient score of
:meth:`~encephagen_gym.brain.decoders.ActorCriticReadout.step_score`, as in the readout's own steps), so the
TD error is the third factor and the "γ-filtered eligibility" ẽ carries the product of learning
signal and e-prop eligibility ē (see :mod:`encephagen_gym.plasticity.eprop`) across decisions. The entropy
term needs no δ: Δw_ji += η c_H Σ_n (Σ_k B^π_jk ∂H/∂y_k) ē_ji(t_n).

Two more departures from the paper, both standard in actor-critic practice and both off by default where they
would change its equations: ``trace_decay`` λ < 1 shortens the credit horizon (λ = 1 is the paper's
rule; TD(λ)/GAE's bias–variance trade-off otherwise), and the third factor M is the TD error scaled to unit
size (:class:`~encephagen_gym.plasticity.neuromodulation.TDErrorScaler`; the raw δ when given as is), with
the update divided by the trace's length ℓ (the number of decisions it sums, discounted), so that η is the
step per decision whatever γλ and the reward scale are. In a one-decision episode (a bandit) ℓ = 1 and the
rule is the paper's.

The readout weights learn with their exact local gradients in
:class:`~encephagen_gym.plasticity.readout_rule.ReadoutActorCritic`.

**Time scales.** The brain runs ``substeps`` simulation steps per environment step. ē (κ-filtered, κ per
simulation step) is updated every simulation step by :meth:`RewardEProp.step`; decisions, rewards and TD
errors happen once per environment step, so L_j is non-zero only at the decision step t_n that ends
each environment step, and ẽ decays by γλ per *environment* step (γ is the agent's discount).

**Loop (one environment step)**; ``rules`` = ``[readout_rule, rule]``, see :mod:`~encephagen_gym.plasticity.base`::

    for _ in range(brain.substeps(env_dt_ms)):
        state = brain.step(state, encoder(obs)); readout.filter_spikes(z_bar, state.spikes)
        for r, t in zip(rules, traces): r.step(t, state)
    out = readout(z_bar)                                         # policy [B, K], value [B]
    if previous is not None:                                     # credit the previous decision
        delta = td_error(reward, terminated, previous.value, out.value, gamma)
        signal = LearningSignal(td_error=delta, modulator=scaler(delta), done=done)
        for r, t in zip(rules, traces): r.apply(brain.weights, t, signal)
    action = readout.sample(out, generator)
    for r, t in zip(rules, traces): r.record_decision(t, Decision(out, action, z_bar))
    obs, reward, terminated, ... = env.step(action); previous = out

Weights change only in :meth:`RewardEProp.apply` (clamped to [0, w_max], Dale's law).
"""

from __future__ import annotations

import dataclasses

import torch

from encephagen_gym.brain.decoders import ActorCriticReadout
from encephagen_gym.brain.network import Network, check_same_network
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.base import Decision, LearningSignal, keep_mask, require
from encephagen_gym.plasticity.eprop import (
    DEFAULT_GAMMA_PD,
    ELIGIBILITY_MODES,
    EpropTraces,
    eprop_trace_step,
    init_eprop_traces,
    make_eprop_params,
    per_synapse_signal,
    reset_eprop_traces,
)
from encephagen_gym.plasticity.feedback import FEEDBACK_MODES, feedback_matrix, learning_signal, make_feedback
from encephagen_gym.plasticity.projection import PlasticProjection, apply_weight_update, check_weights
from encephagen_gym.plasticity.validation import check_rate, check_shape, check_state_network, check_synapse_rows

__all__ = ["RewardEProp", "RewardEpropConfig", "RewardEpropTraces", "td_error"]


def td_error(
    reward: torch.Tensor, terminated: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """δ = r + γ (1 − terminated) V(next) − V, ``[B]`` (values treated as constants). Pass the value of the
    last observation as ``next_value`` when an episode is truncated (cut by a time limit), not terminated."""
    not_done = 1.0 - terminated.to(value.dtype)
    return reward.to(value.dtype) + gamma * not_done * next_value.detach() - value.detach()


@dataclasses.dataclass(frozen=True)
class RewardEpropConfig:
    """Hyper-parameters of reward-based e-prop (recurrent weights).

    ``gamma``: discount per environment step; ``trace_decay`` λ (1: the paper's rule). ``learning_rate``: η of
    the recurrent weights (mV per unit of M·ẽ/ℓ). ``value_coef`` c_V (weight of the value learning signal),
    ``entropy_coef`` c_H. ``feedback``: ``"random"`` (fixed Gaussian B^π, B^V, every postsynaptic neuron
    learns) or ``"symmetric"`` (B^π = W^πᵀ, B^V = w^V on the neurons that feed the readout). ``feedback_std``:
    std of the random feedback (default 1/√M). ``gamma_pd``: pseudo-derivative dampening. ``eligibility``:
    ``"exact"`` or ``"midpoint"`` (ē advanced once per decision with each synapse's presynaptic trace held at
    its mid-decision value: cheaper, approximate; see :class:`~encephagen_gym.plasticity.eprop.EpropTraces`).
    ``seed``: feedback draw.
    """

    gamma: float = 0.99
    trace_decay: float = 1.0
    learning_rate: float = 1.0
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    feedback: str = "random"
    feedback_std: float | None = None
    gamma_pd: float = DEFAULT_GAMMA_PD
    eligibility: str = "exact"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("gamma", "trace_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        for name in ("learning_rate", "value_coef", "entropy_coef"):
            check_rate(name, getattr(self, name))
        if self.eligibility not in ELIGIBILITY_MODES:
            raise ValueError(f"eligibility must be one of {ELIGIBILITY_MODES}, got {self.eligibility!r}")
        if self.feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {self.feedback!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")


@dataclasses.dataclass(eq=False)
class RewardEpropTraces:
    """State of reward-based e-prop for B brains (tensors updated in place).

    ``eprop``: the κ-filtered eligibility ē and its per-neuron traces; ``recurrent`` ``[P, B]``: ẽ;
    ``length`` ``[B]``: ℓ, the discounted number of decisions in ẽ; ``entropy_recurrent`` ``[P]``: the
    entropy-bonus direction accumulated since the last update (batch mean)."""

    eprop: EpropTraces
    recurrent: torch.Tensor
    length: torch.Tensor
    entropy_recurrent: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.recurrent.shape[1]


class RewardEProp:
    """Reward-based e-prop on a plastic ``projection`` for an actor-critic ``readout`` (see the module doc).

    Follows the rule interface of :mod:`~encephagen_gym.plasticity.base`: ``step`` every simulation step,
    ``record_decision`` at every decision, ``apply`` with ``LearningSignal(modulator=M, done=...)``.
    ``learning_rate`` (η, initialised from the config) may be changed between updates (schedules)."""

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
        if config.feedback == "symmetric" and len(readout.timescales_ms) > 1:
            raise ValueError(
                "symmetric feedback reads the readout's weights of one filtered copy of each neuron; this readout "
                f"has {len(readout.timescales_ms)} time constants {readout.timescales_ms}: use feedback='random'"
            )
        self.config = config
        self.network = network
        self.projection = projection
        self.readout = readout
        self.learning_rate = config.learning_rate
        self.params = make_eprop_params(network, projection, readout.kappa, config.gamma_pd, config.eligibility)
        k = readout.n_actions
        self.policy_feedback = make_feedback(
            projection, readout.input_neurons, k, config.feedback, config.feedback_std, config.seed
        )
        self.value_feedback = make_feedback(
            projection, readout.input_neurons, 1, config.feedback, config.feedback_std, config.seed + 1
        )

    @property
    def decay(self) -> float:
        """γλ, the per-decision decay of ẽ."""
        return self.config.gamma * self.config.trace_decay

    def init_traces(self, batch_size: int) -> RewardEpropTraces:
        """Zero traces for ``batch_size`` brains."""
        device = self.projection.device
        return RewardEpropTraces(
            eprop=init_eprop_traces(self.params, batch_size),
            recurrent=torch.zeros((self.projection.n_synapses, batch_size), device=device),
            length=torch.zeros(batch_size, device=device),
            entropy_recurrent=torch.zeros(self.projection.n_synapses, device=device),
        )

    def step(self, traces: RewardEpropTraces, state: BrainState) -> None:
        """After each simulation step: the e-prop eligibility ē, in place."""
        check_state_network(self.projection, state)
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        adaptation = state.adaptation if self.params.use_alif else None
        eprop_trace_step(self.params, traces.eprop, state.spikes, state.v_pre_reset, adaptation)

    def _fused(self, traces: RewardEpropTraces) -> bool:
        """Whether the per-decision work runs as compiled passes (:mod:`reward_eprop_kernel`): with the numba
        backend at batch 1, where the tensor path's per-operation cost and gathers dominate (at batch 16 its
        vectorised operations are as fast or faster; measured in the module's docstring)."""
        return self.params.backend == "numba" and traces.batch_size == 1

    def record_decision(self, traces: RewardEpropTraces, decision: Decision) -> None:
        """Learning signals L_j of ``decision`` and ẽ ← γλ ẽ + L ē, ℓ ← γλ ℓ + 1; the entropy direction."""
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        readout, cfg = self.readout, self.config
        score = readout.step_score(decision.output, decision.actions)  # [B, K]
        b_pi = feedback_matrix(self.policy_feedback, readout.policy_weight)  # [V, K]
        b_v = feedback_matrix(self.value_feedback, readout.value_weight[None, :])  # [V, 1]
        signal = learning_signal(b_pi, score) + cfg.value_coef * b_v.t()  # [B, V]
        eligibility = traces.eprop.eligibility
        traces.length.mul_(self.decay).add_(1.0)
        entropy_signal = None
        if cfg.entropy_coef > 0 and not readout.continuous:
            entropy_signal = learning_signal(b_pi, readout.entropy_gradient(decision.output))
        if self._fused(traces):  # one compiled pass over the synapses (it does not check bounds)
            from encephagen_gym.plasticity import reward_eprop_kernel

            check_shape("learning signal", signal, (traces.batch_size, self.projection.n_post))
            reward_eprop_kernel.record(self.projection, eligibility, traces.recurrent, signal, self.decay,
                                       entropy_signal, traces.entropy_recurrent)  # fmt: skip
            return
        traces.recurrent.mul_(self.decay).addcmul_(per_synapse_signal(self.params, signal), eligibility)
        if entropy_signal is not None:
            per_synapse = per_synapse_signal(self.params, entropy_signal).mul_(eligibility)  # [P, B]
            traces.entropy_recurrent.add_(per_synapse.mean(dim=1))

    def _coefficient(self, weights: torch.Tensor, traces: RewardEpropTraces, signal: LearningSignal) -> torch.Tensor:
        """M_b / ℓ_b ``[B]``, after checking the weights, the traces and the modulator."""
        check_weights(self.projection, weights)
        check_synapse_rows("the traces", traces.recurrent, self.projection.n_synapses)
        modulator = require(signal, "modulator", "RewardEProp", (traces.batch_size,))
        return modulator.to(traces.recurrent.dtype) / traces.length.clamp(min=1.0)

    def weight_update(self, weights: torch.Tensor, traces: RewardEpropTraces, signal: LearningSignal) -> torch.Tensor:
        """Δw ``[P]`` (mV) = η (mean_b M_b ẽ_b/ℓ_b + c_H · entropy direction)."""
        coefficient = self._coefficient(weights, traces, signal)
        rate = self.learning_rate
        return torch.addmv(traces.entropy_recurrent, traces.recurrent, coefficient,
                           beta=rate * self.config.entropy_coef, alpha=rate / traces.batch_size)  # fmt: skip

    def apply(
        self, weights: torch.Tensor, traces: RewardEpropTraces, signal: LearningSignal
    ) -> dict[str, torch.Tensor]:
        """Apply :meth:`weight_update` (clamped, Dale's law), clear the entropy accumulator and the γ-filtered
        traces of finished episodes (``signal.done``). Returns 0-d tensors (no host read): mean |Δw| (mV)."""
        # one compiled pass (Δw, the clamp, the cleared entropy term), writing through a view of the weights
        if self._fused(traces) and weights.is_contiguous() and weights.dtype == torch.float32:
            from encephagen_gym.plasticity import reward_eprop_kernel

            coefficient = float(self._coefficient(weights, traces, signal)[0])  # batch 1 (see _fused)
            rate = self.learning_rate
            entropy_rate = rate * self.config.entropy_coef
            mean_abs = reward_eprop_kernel.apply(
                self.projection, weights, traces.recurrent, coefficient, traces.entropy_recurrent, rate, entropy_rate
            )
        else:
            delta_w = self.weight_update(weights, traces, signal)
            apply_weight_update(weights, self.projection, delta_w, check_finite=False)
            traces.entropy_recurrent.zero_()
            mean_abs = delta_w.abs().mean()
        keep = keep_mask(signal.done, traces.batch_size, traces.recurrent.device)
        if keep is not None:
            traces.recurrent.mul_(keep)
            traces.length.mul_(keep)
        return {"mean_abs_dw_mv": mean_abs}

    def reset_traces(self, traces: RewardEpropTraces, mask: torch.Tensor) -> None:
        """Clear every trace (ē and its filters, ẽ, ℓ) of the batch elements where ``mask`` is True."""
        reset_eprop_traces(traces.eprop, mask)
        keep = 1.0 - mask.to(device=traces.recurrent.device, dtype=traces.recurrent.dtype)
        traces.recurrent.mul_(keep)
        traces.length.mul_(keep)
