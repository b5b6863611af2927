r"""The readout's own learning rule: an online actor-critic on the weights of an
:class:`~encephagen_gym.brain.decoders.ActorCriticReadout`, with normalised steps.

The readout is linear in the filtered spikes z̄ of its input neurons (``y = W z̄ + b``, ``V = w·z̄ + c``), so
its gradients are exact and local: ∂log π(a)/∂W_kj = score_k z̄_j, ∂V/∂w_j = z̄_j. As for the recurrent
weights (:mod:`~encephagen_gym.plasticity.reward_eprop`), each parameter keeps a γλ-filtered trace of its
gradient across decisions and a third factor turns traces into changes:

    e^π(n) = γλ e^π(n−1) + score(n) ⊗ z̄(n)             e^V(n) = γλ e^V(n−1) + z̄(n)
    ΔW^π = α_π · M(n) e^π(n) / (ℓ(n) n̂)                  Δw^V = α_V · δ(n) e^V(n) / (ℓ(n) n̂)
    Δb^π = α_π · M(n) e^π_b(n) / ℓ(n)                    Δc  = α_V · δ(n) e^V_c(n) / ℓ(n)

with the actor gated by the scaled TD error M (the modulator) and the critic by the raw TD error δ (it
regresses the value onto returns in reward units).

**Why the normalisation.** Without it the step a value makes per unit δ is α‖z̄‖²/(1 − γλ): at the default
size ‖z̄‖² is tens to hundreds and 1/(1 − γ) is 100 at γ = 0.99, so any α that learns on a short task diverges
on a long one (issue 9 measured readout values of ±10³⁶ within ten decisions at α = 0.05). Dividing by
n̂ (a running mean of ‖z̄‖² + 1 over decisions and batch, time constant ``norm_tau`` decisions) and by ℓ (the
discounted number of decisions the trace holds: ℓ ← γλ ℓ + 1, reset with the episode) makes one update of the
weights move V(s) by ≈ α_V δ and the logits by ≈ α_π M · score, whatever the readout's size, γλ or episode
length (normalised least-mean-squares). The biases (and log σ) have an input of 1 and are normalised by their
own input, so they step by α_π M · score and α_V δ too — normalised together with the weights they would move
M times more slowly, and an agent whose initial bias makes it withhold would never learn to act (measured on
Conditioning: hit rate stuck at the initial 0.1 over 200 k steps). One update thus moves V by ≈ 2α_V δ: any
α_V < 1 is stable; the agent's defaults are α_V = 0.1 and α_π = 1.

**Why λ matters with fast decisions.** At 10 ms per decision most decisions change nothing (a response outside
a task's window has no effect), and the one that is scored comes after dozens of unscored ones. With λ near 1
the traces spread each scored decision's credit over the unscored decisions before it, and on Conditioning a
readout that has the stimulus in its input (sensory cortex through a 200 ms filter) settled in "respond in every
window" (hit = false alarm = 1); with γλ ≈ 0.5 it learned the discrimination (``BrainAgent(gae_lambda=0.5)``,
the agent's default; figures in its docstring).

**Continuous actions** (a Gaussian around tanh(y)) step along the natural gradient: the scores are divided by
their Fisher information (:meth:`~encephagen_gym.brain.decoders.ActorCriticReadout.step_score`: (a − μ)(1 − μ²)
for y, ((a − μ)²/σ² − 1)/2 for log σ), so that a full step moves the mean at most about as far as the sampled
action lies from it, whatever σ; log σ is clamped into ``LOG_STD_BOUNDS`` after every update. With the exact
scores, which grow as 1/σ, σ overflowed within 600 decisions on CPGGait (4 envs, 96×10) and the run ended in a
NaN action.

**A gated readout** (``ActorCriticReadout(gate_action=g)``: a withhold gate and a choice head over the other
actions) learns its choice head only from decisions that acted (its score is zero when the gate withheld). With
the batch average above, a choice made by one of B brains would step the choice head by 1/B of a full step, and
most steps hold no choice at all. The choice rows therefore keep their own discounted count of acting decisions
per brain, ℓ_c ← γλ ℓ_c + 1[a ≠ g], and are averaged over the choices in the batch instead
(``choice_average="acted"``, the default):

    ΔW^π_k = α_π Σ_b M_b e^π_{b,k} / (n̂ · max(1, Σ_b ℓ_c,b))          (k ≠ g; the bias likewise)

so that one choice moves its logits by ≈ α_π M · score, as one decision does in an ungated readout. The choice
biases step as one input among the weights' (divided by n̂ too): with their own normalisation they moved n̂ times
faster than any weight, and on PatternRecognition the choice head collapsed onto one class through its biases
(biases spread to ±6, weight rows of norm 0.3; the greedy choice the same class for every image) before the
weights could learn the images. The gate keeps its own fast bias (a withholding brain must be able to start
acting). ``choice_average="batch"`` averages the choice rows like every other row. When the choice head reads
only some of the readout's filtered copies (``ActorCriticReadout(choice_tau_ms=...)``), its steps are masked to
those inputs and normalised by their own running energy n̂_c (mean ‖z̄_c‖² + 1), so that one choice still moves
its logits by ≈ α_π M · score.

**A choice head of action values** (``choice_learning="values"``). A policy gradient learns a choice from
reward alone slowly: each trial's reward says how good the one sampled choice was, and the step moves every
choice's logit, relative to a state value that does not know which choice was made. The choice head can
instead learn the value of each choice, Q_k = T y_k (T: ``choice_temperature``, reward units), and choose
by softmax(Q/T) — the action-value learning ascribed to the striatum. After a decision in which brain b acted
(a = choice k), row k alone steps towards that decision's outcome r + γ V(s'):

    ε_b = δ_b + V(s_b) − Q_k(s_b)                    (the TD error of Q_k; δ is the critic's)
    ΔW_k = (α_Q / T) Σ_b ε_b z̄_c,b / (n̂_c · n_acted)      Δb_k likewise with input 1

(α_Q: ``choice_value_rate``; n_acted the number of choices the update credits; no trace across decisions:
the outcome of a choice enters through V(s'), as in SARSA). One choice moves its value by ≈ α_Q ε. There is
no entropy bonus on these rows (T sets the exploration) and ``choice_step_ratio``/``choice_average`` do not
apply to them; the gate and the critic learn as above. Measured on PatternRecognition in the comment of its
preset (``agents/hyperparams/brain.yml``).

The entropy bonus c_H H adds α_π c_H ∂H/∂y ⊗ z̄ / n̂ to the weights and α_π c_H ∂H/∂y to the biases per decision
(discrete actions), or α_π c_H / 2 per dimension to log σ (continuous actions: ∂H/∂log σ = 1 over its Fisher
information 2).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from encephagen_gym.brain.decoders import ActorCriticReadout
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.base import Decision, LearningSignal, keep_mask, require
from encephagen_gym.plasticity.validation import check_rate

__all__ = ["CHOICE_AVERAGES", "CHOICE_LEARNING", "ReadoutActorCritic", "ReadoutLearningConfig", "ReadoutTraces"]


#: How a gated readout's choice head averages its steps (``ReadoutLearningConfig.choice_average``).
CHOICE_AVERAGES = ("acted", "batch")

#: How a gated readout's choice head learns (``ReadoutLearningConfig.choice_learning``; module docstring).
CHOICE_LEARNING = ("policy_gradient", "values")


@dataclasses.dataclass(frozen=True)
class ReadoutLearningConfig:
    """``gamma`` (discount per decision), ``trace_decay`` λ, ``learning_rate`` α_π (actor),
    ``value_learning_rate`` α_V (critic), ``entropy_coef`` c_H, ``norm_tau`` (decisions; time constant of
    the running ‖z̄‖² + 1); ``shared_bias_norm``: normalise the biases' steps by n̂ together with the weights' (as
    one input of 1 among M + 1) instead of by their own input (the default); ``choice_average``: how a gated
    readout's choice head averages its steps, over the acting decisions (``"acted"``) or the batch
    (``"batch"``; see the module docstring); ``choice_step_ratio``: its step α_π times this ratio (the gate and
    every other row keep α_π); ``choice_learning``: ``"policy_gradient"`` (default) or ``"values"`` (the choice
    rows are action values Q = T y, ``choice_temperature`` T in reward units, learned at ``choice_value_rate``
    α_Q; see the module docstring)."""

    gamma: float = 0.99
    trace_decay: float = 1.0
    learning_rate: float = 0.1
    value_learning_rate: float = 0.1
    entropy_coef: float = 0.01
    norm_tau: float = 100.0
    shared_bias_norm: bool = False
    choice_average: str = "acted"
    choice_step_ratio: float = 1.0
    choice_learning: str = "policy_gradient"
    choice_temperature: float = 0.1
    choice_value_rate: float = 0.3

    def __post_init__(self) -> None:
        if self.choice_average not in CHOICE_AVERAGES:
            raise ValueError(f"choice_average must be one of {CHOICE_AVERAGES}, got {self.choice_average!r}")
        if self.choice_learning not in CHOICE_LEARNING:
            raise ValueError(f"choice_learning must be one of {CHOICE_LEARNING}, got {self.choice_learning!r}")
        check_rate("choice_step_ratio", self.choice_step_ratio)
        check_rate("choice_value_rate", self.choice_value_rate)
        temperature = self.choice_temperature
        if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"choice_temperature must be a positive number (reward units), got {temperature!r}")
        for name in ("gamma", "trace_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        for name in ("learning_rate", "value_learning_rate", "entropy_coef"):
            check_rate(name, getattr(self, name))
        if not (isinstance(self.norm_tau, int | float) and math.isfinite(self.norm_tau) and self.norm_tau >= 1):
            raise ValueError(f"norm_tau must be a number >= 1 (decisions), got {self.norm_tau!r}")


@dataclasses.dataclass(eq=False)
class ReadoutTraces:
    """γλ-filtered gradient traces of B brains: ``policy_weight`` ``[B, K, M]``, ``policy_bias`` ``[B, K]``,
    ``value_weight`` ``[B, M]``, ``value_bias`` ``[B]``, ``log_std`` ``[B, K]`` (continuous, else None),
    ``length`` ℓ ``[B]``; entropy directions accumulated since the last update (batch means, already divided
    by n̂): ``entropy_weight`` ``[K, M]``, ``entropy_bias`` ``[K]``, ``entropy_log_std`` ``[K]`` or None;
    ``choice_length`` ℓ_c ``[B]``: a gated readout's discounted count of acting decisions (else None);
    a choice head of values keeps its latest decision instead (else None): ``choice_input`` ``[B, M]`` its
    inputs z̄, ``choice_action`` ``[B, K]`` one-hot of the choice (zero where the brain withheld),
    ``choice_offset`` ``[B]`` V(s) − Q_k(s) (reward units)."""

    policy_weight: torch.Tensor
    policy_bias: torch.Tensor
    value_weight: torch.Tensor
    value_bias: torch.Tensor
    log_std: torch.Tensor | None
    length: torch.Tensor
    entropy_weight: torch.Tensor
    entropy_bias: torch.Tensor
    entropy_log_std: torch.Tensor | None
    choice_length: torch.Tensor | None = None
    choice_input: torch.Tensor | None = None
    choice_action: torch.Tensor | None = None
    choice_offset: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.value_bias.shape[0]


class ReadoutActorCritic:
    """Actor-critic learning of ``readout``'s parameters (see the module docstring), behind the rule interface
    of :mod:`~encephagen_gym.plasticity.base`. ``learning_rate`` and ``value_learning_rate`` may be changed
    between updates (schedules). The running normaliser n̂ is the rule's only state outside the traces
    (:meth:`state_dict` / :meth:`load_state_dict`)."""

    def __init__(self, readout: ActorCriticReadout, config: ReadoutLearningConfig | None = None,
                 **overrides: object) -> None:  # fmt: skip
        config = config or ReadoutLearningConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(readout, ActorCriticReadout):
            raise ValueError("readout must be an ActorCriticReadout")
        self.config = config
        self.readout = readout
        self.projection = None
        self.learning_rate = config.learning_rate
        self.value_learning_rate = config.value_learning_rate
        self.norm = torch.zeros((), device=readout.input_neurons.device)  # n̂; 0 until the first decision
        self.choice_norm = torch.zeros((), device=readout.input_neurons.device)  # n̂_c of a masked choice head
        self._norm_rate = 1.0 - math.exp(-1.0 / config.norm_tau)

    @property
    def decay(self) -> float:
        return self.config.gamma * self.config.trace_decay

    def init_traces(self, batch_size: int) -> ReadoutTraces:
        readout = self.readout
        device = readout.input_neurons.device
        k, m = readout.n_actions, readout.n_inputs
        continuous = readout.continuous
        return ReadoutTraces(
            policy_weight=torch.zeros((batch_size, k, m), device=device),
            policy_bias=torch.zeros((batch_size, k), device=device),
            value_weight=torch.zeros((batch_size, m), device=device),
            value_bias=torch.zeros(batch_size, device=device),
            log_std=torch.zeros((batch_size, k), device=device) if continuous else None,
            length=torch.zeros(batch_size, device=device),
            entropy_weight=torch.zeros((k, m), device=device),
            entropy_bias=torch.zeros(k, device=device),
            entropy_log_std=torch.zeros(k, device=device) if continuous else None,
            choice_length=torch.zeros(batch_size, device=device) if self._averages_choices else None,
            choice_input=torch.zeros((batch_size, m), device=device) if self._learns_values else None,
            choice_action=torch.zeros((batch_size, k), device=device) if self._learns_values else None,
            choice_offset=torch.zeros(batch_size, device=device) if self._learns_values else None,
        )

    @property
    def _learns_values(self) -> bool:
        """Whether a gated readout's choice rows are action values (``choice_learning="values"``)."""
        return self.readout.gate_action is not None and self.config.choice_learning == "values"

    @property
    def _averages_choices(self) -> bool:
        """Whether the choice rows are averaged over acting decisions (a gated readout, ``"acted"``)."""
        return self.readout.gate_action is not None and self.config.choice_average == "acted"

    def step(self, traces: ReadoutTraces, state: BrainState) -> None:
        """Nothing per simulation step: the readout trace z̄ belongs to the policy and arrives with decisions."""

    def record_decision(self, traces: ReadoutTraces, decision: Decision) -> None:
        """Gradients of ``decision`` into the γλ-traces; update n̂ (no host read)."""
        readout, decay = self.readout, self.decay
        z_bar = decision.readout_trace
        output = decision.output
        score = readout.step_score(output, decision.actions)  # [B, K]
        self._follow(self.norm, z_bar)
        if readout.choice_inputs is not None:
            self._follow(self.choice_norm, z_bar[:, readout.choice_inputs])
        traces.policy_weight.mul_(decay).add_(score[:, :, None] * z_bar[:, None, :])
        traces.policy_bias.mul_(decay).add_(score)
        traces.value_weight.mul_(decay).add_(z_bar)
        traces.value_bias.mul_(decay).add_(1.0)
        traces.length.mul_(decay).add_(1.0)
        if traces.choice_length is not None:
            traces.choice_length.mul_(decay).add_((decision.actions != readout.gate_action).to(z_bar.dtype))
        if traces.choice_action is not None:  # the latest decision only: its outcome arrives with the next update
            acted = (decision.actions != readout.gate_action).to(z_bar.dtype)
            chosen = torch.nn.functional.one_hot(decision.actions, readout.n_actions).to(z_bar.dtype) * acted[:, None]
            traces.choice_action.copy_(chosen)
            traces.choice_input.copy_(z_bar)
            values = self.config.choice_temperature * (output.policy * chosen).sum(dim=1)  # Q_k(s), 0 if withheld
            traces.choice_offset.copy_((output.value - values) * acted)
        if traces.log_std is not None:
            traces.log_std.mul_(decay).add_(readout.log_std_step_score(output, decision.actions))
        if self.config.entropy_coef > 0:
            if readout.continuous:
                traces.entropy_log_std.add_(0.5)  # ∂H/∂log σ_k = 1, over log σ's Fisher information 2
            else:
                gradient = readout.entropy_gradient(output)  # [B, K]
                batch = z_bar.shape[0]
                traces.entropy_weight.add_(gradient.t() @ z_bar / (batch * self.norm))
                traces.entropy_bias.add_(gradient.mean(dim=0))

    def _follow(self, norm: torch.Tensor, z_bar: torch.Tensor) -> None:
        """Fold the batch's input energy mean ‖z̄‖² + 1 into the running ``norm`` (the first decision sets it)."""
        energy = z_bar.square().sum(dim=1).mean() + 1.0
        averaged = torch.lerp(norm, energy, self._norm_rate)
        norm.copy_(torch.where(norm == 0, energy, averaged))

    def weight_update(
        self, weights: torch.Tensor | None, traces: ReadoutTraces, signal: LearningSignal
    ) -> dict[str, torch.Tensor]:
        """The parameter changes (name → tensor shaped like the parameter) for ``signal.td_error`` (critic)
        and ``signal.modulator`` (actor). ``weights`` (the brain's) is not used."""
        batch = traces.batch_size
        delta = require(signal, "td_error", "ReadoutActorCritic", (batch,))
        modulator = require(signal, "modulator", "ReadoutActorCritic", (batch,))
        per_decision = traces.length.clamp(min=1.0) * batch
        norm = self.norm.clamp(min=1e-6)  # weights: input energy n̂
        bias_entropy = 1.0
        if self.config.shared_bias_norm:
            per_decision = per_decision * norm
            bias_entropy = 1.0 / norm
            norm = torch.ones_like(norm)
        actor = modulator.to(per_decision.dtype) / per_decision  # [B]; biases: input 1
        critic = delta.to(per_decision.dtype) / per_decision
        rate, value_rate, entropy = self.learning_rate, self.value_learning_rate, self.config.entropy_coef
        update = {
            "policy_weight": rate
            * (torch.einsum("b,bkm->km", actor / norm, traces.policy_weight) + entropy * traces.entropy_weight),
            "policy_bias": rate * (actor @ traces.policy_bias + entropy * bias_entropy * traces.entropy_bias),
            "value_weight": value_rate * ((critic / norm) @ traces.value_weight),
            "value_bias": value_rate * (critic @ traces.value_bias),
        }
        if traces.log_std is not None:  # log σ steps like a bias (input 1)
            update["log_std"] = rate * (actor @ traces.log_std + entropy * bias_entropy * traces.entropy_log_std)
        if self.readout.gate_action is None:
            return update
        rows = torch.ones(self.readout.n_actions, dtype=torch.bool, device=modulator.device)
        rows[self.readout.gate_action] = False
        ratio = self.config.choice_step_ratio
        inputs = self.readout.choice_inputs
        choice_norm = (self.norm if inputs is None else self.choice_norm).clamp(min=1e-6)  # n̂, or n̂_c if masked
        rescale = self.norm.clamp(min=1e-6) / choice_norm  # 1 unless masked: steps divided by n̂_c instead of n̂
        if traces.choice_action is not None:  # action values: the chosen row towards r + γ V(s')
            error = delta.to(per_decision.dtype) + traces.choice_offset  # ε = δ + V(s) − Q_k(s)
            chosen = traces.choice_action[:, rows]
            if signal.credited is not None:
                chosen = chosen * signal.credited[:, None]
            step = self.config.choice_value_rate / (  # averaged over the choices this update credits
                self.config.choice_temperature * choice_norm * chosen.sum().clamp(min=1.0)
            )
            update["policy_weight"][rows] = step * torch.einsum("b,bk,bm->km", error, chosen, traces.choice_input)
            update["policy_bias"][rows] = step * (error @ chosen)
        elif traces.choice_length is None:  # averaged over the batch like every other row
            update["policy_weight"][rows] *= ratio * rescale
            update["policy_bias"][rows] *= ratio
        else:
            acted = traces.choice_length.sum().clamp(min=1.0)  # the choice rows: over the batch's acting decisions
            if self.config.shared_bias_norm:
                acted = acted * choice_norm
            else:
                norm = choice_norm
            choices = modulator.to(per_decision.dtype) / acted
            weight = torch.einsum("b,bkm->km", choices / norm, traces.policy_weight[:, rows])
            bias = choices @ traces.policy_bias[:, rows] / norm  # one input among the weights' (see the docstring)
            update["policy_weight"][rows] = ratio * rate * (weight + entropy * rescale * traces.entropy_weight[rows])
            entropy_bias = traces.entropy_bias[rows] / choice_norm
            update["policy_bias"][rows] = ratio * rate * (bias + entropy * entropy_bias)
        if inputs is not None:
            update["policy_weight"][rows] *= inputs.to(update["policy_weight"].dtype)
        return update

    def apply(
        self, weights: torch.Tensor | None, traces: ReadoutTraces, signal: LearningSignal
    ) -> dict[str, torch.Tensor]:
        """Change the readout's parameters, clear the entropy accumulators and the traces of finished
        episodes. Returns 0-d tensors: the mean |Δ| of the policy weights and the value step ΔV per unit
        input (no host read)."""
        update = self.weight_update(weights, traces, signal)
        with torch.no_grad():
            for name, change in update.items():
                getattr(self.readout, name).add_(change)
        self.readout.clamp_log_std()
        traces.entropy_weight.zero_()
        traces.entropy_bias.zero_()
        if traces.choice_action is not None:  # each choice is credited once
            credited = signal.credited
            traces.choice_action.mul_(0.0 if credited is None else (1.0 - credited)[:, None])
        if traces.entropy_log_std is not None:
            traces.entropy_log_std.zero_()
        keep = keep_mask(signal.done, traces.batch_size, traces.value_bias.device)
        if keep is not None:
            self._scale(traces, keep)
        return {"mean_abs_readout_change": update["policy_weight"].abs().mean(), "input_norm": self.norm.clone()}

    def reset_traces(self, traces: ReadoutTraces, mask: torch.Tensor) -> None:
        """Clear the traces of the batch elements where ``mask`` is True."""
        self._scale(traces, 1.0 - mask.to(device=traces.value_bias.device, dtype=traces.value_bias.dtype))

    @staticmethod
    def _scale(traces: ReadoutTraces, keep: torch.Tensor) -> None:
        traces.policy_weight.mul_(keep[:, None, None])
        traces.policy_bias.mul_(keep[:, None])
        traces.value_weight.mul_(keep[:, None])
        traces.value_bias.mul_(keep)
        traces.length.mul_(keep)
        if traces.choice_length is not None:
            traces.choice_length.mul_(keep)
        if traces.choice_action is not None:
            traces.choice_action.mul_(keep[:, None])
            traces.choice_input.mul_(keep[:, None])
            traces.choice_offset.mul_(keep)
        if traces.log_std is not None:
            traces.log_std.mul_(keep[:, None])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running normalisers n̂ and n̂_c (to resume learning where it stopped)."""
        return {"norm": self.norm.clone(), "choice_norm": self.choice_norm.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.norm.copy_(state["norm"])
        if "choice_norm" in state:  # files saved before the choice head could read part of the inputs lack it
            self.choice_norm.copy_(state["choice_norm"])
