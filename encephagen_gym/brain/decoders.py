"""Decoders: leaky-integrator readout units fed by the spikes of selected (by default motor-region
excitatory) neurons, with trainable weights; a regression readout, and an actor-critic readout with a
softmax policy (discrete actions) or a Gaussian around ``tanh`` (continuous actions) plus a value unit.

Readout unit k (Bellec et al. 2020)::

    z̄_j(t) = κ z̄_j(t−1) + z_j(t),   κ = exp(−dt/τ_out)      (filtered spikes of input neuron j)
    y_k(t) = Σ_j W_kj z̄_j(t) + b_k

which is the leaky integrator y_k(t) = κ y_k(t−1) + Σ_j W_kj z_j(t) with the bias kept outside the leak.
The filtered spikes ``z̄`` (``[B, M]``, the *readout trace*) are the only readout state; ``y`` is computed
when needed (e.g. once per environment step), so the per-step cost is one gather and one multiply-add.

All tensors are batched ``[B, ...]`` and live on the network's device; the weights are ``nn.Parameter`` s
(``requires_grad=False``: they are trained by local rules, see :mod:`encephagen_gym.plasticity`), so
``state_dict()``/``load_state_dict()`` and ``.to(device)`` work as for any module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from encephagen_gym.brain.network import Network, check_same_network

__all__ = [
    "DEFAULT_READOUT_ROLES",
    "LOG_STD_BOUNDS",
    "ActorCriticOutput",
    "ActorCriticReadout",
    "LeakyReadout",
    "readout_neurons",
]

#: Roles whose excitatory neurons feed the readout units by default (M1 and premotor cortex).
DEFAULT_READOUT_ROLES: tuple[str, ...] = ("motor", "premotor")

#: Bounds of log σ of the Gaussian policy (continuous actions). σ = 1 already spans the action box [−1, 1]
#: (wider samples are mostly clipped); e^−5 ≈ 0.007 is exploration too small to matter. Learning rules clamp
#: log σ into these bounds after each update.
LOG_STD_BOUNDS: tuple[float, float] = (-5.0, 0.0)


def readout_neurons(network: Network, roles: tuple[str, ...] | str, excitatory_only: bool = True) -> torch.Tensor:
    """Neuron ids (``[M]``, int64) of the regions with the given roles (excitatory ones by default)."""
    roles = (roles,) if isinstance(roles, str) else tuple(roles)
    present = set(network.roles)
    unknown = [role for role in roles if role not in present]
    if not roles or unknown:
        raise ValueError(f"readout roles {list(roles)} must be non-empty roles of the connectome; "
                         f"unknown: {unknown}; valid: {sorted(present)}")  # fmt: skip
    return network.neurons_with_role(*roles, excitatory_only=excitatory_only)


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()  # CPU: the same seed gives the same weights on every device
    generator.manual_seed(seed)
    return generator


class _ReadoutInput(nn.Module):
    """The filtered spikes z̄ of the readout's input neurons (shared by the readout classes).

    ``tau_ms`` is one time constant, or several: then z̄ holds one filtered copy of the M inputs per time
    constant, ``[B, T·M]`` (block t filtered with τ_t), so that a linear readout can read fast and slow
    activity at once. The first time constant is the primary one (:attr:`tau_ms`, :attr:`kappa`: what
    e-prop's eligibility filter uses)."""

    def __init__(self, network: Network, roles: tuple[str, ...] | str, tau_ms: float | Sequence[float],
                 excitatory_only: bool):  # fmt: skip
        super().__init__()
        timescales = (tau_ms,) if isinstance(tau_ms, int | float) else tuple(tau_ms)
        if not timescales or not all(
            isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and t > 0 for t in timescales
        ):
            raise ValueError(f"tau_ms must be a positive number of ms (or a sequence of them), got {tau_ms!r}")
        self.register_buffer("input_neurons", readout_neurons(network, roles, excitatory_only))
        self.roles = (roles,) if isinstance(roles, str) else tuple(roles)
        self.timescales_ms = tuple(float(t) for t in timescales)
        self.tau_ms = self.timescales_ms[0]
        self.dt_ms = float(network.config.dt_ms)
        decays = [math.exp(-self.dt_ms / t) for t in self.timescales_ms]
        self.register_buffer("_decays", torch.tensor(decays, device=network.device)[:, None], persistent=False)
        self.n_neurons = network.n_neurons
        self.fingerprint = network.fingerprint  # the network it reads (checked by the rules and filter_spikes)

    @property
    def kappa(self) -> float:
        """κ = exp(−dt/τ_out), the per-step decay of the readout trace (of its primary time constant)."""
        return math.exp(-self.dt_ms / self.tau_ms)

    @property
    def n_inputs(self) -> int:
        """M: the number of inputs, one per input neuron and time constant."""
        return int(self.input_neurons.numel()) * len(self.timescales_ms)

    def init_trace(self, batch_size: int) -> torch.Tensor:
        """A zero readout trace ``[B, M]``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return torch.zeros((batch_size, self.n_inputs), device=self.input_neurons.device)

    def filter_spikes(self, trace: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """``z̄ ← κ z̄ + z[:, inputs]`` in place for one step's ``spikes`` ``[B, N]``; returns ``trace``.

        ``spikes`` may also be the brain state itself (its ``spikes`` are used): then the state's network is
        checked against the readout's (O(1)), as it cannot be for a bare tensor of the right size."""
        if hasattr(spikes, "fingerprint"):
            if spikes.fingerprint is not self.fingerprint:
                check_same_network(self.fingerprint, spikes.fingerprint, "the state", "the readout")
            spikes = spikes.spikes
        batch = spikes.shape[0] if spikes.dim() == 2 else -1
        if spikes.dim() != 2 or spikes.shape[1] != self.n_neurons or trace.shape != (batch, self.n_inputs):
            raise ValueError(f"expected spikes [B, {self.n_neurons}] and trace [B, {self.n_inputs}], got "
                             f"{tuple(spikes.shape)} and {tuple(trace.shape)}; the readout was made for "
                             f"{self.fingerprint.describe()}")  # fmt: skip
        if batch == 1 and _compiled_path(trace, spikes):
            from encephagen_gym.brain import cpu_kernel  # imports numba, only when used

            cpu_kernel.filter_readout_trace(trace, spikes, self.input_neurons, self._decays)
            return trace
        inputs = spikes.index_select(1, self.input_neurons)
        if len(self.timescales_ms) == 1:
            return trace.mul_(self.kappa).add_(inputs)
        blocks = trace.view(batch, len(self.timescales_ms), -1)
        blocks.mul_(self._decays).add_(inputs[:, None, :])
        return trace

    def _check_trace(self, trace: torch.Tensor) -> None:
        if trace.dim() != 2 or trace.shape[1] != self.n_inputs:
            raise ValueError(f"readout trace must have shape [B, {self.n_inputs}] (the inputs of this readout, "
                             f"made for {self.fingerprint.describe()}), got {tuple(trace.shape)}")  # fmt: skip


def _compiled_path(trace: torch.Tensor, spikes: torch.Tensor) -> bool:
    """Whether one brain's readout filter step can run as one compiled CPU call (float32, contiguous, no
    autograd): the same values as the tensor operations, about 3× faster at batch 1."""
    return (
        trace.device.type == "cpu"
        and trace.dtype is torch.float32
        and spikes.dtype is torch.float32
        and trace.is_contiguous()
        and spikes.is_contiguous()
        and not (trace.requires_grad or spikes.requires_grad)
    )


def _parameter(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


class LeakyReadout(_ReadoutInput):
    """``n_outputs`` leaky-integrator units (regression readout) ``y = z̄ Wᵀ + b``, ``[B, K]``.

    ``weight`` ``[K, M]`` starts Gaussian with std ``init_std`` (default ``1/√M``) from ``seed``; ``bias``
    ``[K]`` at zero. ``tau_ms`` is the readout time constant τ_out (default 20 ms, as in Bellec et al.).
    """

    def __init__(
        self,
        network: Network,
        n_outputs: int,
        roles: tuple[str, ...] | str = DEFAULT_READOUT_ROLES,
        tau_ms: float = 20.0,
        excitatory_only: bool = True,
        init_std: float | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(tau_ms, int | float):  # its e-prop gradient is exact for one readout filter
            raise ValueError(f"LeakyReadout takes one time constant tau_ms (ms), got {tau_ms!r}")
        super().__init__(network, roles, tau_ms, excitatory_only)
        if not isinstance(n_outputs, int) or n_outputs < 1:
            raise ValueError(f"n_outputs must be a positive integer, got {n_outputs!r}")
        std = 1.0 / math.sqrt(self.n_inputs) if init_std is None else float(init_std)
        weight = torch.randn((n_outputs, self.n_inputs), generator=_generator(seed)) * std
        self.weight = _parameter(weight.to(network.device))
        self.bias = _parameter(torch.zeros(n_outputs, device=network.device))

    @property
    def n_outputs(self) -> int:
        """K, the number of readout units."""
        return int(self.weight.shape[0])

    def forward(self, trace: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` readout values from the readout trace ``[B, M]``."""
        self._check_trace(trace)
        return torch.addmm(self.bias, trace, self.weight.t())


class ActorCriticOutput(NamedTuple):
    """What the actor-critic readout computes at a decision: ``policy`` ``[B, K]`` (logits for discrete
    actions, the pre-``tanh`` mean for continuous ones) and ``value`` ``[B]``."""

    policy: torch.Tensor
    value: torch.Tensor


class ActorCriticReadout(_ReadoutInput):
    """Policy and value readouts on one readout trace (the actor and the critic of reward-based e-prop).

    Discrete (``continuous=False``): K = ``n_actions`` logits ``y``; π = softmax(y). With ``gate_action=g``
    the discrete policy is gated instead: unit g is a withhold gate and the other units choose among the
    other actions, π(g) = σ(y_g), π(k) = (1 − σ(y_g)) · softmax(y_{≠g})_k, so that whether to act and which
    action to take are two heads (a basal-ganglia-like go/no-go gate over a cortical choice), and the choice
    head learns only from decisions that acted (its score is zero when the gate withheld).
    Continuous (``continuous=True``): K = ``n_actions`` action dimensions; the action is Gaussian around
    ``tanh(y)``: a = tanh(y) + σ ε, ε ~ N(0, 1), σ = exp(``log_std``) (a learned, state-independent
    parameter, as in stable-baselines3's diagonal Gaussian). Actions are returned unclipped (the
    log-likelihood is that of the unclipped sample); clip them to [−1, 1] for the environment.
    Value: V = w_V · z̄ + b_V.

    Parameters: ``policy_weight`` ``[K, M]`` (Gaussian, std ``policy_init_std``, default ``0.1/√M``: a nearly
    uniform initial policy), ``policy_bias`` ``[K]``, ``value_weight`` ``[M]`` and ``value_bias`` ``[]``
    (zero),
    ``log_std`` ``[K]`` (continuous only, ``log_std_init``, within :data:`LOG_STD_BOUNDS`).

    ``choice_tau_ms`` (gated only): the choice head reads only the filtered copies with these time constants
    (each one of ``tau_ms``); its weights on the other copies are zero and stay zero (:attr:`choice_inputs`).
    E.g. ``tau_ms=(200.0, 20.0), choice_tau_ms=200.0``: the gate reads both copies (the fast one carries a go
    cue), the choice only the slow one (which holds what was seen); the fast copy adds as many inputs that carry
    little of it, and a choice learned from reward alone learns more slowly the more such inputs it has.

    ``standardise=True`` makes the weights read each input centred and scaled, (z̄ − μ)/σ, with μ, σ running
    statistics kept as buffers (:meth:`update_statistics`, call it while learning). All inputs then have the
    same scale, and the large activity common to every state (the background firing that dominates z̄) no
    longer dominates the readout's gradient, which is what makes a linear readout of spiking activity learn
    at the pace its information allows (a local rule's steps are normalised by the input's energy).

    The gradient helpers (:meth:`score`, :meth:`entropy_gradient`, :meth:`log_std_score`) give the
    derivatives with respect to ``y`` that reward-based e-prop turns into learning signals.
    """

    def __init__(
        self,
        network: Network,
        n_actions: int,
        continuous: bool = False,
        roles: tuple[str, ...] | str = DEFAULT_READOUT_ROLES,
        tau_ms: float | Sequence[float] = 20.0,
        excitatory_only: bool = True,
        policy_init_std: float | None = None,
        log_std_init: float = -0.5,
        seed: int = 0,
        standardise: bool = False,
        statistics_tau: float = 1000.0,
        gate_action: int | None = None,
        choice_tau_ms: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(network, roles, tau_ms, excitatory_only)
        if not (isinstance(statistics_tau, int | float) and math.isfinite(statistics_tau) and statistics_tau >= 1):
            raise ValueError(f"statistics_tau must be a number >= 1 (updates), got {statistics_tau!r}")
        self.standardise = bool(standardise)
        self.statistics_tau = float(statistics_tau)
        self.register_buffer("input_mean", torch.zeros(self.n_inputs, device=network.device))
        self.register_buffer("input_var", torch.ones(self.n_inputs, device=network.device))
        self.register_buffer("statistics_count", torch.zeros((), device=network.device))
        if not isinstance(n_actions, int) or n_actions < (1 if continuous else 2):
            raise ValueError(f"n_actions must be an integer >= {1 if continuous else 2}, got {n_actions!r}")
        self.continuous = bool(continuous)
        if gate_action is not None:
            if self.continuous:
                raise ValueError("gate_action is for discrete actions only")
            integer = isinstance(gate_action, int) and not isinstance(gate_action, bool)
            if not (integer and 0 <= gate_action < n_actions):
                raise ValueError(f"gate_action must be an action in 0..{n_actions - 1}, got {gate_action!r}")
        self.gate_action = gate_action
        device = network.device
        self.choice_tau_ms = self._choice_timescales(choice_tau_ms)
        inputs = None
        if self.choice_tau_ms is not None:
            per_copy = int(self.input_neurons.numel())
            inputs = torch.zeros((len(self.timescales_ms), per_copy), dtype=torch.bool)
            for tau in self.choice_tau_ms:
                inputs[self.timescales_ms.index(tau)] = True
            inputs = inputs.reshape(-1).to(device)
        self.register_buffer("choice_inputs", inputs, persistent=False)
        std = 0.1 / math.sqrt(self.n_inputs) if policy_init_std is None else float(policy_init_std)
        weight = torch.randn((n_actions, self.n_inputs), generator=_generator(seed)) * std
        if inputs is not None:  # the choice rows start (and stay) at zero on the inputs they do not read
            choice_rows = torch.arange(n_actions) != gate_action
            weight[choice_rows] *= inputs.cpu().to(weight.dtype)
        self.policy_weight = _parameter(weight.to(device))
        self.policy_bias = _parameter(torch.zeros(n_actions, device=device))
        self.value_weight = _parameter(torch.zeros(self.n_inputs, device=device))
        self.value_bias = _parameter(torch.zeros((), device=device))
        if self.continuous:
            low, high = LOG_STD_BOUNDS
            if not (isinstance(log_std_init, int | float) and low <= log_std_init <= high):
                raise ValueError(f"log_std_init must lie in [{low}, {high}] (LOG_STD_BOUNDS), got {log_std_init!r}")
            self.log_std = _parameter(torch.full((n_actions,), float(log_std_init), device=device))

    def _choice_timescales(self, choice_tau_ms: float | Sequence[float] | None) -> tuple[float, ...] | None:
        """``choice_tau_ms`` checked against the gate and ``tau_ms``, as a tuple (None: every copy)."""
        if choice_tau_ms is None:
            return None
        if self.gate_action is None:
            raise ValueError("choice_tau_ms is for a gated readout (gate_action) only: the choice head's inputs")
        values = (choice_tau_ms,) if isinstance(choice_tau_ms, int | float) else tuple(choice_tau_ms)
        if not values or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in values):
            raise ValueError(f"choice_tau_ms must be a time constant (ms) of tau_ms or several, got {choice_tau_ms!r}")
        values = tuple(float(t) for t in values)
        unknown = [t for t in values if t not in self.timescales_ms]
        if unknown or len(set(values)) != len(values):
            raise ValueError(
                f"choice_tau_ms must name distinct time constants of the readout's tau_ms {list(self.timescales_ms)}, "
                f"got {list(values)}"
            )
        return None if set(values) == set(self.timescales_ms) else values

    @property
    def n_actions(self) -> int:
        """K: number of discrete actions, or of continuous action dimensions."""
        return int(self.policy_weight.shape[0])

    def features(self, trace: torch.Tensor) -> torch.Tensor:
        """What the readout's weights multiply: the readout trace z̄ ``[B, M]``, or with ``standardise`` each
        input centred and scaled by its running mean and standard deviation, (z̄ − μ)/σ."""
        self._check_trace(trace)
        if not self.standardise:
            return trace
        return (trace - self.input_mean) * torch.rsqrt(self.input_var + 1e-6)

    @torch.no_grad()
    def update_statistics(self, trace: torch.Tensor) -> None:
        """Fold the batch ``[B, M]`` into the running mean and variance of each input (an average over all
        updates so far, then an exponential one over the last ``statistics_tau``). No host read."""
        self._check_trace(trace)
        self.statistics_count.add_(1.0)
        rate = torch.clamp(1.0 / self.statistics_count, min=1.0 / self.statistics_tau)
        batch_mean = trace.mean(dim=0)
        delta = batch_mean - self.input_mean
        self.input_mean.add_(rate * delta)
        batch_var = (trace - self.input_mean).square().mean(dim=0)
        first = (self.statistics_count == 1).to(trace.dtype)
        self.input_var.copy_(first * batch_var + (1.0 - first) * torch.lerp(self.input_var, batch_var, rate))

    def forward(self, trace: torch.Tensor) -> ActorCriticOutput:
        """Policy outputs ``[B, K]`` and values ``[B]`` from the readout trace ``[B, M]``."""
        return self.output_from_features(self.features(trace))

    def output_from_features(self, features: torch.Tensor) -> ActorCriticOutput:
        """Policy outputs and values from :meth:`features` already computed."""
        policy = torch.addmm(self.policy_bias, features, self.policy_weight.t())
        value = features @ self.value_weight + self.value_bias
        return ActorCriticOutput(policy=policy, value=value)

    # ------------------------------------------------------------------------------------ distributions

    def log_probabilities(self, output: ActorCriticOutput) -> torch.Tensor:
        """log π ``[B, K]`` (discrete only): log softmax(y), or the gated policy's (see the class docstring)."""
        self._require(discrete=True)
        if self.gate_action is None:
            return torch.log_softmax(output.policy, dim=1)
        gate = self._gate_mask(output)
        withhold = output.policy[:, self.gate_action : self.gate_action + 1]  # [B, 1]
        choice = torch.log_softmax(output.policy.masked_fill(gate, -math.inf), dim=1)
        return torch.where(gate, torch.nn.functional.logsigmoid(withhold),
                           torch.nn.functional.logsigmoid(-withhold) + choice)  # fmt: skip

    def probabilities(self, output: ActorCriticOutput) -> torch.Tensor:
        """π ``[B, K]`` (discrete only)."""
        self._require(discrete=True)
        if self.gate_action is None:
            return torch.softmax(output.policy, dim=1)
        return self.log_probabilities(output).exp()

    def _gate_mask(self, output: ActorCriticOutput) -> torch.Tensor:
        """``[1, K]`` bool, True at the gate unit."""
        mask = torch.zeros((1, self.n_actions), dtype=torch.bool, device=output.policy.device)
        mask[0, self.gate_action] = True
        return mask

    def mean(self, output: ActorCriticOutput) -> torch.Tensor:
        """μ = tanh(y) ``[B, K]`` (continuous only)."""
        self._require(discrete=False)
        return torch.tanh(output.policy)

    def sample(
        self, output: ActorCriticOutput, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Actions: ``[B]`` int64 (discrete) or ``[B, K]`` float (continuous). ``deterministic`` gives the
        most probable action / the mean. ``generator`` must be on the readout's device."""
        if not self.continuous:
            if deterministic:
                return (output.policy if self.gate_action is None else self.log_probabilities(output)).argmax(dim=1)
            try:
                return torch.multinomial(self.probabilities(output), 1, generator=generator).squeeze(1)
            except RuntimeError as error:  # checked only on failure: no host read on the hot path
                if bool(torch.isfinite(output.policy).all()):
                    raise
                raise FloatingPointError(
                    "the readout's action probabilities are not finite: its parameters or the brain's weights are "
                    "no longer finite (learning diverged); lower readout_learning_rate or learning_rate"
                ) from error
        mean = self.mean(output)
        if deterministic:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + self.log_std.exp() * noise

    def _check_actions(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        batch = output.policy.shape[0]
        if self.continuous:
            if actions.shape != (batch, self.n_actions):
                expected = (batch, self.n_actions)
                raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
            return actions.to(output.policy.dtype)
        if actions.shape != (batch,) or actions.dtype.is_floating_point:
            raise ValueError(f"actions must be {batch} integers, got {tuple(actions.shape)} {actions.dtype}")
        return actions.long()

    def log_prob(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        """log π(a) ``[B]``."""
        actions = self._check_actions(output, actions)
        if not self.continuous:
            return self.log_probabilities(output).gather(1, actions[:, None]).squeeze(1)
        mean, log_std = self.mean(output), self.log_std
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=1)

    def entropy(self, output: ActorCriticOutput) -> torch.Tensor:
        """Entropy of the action distribution ``[B]`` (nats)."""
        if not self.continuous:
            log_p = self.log_probabilities(output)
            return -(log_p.exp() * log_p).sum(dim=1)
        per_dim = self.log_std + 0.5 * math.log(2 * math.pi * math.e)
        return per_dim.sum().expand(output.policy.shape[0])

    # ------------------------------------------------------------------------------------ gradients

    def score(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        """∂ log π(a)/∂y ``[B, K]``: ``onehot(a) − π`` (discrete), ``(a − μ)/σ² · (1 − μ²)`` (continuous).
        Gated: ``1[a = g] − π(g)`` at the gate g; ``1[a ≠ g] (1[a = k] − q_k)`` at the other units, q the
        choice head's softmax."""
        actions = self._check_actions(output, actions)
        if not self.continuous:
            onehot = torch.nn.functional.one_hot(actions, self.n_actions).to(output.policy.dtype)
            if self.gate_action is None:
                return onehot - self.probabilities(output)
            gate = self._gate_mask(output)
            choice = torch.softmax(output.policy.masked_fill(gate, -math.inf), dim=1)  # q, 0 at the gate
            withhold = torch.sigmoid(output.policy[:, self.gate_action : self.gate_action + 1])
            acted = 1.0 - onehot[:, self.gate_action : self.gate_action + 1]
            return torch.where(gate, onehot - withhold, acted * (onehot - choice))
        mean = self.mean(output)
        return (actions - mean) / (2 * self.log_std).exp() * (1 - mean.square())

    def entropy_gradient(self, output: ActorCriticOutput) -> torch.Tensor:
        """∂H/∂y ``[B, K]``: ``−π_k (log π_k + H)`` (discrete); zero (continuous: H depends on σ only).
        Gated (H = H₂(s) + (1 − s) H(q), s = π(g)): ``−s(1 − s)(y_g + H(q))`` at the gate,
        ``−(1 − s) q_k (log q_k + H(q))`` at the other units."""
        if self.continuous:
            return torch.zeros_like(output.policy)
        if self.gate_action is not None:
            gate = self._gate_mask(output)
            withhold_logit = output.policy[:, self.gate_action : self.gate_action + 1]
            withhold = torch.sigmoid(withhold_logit)
            log_q = torch.log_softmax(output.policy.masked_fill(gate, -math.inf), dim=1)
            q = log_q.exp()
            plogq = torch.where(gate, torch.zeros_like(q), q * log_q)
            choice_entropy = -plogq.sum(dim=1, keepdim=True)
            at_gate = -withhold * (1.0 - withhold) * (withhold_logit + choice_entropy)
            return torch.where(gate, at_gate, -(1.0 - withhold) * (plogq + q * choice_entropy))
        log_p = torch.log_softmax(output.policy, dim=1)
        p = log_p.exp()
        entropy = -(p * log_p).sum(dim=1, keepdim=True)
        return -p * (log_p + entropy)

    def log_std_score(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        """∂ log π(a) / ∂ log σ ``[B, K]`` = ``(a − μ)²/σ² − 1`` (continuous only)."""
        self._require(discrete=False)
        actions = self._check_actions(output, actions)
        return ((actions - self.mean(output)) / self.log_std.exp()).square() - 1.0

    def step_score(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        """The score in the units the learning rules step in ``[B, K]``: :meth:`score` for discrete actions;
        for continuous ones the score times σ², ``(a − μ)(1 − μ²)`` (the mean's score divided by its Fisher
        information 1/σ², a natural-gradient step), so that a step of size α with third factor M moves ``y`` by
        about α·M times the distance to the sampled action, whatever σ. The exact score grows as 1/σ: with the agent's
        full normalised steps it drove σ to overflow within 600 decisions on CPGGait (4 envs, 96×10)."""
        score = self.score(output, actions)
        return score * (2 * self.log_std).exp() if self.continuous else score

    def log_std_step_score(self, output: ActorCriticOutput, actions: torch.Tensor) -> torch.Tensor:
        """:meth:`log_std_score` divided by the Fisher information of log σ (2): ``((a − μ)²/σ² − 1)/2``."""
        return 0.5 * self.log_std_score(output, actions)

    @torch.no_grad()
    def clamp_log_std(self) -> None:
        """Clamp log σ into :data:`LOG_STD_BOUNDS`, in place (continuous only; nothing for discrete)."""
        if self.continuous:
            self.log_std.clamp_(*LOG_STD_BOUNDS)

    def _require(self, discrete: bool) -> None:
        if discrete and self.continuous:
            raise ValueError("this readout has continuous actions; use mean()/log_std")
        if not discrete and not self.continuous:
            raise ValueError("this readout has discrete actions; use probabilities()")
