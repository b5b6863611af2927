r"""e-prop (Bellec et al. 2020, Nat. Commun. 11:3625) for the brain's LIF neurons with current-based
exponential synapses, exact integration, delays, reset to V_reset and an absolute refractory period.

**Factorisation.** e-prop writes the loss gradient as dE/dw_ji ≈ Σ_t L_j(t) e_ji(t): a learning signal
L_j(t) = ∂E/∂z_j(t) (approximated through feedback weights from the readout error) times an eligibility
trace e_ji(t) = ∂z_j(t)/∂w_ji computed forward in time from local quantities, where "∂" means: no
derivative through other neurons' spikes (the recurrent paths).

**Our neuron, per unit weight.** With voltages u measured from V_reset (see
:mod:`encephagen_gym.brain.simulator`), a synapse i→j of magnitude w, delay d and receptor x:

    I_x,j(t)   = β_x I_x,j(t−1) + J_x w z_i(t−d) + …        β_x = e^{−dt/τ_x}, J_x = ±τ_m/τ_x
    u_j(t+1)   = α u_j(t) + Σ_x P_x I_x,j(t) + …            α = e^{−dt/τ_m}, P_x the exact propagator

so the eligibility vector ∂u_j(t)/∂w_ji is the presynaptic spike train filtered by the *synaptic* and then
the *membrane* propagator, read at the synapse after its delay:

    a_i(t) = β_x a_i(t−1) + J_x z_i(t)                   (current stage, per presynaptic neuron)
    x_i(t) = α x_i(t−1) + P_x a_i(t−1)                   (membrane stage, per presynaptic neuron)
    ∂u_j(t)/∂w_ji = x_i(t − d_ji)                          (delayed: the trace as it arrives at the synapse)

For excitatory synapses onto neurons with an NMDA share s_j the two receptor paths add:
(1 − s_j) x^AMPA_i + s_j x^NMDA_i. Inhibitory synapses have J_GABA < 0, so the derivative with respect to
the (non-negative) magnitude is negative, as it should be. Both traces are per neuron (``[U, B]``); since
s_j takes only a few values (0, or the NMDA share of the NMDA regions), the mixtures are formed per neuron,
one "channel" per value, and each synapse reads its channel from one delayed history.

**Reset and refractoriness (the approximation).** As Bellec et al. do for the reset, we take no derivative
through the reset: the post-spike voltage is treated as the pre-spike voltage minus a constant, and the
refractory clamp likewise as subtracting a constant. Hence ∂u(t+1)/∂u(t) = α always, the eligibility vector
above needs no postsynaptic information, and it is *not* zeroed by postsynaptic spikes. The reference
implementation in :mod:`encephagen_gym.plasticity.reference` encodes exactly this (``u − stopgrad(u z)``) and
the tests check that autograd through it reproduces our traces to float32 precision.

**Pseudo-derivative** (Bellec et al.'s piecewise-linear form, in 1/mV):

    ψ_j(t) = (γ_pd / θ) · max(0, 1 − |u_j(t) − θ| / θ),        θ = V_th − V_reset (20 mV by default)

with u_j(t) the voltage before threshold/reset (``state.v_pre_reset``) and dampening γ_pd = 0.3. It peaks at
γ_pd/θ = 0.015 /mV at threshold and vanishes at the reset potential, so it is zero while a neuron is
refractory (the simulator holds u = 0 there), as in Bellec et al.

**Eligibility and readout filter.** e_ji(t) = ψ_j(t) x_i(t − d_ji), and because the readouts are leaky
integrators with κ = e^{−dt/τ_out}, the relevant trace is the κ-filtered ē_ji(t) = κ ē_ji(t−1) + e_ji(t):
for E = ½ Σ_t Σ_k (y_k(t) − y*_k(t))², dE/dw_ji = Σ_t L_j(t) ē_ji(t) with L_j(t) = Σ_k B_jk (y_k − y*_k)(t)
is *exact* within the approximation above when B = W_outᵀ (symmetric feedback). ē is the only per-synapse
state (``[P, B]``).

**Adaptive neurons (ALIF).** A postsynaptic neuron j with an adaptive threshold (``BrainConfig.alif_roles``;
see :mod:`encephagen_gym.brain.simulator`) spikes when z_j(t) = H(u_j(t) − θ − β_j a_j(t)), with the
adaptation a_j(t+1) = ρ a_j(t) + z_j(t), ρ = e^{−dt/τ_a}. Its own spikes feed back into its threshold, so its
hidden state is (u_j, a_j) and the eligibility gains an adaptation component (Bellec et al. 2020, Methods,
"ALIF"). Re-derived for our neuron, with the same approximations as above (no derivative through other
neurons' spikes, the reset or the refractory clamp), writing ε^v_ji(t) = ∂u_j(t)/∂w_ji = x_i(t − d_ji)
(the NMDA mixture where it applies) and ε^a_ji(t) = ∂a_j(t)/∂w_ji:

    ψ_j(t)       = (γ_pd/θ) · max(0, 1 − |u_j(t) − θ − β_j a_j(t)| / θ)      (against the adaptive threshold)
    e_ji(t)      = ∂z_j(t)/∂w_ji = ψ_j(t) (ε^v_ji(t) − β_j ε^a_ji(t))
    ε^a_ji(t+1)  = ρ ε^a_ji(t) + e_ji(t) = ψ_j(t) ε^v_ji(t) + (ρ − ψ_j(t) β_j) ε^a_ji(t)

which is Bellec's ε_a recursion. The threshold does not enter the (current-based, exactly integrated)
membrane equation, so ε^v is unchanged, needs no postsynaptic information, and the delay enters only
through it; the refractory clamp holds u = 0, where ψ = 0, so e and the ε^a input vanish during refractoriness
while ε^a decays by ρ. For non-adaptive neurons β_j = 0 and e_ji = ψ_j x_i(t − d_ji) as before. ε^a is kept
only for the ``Q`` synapses of the projection that end on ALIF neurons (``[Q, B]``; a projection without ALIF
targets carries none and runs exactly the LIF code); ``a_j(t)`` is the state's ``adaptation`` after the step.
The reference (:mod:`encephagen_gym.plasticity.reference`) keeps the own-spike path z_j → a_j in its
autograd graph and the tests check that it reproduces these traces to float32 precision.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from encephagen_gym.brain.config import resolve_backend
from encephagen_gym.brain.decoders import LeakyReadout
from encephagen_gym.brain.network import Network, check_same_network
from encephagen_gym.brain.simulator import BrainState
from encephagen_gym.plasticity.base import Decision, LearningSignal, require
from encephagen_gym.plasticity.delays import (
    DelayedHistory,
    gather_neurons,
    gather_rows,
    history_gather,
    history_push,
    init_history,
)
from encephagen_gym.plasticity.feedback import Feedback, feedback_matrix, learning_signal, make_feedback
from encephagen_gym.plasticity.projection import PlasticProjection, apply_weight_update, check_weights
from encephagen_gym.plasticity.validation import (
    check_activity,
    check_finite,
    check_rate,
    check_shape,
    check_state_network,
    check_synapse_rows,
)

__all__ = [
    "DEFAULT_GAMMA_PD",
    "ELIGIBILITY_MODES",
    "PENDING_STEPS",
    "EProp",
    "EpropParams",
    "EpropTraces",
    "eprop_gradient",
    "eprop_trace_step",
    "init_eprop_traces",
    "make_eprop_params",
    "per_synapse_signal",
    "pseudo_derivative",
    "reset_eprop_traces",
]

#: Dampening factor γ_pd of the pseudo-derivative (Bellec et al. 2020 use 0.3).
DEFAULT_GAMMA_PD = 0.3


def pseudo_derivative(
    v_pre_reset: torch.Tensor, threshold_mv: float, gamma_pd: float = DEFAULT_GAMMA_PD
) -> torch.Tensor:
    """ψ = (γ_pd/θ) max(0, 1 − |u − θ|/θ) in 1/mV, for voltages ``u`` measured from V_reset."""
    psi = (v_pre_reset - threshold_mv).abs_()
    return psi.mul_(-gamma_pd / threshold_mv**2).add_(gamma_pd / threshold_mv).clamp_(min=0.0)


def _pseudo_derivative_(v: torch.Tensor, threshold_mv: float, gamma_pd: float) -> torch.Tensor:
    """:func:`pseudo_derivative` computed in place in ``v`` (a fresh tensor)."""
    v.sub_(threshold_mv).abs_().mul_(-gamma_pd / threshold_mv**2).add_(gamma_pd / threshold_mv)
    return v.clamp_(min=0.0)


class EpropParams(NamedTuple):
    """Constants of e-prop on one projection (see the module docstring for the equations).

    Per presynaptic neuron (``[U, 1]``): ``decay_current`` β, ``jump`` J (per mV of weight, negative for
    inhibitory neurons), ``propagator`` P of its fast receptor (AMPA for excitatory, GABA for inhibitory
    neurons); ``nmda_jump`` (J_NMDA for excitatory neurons, 0 otherwise) when ``use_nmda``.
    NMDA channels (only when ``use_nmda``; C distinct NMDA shares s_c of the synapses' targets):
    ``channel_fast`` and ``channel_nmda`` ``[C, U, 1]``, the weights (1 − s_c, s_c) of the AMPA and NMDA
    traces of excitatory neurons (1, 0 for inhibitory ones). ``history_columns`` ``[P]``: the history
    column each synapse reads (channel·U + presynaptic position). Scalars: ``decay_m`` α, ``decay_nmda``,
    ``propagator_nmda``, ``kappa`` κ, ``threshold_mv`` θ, ``gamma_pd``. ``backend``: ``"numba"`` runs the
    trace step as one compiled CPU pass (:mod:`~encephagen_gym.plasticity.eprop_kernel`), ``"torch"`` as
    tensor ops; taken from the brain's backend (``BrainConfig.backend``).
    ALIF (only when ``use_alif``: some postsynaptic neuron adapts): ``post_adaptation_mv`` ``[V, 1]`` β_j of
    each postsynaptic neuron (0 for non-adaptive ones), ``alif_synapses`` ``[Q]`` the positions (into the
    projection) of the synapses onto adaptive neurons, ``alif_adaptation_mv`` ``[Q, 1]`` their targets' β_j,
    ``decay_adaptation`` ρ. ``eligibility``: ``"exact"`` or ``"midpoint"`` (:data:`ELIGIBILITY_MODES`).
    """

    projection: PlasticProjection
    decay_current: torch.Tensor
    jump: torch.Tensor
    propagator: torch.Tensor
    use_nmda: bool
    nmda_jump: torch.Tensor | None
    channel_fast: torch.Tensor | None
    channel_nmda: torch.Tensor | None
    history_columns: torch.Tensor
    history_width: int
    decay_m: float
    decay_nmda: float
    propagator_nmda: float
    kappa: float
    threshold_mv: float
    gamma_pd: float
    backend: str = "torch"
    use_alif: bool = False
    post_adaptation_mv: torch.Tensor | None = None
    alif_synapses: torch.Tensor | None = None
    alif_adaptation_mv: torch.Tensor | None = None
    decay_adaptation: float = 0.0
    eligibility: str = "exact"


#: With the numba backend (or the ``"midpoint"`` eligibility), the per-synapse traces are advanced over up to
#: this many recorded steps at once.
PENDING_STEPS = 16

#: How ē is advanced over the steps recorded since it was last read (see :class:`EpropTraces`): ``"exact"``, or
#: ``"midpoint"``, the presynaptic trace held at its value in the middle of those steps (a cheaper approximation).
ELIGIBILITY_MODES = ("exact", "midpoint")


@dataclasses.dataclass(eq=False)
class EpropTraces:
    """e-prop state of a batch (updated in place each step; ``time`` counts the steps seen).

    ``current``/``membrane`` ``[U, B]``: the two filter stages a, x of each presynaptic neuron (AMPA/GABA);
    ``*_nmda`` the same for the NMDA path and ``mixed`` ``[C·U, B]`` the per-channel mixtures (None when
    NMDA is unused); ``history``: the delayed ring of ``membrane`` (or ``mixed``); ``eligibility``
    ``[P, B]``: the κ-filtered eligibility ē (1/mV); ``adaptation`` ``[Q, B]``: ε^a of the synapses onto
    ALIF neurons (None without them).

    With the numba backend each step advances only the per-neuron traces and records the step's ψ
    (``pending_psi`` ``[K, V, B]``, ``pending`` steps of it); ē and ε^a are advanced over the recorded steps
    in one pass over the synapses when they are read (the ``eligibility`` and ``adaptation`` properties) or
    when K steps are pending — the same values, with the per-synapse memory traffic paid once per decision
    rather than once per step.

    With ``eligibility="midpoint"`` (either backend) the same deferral advances ē and ε^a over the recorded steps
    with each synapse's presynaptic trace x_i(t − d) held at its mean over the two middle steps of those steps
    (ψ still enters step by step, through per-neuron coefficients): exact when x is constant over the window,
    and one pass with two history reads per synapse instead of one per step. In an agent the window is a
    decision (``substeps`` steps), since ē is read once per decision."""

    current: torch.Tensor
    membrane: torch.Tensor
    current_nmda: torch.Tensor | None
    membrane_nmda: torch.Tensor | None
    mixed: torch.Tensor | None
    history: DelayedHistory
    _eligibility: torch.Tensor
    time: int
    _adaptation: torch.Tensor | None = None
    pending_psi: torch.Tensor | None = None
    pending: int = 0
    settle: Callable[[EpropTraces], None] | None = dataclasses.field(default=None, repr=False)

    @property
    def eligibility(self) -> torch.Tensor:
        """ē ``[P, B]`` (1/mV), up to date."""
        if self.pending:
            self.settle(self)
        return self._eligibility

    @property
    def adaptation(self) -> torch.Tensor | None:
        """ε^a ``[Q, B]`` of the synapses onto ALIF neurons, up to date (None without them)."""
        if self.pending:
            self.settle(self)
        return self._adaptation

    @property
    def batch_size(self) -> int:
        return self._eligibility.shape[1]


def make_eprop_params(
    network: Network,
    projection: PlasticProjection,
    kappa: float,
    gamma_pd: float = DEFAULT_GAMMA_PD,
    eligibility: str = "exact",
) -> EpropParams:
    """e-prop constants for ``projection``; ``kappa`` = e^{−dt/τ_out} of the readout that defines the loss;
    ``eligibility`` one of :data:`ELIGIBILITY_MODES` (see :class:`EpropTraces`)."""
    if not 0.0 <= kappa < 1.0:
        raise ValueError(f"kappa must lie in [0, 1), got {kappa!r}")
    if eligibility not in ELIGIBILITY_MODES:
        raise ValueError(f"eligibility must be one of {ELIGIBILITY_MODES}, got {eligibility!r}")
    if not (math.isfinite(gamma_pd) and gamma_pd > 0):
        raise ValueError(f"gamma_pd must be positive, got {gamma_pd!r}")
    check_same_network(network.fingerprint, projection.fingerprint, "the projection", "the network")
    pre_exc = network.is_excitatory.index_select(0, projection.pre_neurons)[:, None]

    def per_pre(excitatory: float, inhibitory: float) -> torch.Tensor:
        return torch.where(pre_exc, excitatory, inhibitory).to(torch.float32)

    share = network.nmda_share.index_select(0, projection.post) * projection.is_excitatory
    use_nmda = bool(network.nmda_active and bool((share > 0).any()))
    channel_fast = channel_nmda = None
    columns, width = projection.pre_local, projection.n_pre
    if use_nmda:
        values, channel = torch.unique(share, return_inverse=True)
        values = values[:, None, None]  # [C, 1, 1]
        channel_fast = torch.where(pre_exc[None], 1.0 - values, 1.0)
        channel_nmda = torch.where(pre_exc[None], values, 0.0)
        columns = channel * projection.n_pre + projection.pre_local
        width = int(values.shape[0]) * projection.n_pre
    post_beta = network.adaptation_mv.index_select(0, projection.post_neurons)
    use_alif = bool(network.alif_active and bool((post_beta > 0).any()))
    alif = {}
    if use_alif:
        syn_beta = post_beta.index_select(0, projection.post_local)
        synapses = (syn_beta > 0).nonzero().squeeze(1)
        alif = dict(post_adaptation_mv=post_beta[:, None].contiguous(), alif_synapses=synapses,
                    alif_adaptation_mv=syn_beta.index_select(0, synapses)[:, None].contiguous(),
                    decay_adaptation=network.decay_adaptation)  # fmt: skip
    return EpropParams(
        projection=projection,
        decay_current=per_pre(network.decay_ampa, network.decay_gaba),
        jump=per_pre(network.jump_ampa, network.jump_gaba),
        propagator=per_pre(network.prop_ampa, network.prop_gaba),
        use_nmda=use_nmda,
        nmda_jump=per_pre(network.jump_nmda, 0.0) if use_nmda else None,
        channel_fast=channel_fast,
        channel_nmda=channel_nmda,
        history_columns=columns,
        history_width=width,
        decay_m=network.decay_m,
        decay_nmda=network.decay_nmda,
        propagator_nmda=network.prop_nmda,
        kappa=float(kappa),
        threshold_mv=float(network.v_threshold_rel),
        gamma_pd=float(gamma_pd),
        backend=resolve_backend(network.config.backend, network.device),
        use_alif=use_alif,
        **alif,
        eligibility=eligibility,
    )


def init_eprop_traces(params: EpropParams, batch_size: int) -> EpropTraces:
    """Zero traces for ``batch_size`` brains."""
    proj = params.projection
    shape = (proj.n_pre, batch_size)
    device = proj.device
    # see EpropTraces: a deferred history also covers the pending steps
    deferred = params.backend == "numba" or params.eligibility == "midpoint"
    settle = None
    if params.backend == "numba":
        from encephagen_gym.plasticity import eprop_kernel  # imports numba, only when used

        settle = functools.partial(eprop_kernel.settle, params)
    elif deferred:
        settle = functools.partial(_settle_midpoint, params)
    nmda = params.use_nmda
    return EpropTraces(
        current=torch.zeros(shape, device=device),
        membrane=torch.zeros(shape, device=device),
        current_nmda=torch.zeros(shape, device=device) if nmda else None,
        membrane_nmda=torch.zeros(shape, device=device) if nmda else None,
        mixed=torch.zeros((params.history_width, batch_size), device=device) if nmda else None,
        history=init_history(
            params.history_columns,
            proj.delay_steps,
            params.history_width,
            proj.max_delay_steps,
            batch_size,
            extra_steps=PENDING_STEPS - 1 if deferred else 0,
        ),
        _eligibility=torch.zeros((proj.n_synapses, batch_size), device=device),
        time=0,
        _adaptation=torch.zeros((params.alif_synapses.numel(), batch_size), device=device) if params.use_alif else None,
        pending_psi=torch.zeros((PENDING_STEPS, proj.n_post, batch_size), device=device) if deferred else None,
        settle=settle,
    )


def eprop_trace_step(
    params: EpropParams,
    traces: EpropTraces,
    spikes: torch.Tensor,
    v_pre_reset: torch.Tensor,
    adaptation: torch.Tensor | None = None,
) -> None:
    """Advance the traces by one simulation step, in place, given that step's ``spikes``, ``v_pre_reset``
    and (needed when the projection ends on ALIF neurons, ``params.use_alif``) ``adaptation`` (``[B, N]``,
    from the brain state right after the step).

    Order (time t = ``traces.time + 1``): x(t) = α x(t−1) + P a(t−1); a(t) = β a(t−1) + J z(t); push x(t);
    e(t) = ψ_j(t) (x_i(t − d) − β_j ε^a(t)); ē(t) = κ ē(t−1) + e(t); ε^a(t+1) = ρ ε^a(t) + e(t). With the numba
    backend the last three are applied when ``traces.eligibility`` (or ``.adaptation``) is next read (see
    :class:`EpropTraces`)."""
    proj = params.projection
    time = traces.time + 1
    if params.use_alif and adaptation is None:
        raise ValueError("this projection ends on adaptive (ALIF) neurons: pass the state's adaptation")
    shape = (traces.batch_size, proj.n_neurons)  # the numba kernels index without bounds checks
    check_activity(spikes, *shape)
    check_shape("v_pre_reset", v_pre_reset, shape)
    if adaptation is not None:
        check_shape("adaptation", adaptation, shape)
    if params.backend == "numba":
        from encephagen_gym.plasticity import eprop_kernel  # imports numba, only when used

        eprop_kernel.trace_step(params, traces, spikes, v_pre_reset, time, adaptation)
        traces.time = time
        return
    midpoint = params.eligibility == "midpoint"
    if midpoint and traces.pending == traces.pending_psi.shape[0]:
        _settle_midpoint(params, traces)
    z_pre = spikes.index_select(1, proj.pre_neurons).t()  # [U, B]
    traces.membrane.mul_(params.decay_m).addcmul_(traces.current, params.propagator)
    traces.current.mul_(params.decay_current).addcmul_(z_pre, params.jump)
    if params.use_nmda:
        traces.membrane_nmda.mul_(params.decay_m).add_(traces.current_nmda, alpha=params.propagator_nmda)
        traces.current_nmda.mul_(params.decay_nmda).addcmul_(z_pre, params.nmda_jump)
        mixed = traces.mixed.view(params.channel_fast.shape[0], -1, traces.mixed.shape[1])  # [C, U, B]
        torch.mul(params.channel_fast, traces.membrane, out=mixed)
        mixed.addcmul_(params.channel_nmda, traces.membrane_nmda)
        history_push(traces.history, traces.mixed, time)
    else:
        history_push(traces.history, traces.membrane, time)
    v_post = gather_neurons(v_pre_reset, proj.post_neurons)  # [V, B], a fresh tensor
    if params.use_alif:  # ψ against the adaptive threshold: u − β a is compared with θ
        v_post.addcmul_(gather_neurons(adaptation, proj.post_neurons), params.post_adaptation_mv, value=-1.0)
    psi = _pseudo_derivative_(v_post, params.threshold_mv, params.gamma_pd)
    if midpoint:  # recorded; ē follows when read (see EpropTraces)
        traces.pending_psi[traces.pending].copy_(psi)
        traces.pending += 1
        traces.time = time
        return
    arrived = history_gather(traces.history, time)  # [P, B]
    psi_syn = gather_rows(psi, proj.post_local)  # [P, B]
    traces.eligibility.mul_(params.kappa).addcmul_(psi_syn, arrived)
    if params.use_alif:  # synapses onto ALIF neurons: e = ψ (x − β ε^a), ε^a ← ρ ε^a + e
        index, epsilon, eligibility = params.alif_synapses, traces.adaptation, traces.eligibility
        psi_alif = gather_rows(psi_syn, index)
        correction = epsilon * params.alif_adaptation_mv * psi_alif  # ψ β ε^a
        event = gather_rows(arrived, index).mul_(psi_alif).sub_(correction)  # e
        corrected = gather_rows(eligibility, index).sub_(correction)
        if eligibility.shape[1] == 1:  # the flat copy is much faster at B = 1 (as in gather_rows)
            eligibility.view(-1).index_copy_(0, index, corrected.view(-1))
        else:
            eligibility.index_copy_(0, index, corrected)
        epsilon.mul_(params.decay_adaptation).add_(event)
    traces.time = time


def _settle_midpoint(params: EpropParams, traces: EpropTraces) -> None:
    """The torch path of the ``"midpoint"`` eligibility (see :class:`EpropTraces`): over the K pending steps,
    ē ← κ^K ē + a_j x̃ + c_j ε^a and ε^a ← d_j ε^a + e_j x̃, with x̃ the synapse's presynaptic trace averaged over
    the window's two middle steps and a, c, d, e per postsynaptic neuron: the exact recursion run with x held
    at x̃ (the numba path: :func:`~encephagen_gym.plasticity.eprop_kernel.settle`)."""
    steps = traces.pending
    if not steps:
        return
    kappa, psi = params.kappa, traces.pending_psi[:steps]  # [K, V, B]
    a = torch.zeros_like(psi[0])
    if params.use_alif:
        beta, rho = params.post_adaptation_mv, params.decay_adaptation  # [V, 1], ρ
        c, d, e = torch.zeros_like(a), torch.ones_like(a), torch.zeros_like(a)
        for k in range(steps):
            adapting = beta * psi[k]
            a = a * kappa + psi[k] - adapting * e
            c = c * kappa - adapting * d
            d, e = d * (rho - adapting), e * (rho - adapting) + psi[k]
    else:
        for k in range(steps):
            a = a * kappa + psi[k]
    first = traces.time - steps + 1
    history, post_local = traces.history, params.projection.post_local
    arrived = history_gather(history, first + (steps - 1) // 2).add_(history_gather(history, first + steps // 2))
    arrived.mul_(0.5)  # x̃ [P, B]
    eligibility, window = traces._eligibility, kappa**steps
    if params.use_alif:
        index, epsilon = params.alif_synapses, traces._adaptation
        post, arrived_alif = post_local.index_select(0, index), gather_rows(arrived, index)
        corrected = gather_rows(eligibility, index).mul_(window)
        corrected.addcmul_(gather_rows(a, post), arrived_alif).addcmul_(gather_rows(c, post), epsilon)
        epsilon.mul_(gather_rows(d, post)).addcmul_(gather_rows(e, post), arrived_alif)
    eligibility.mul_(window).addcmul_(gather_rows(a, post_local), arrived)
    if params.use_alif:
        eligibility.index_copy_(0, index, corrected)
    traces.pending = 0


def reset_eprop_traces(traces: EpropTraces, mask: torch.Tensor) -> None:
    """Zero every trace of the batch elements where ``mask`` (``[B]`` bool) is True, in place (their
    presynaptic filters, delayed history and eligibility: as if those brains had just started)."""
    keep = 1.0 - mask.to(device=traces.eligibility.device, dtype=traces.eligibility.dtype)
    for tensor in (traces.current, traces.membrane, traces.current_nmda, traces.membrane_nmda, traces.mixed,
                   traces.history.buffer, traces.eligibility, traces.adaptation):  # fmt: skip
        if tensor is not None:
            tensor.mul_(keep)


def per_synapse_signal(params: EpropParams, signal: torch.Tensor) -> torch.Tensor:
    """A per-postsynaptic-neuron signal ``[B, V]`` broadcast to the synapses, ``[P, B]``."""
    return gather_rows(signal.t().contiguous(), params.projection.post_local)


def eprop_gradient(params: EpropParams, traces: EpropTraces, signal: torch.Tensor) -> torch.Tensor:
    """``[P]``: the batch mean of L_j(t) ē_ji(t) for learning signals ``signal`` ``[B, V]`` (one term of
    dE/dw; sum it over the time steps of a trial)."""
    return (per_synapse_signal(params, signal) * traces.eligibility).mean(dim=1)


class EProp:
    """Supervised e-prop on ``projection`` for a regression readout (``brain.decoders.LeakyReadout``).

    Online, one update per simulation step (``E = ½ Σ_t ‖y(t) − y*(t)‖²`` averaged over the batch)::

        traces, readout_trace = rule.init_traces(B), readout.init_trace(B)
        for t in range(T):
            state = brain.step(state, input_current)
            readout.filter_spikes(readout_trace, state.spikes)
            rule.step(traces, state)
            error = readout(readout_trace) - target[t]                       # [B, K]
            rule.apply(brain.weights, traces, LearningSignal(output_error=error))

    or per trial: sum ``rule.gradient(traces, rule.learning_signal(error))`` over the trial and apply
    ``-learning_rate × sum`` with :func:`~encephagen_gym.plasticity.projection.apply_weight_update`.

    ``feedback="symmetric"`` uses B = W_outᵀ (exact e-prop gradient for neurons that feed the readout, zero
    learning signal for the others); ``"random"`` uses fixed Gaussian B (random feedback alignment, every
    postsynaptic neuron learns). :meth:`readout_gradient` gives the exact readout-weight gradient.
    ``learning_rate`` η (mV per unit gradient) may be changed between updates (schedules).
    """

    def __init__(
        self,
        network: Network,
        projection: PlasticProjection,
        readout: LeakyReadout,
        feedback: str = "symmetric",
        gamma_pd: float = DEFAULT_GAMMA_PD,
        feedback_std: float | None = None,
        seed: int = 0,
        learning_rate: float = 1.0,
    ) -> None:
        check_same_network(network.fingerprint, readout.fingerprint, "the readout", "the network")
        self.network = network
        self.projection = projection
        self.readout = readout
        self.learning_rate = check_rate("learning_rate", learning_rate)
        self.params = make_eprop_params(network, projection, readout.kappa, gamma_pd)
        self.feedback: Feedback = make_feedback(
            projection, readout.input_neurons, readout.n_outputs, feedback, feedback_std, seed
        )

    def init_traces(self, batch_size: int) -> EpropTraces:
        """Zero eligibility traces for ``batch_size`` brains."""
        return init_eprop_traces(self.params, batch_size)

    def step(self, traces: EpropTraces, state: BrainState) -> None:
        """Update the traces after one brain step, in place (reads ``state.spikes``, ``state.v_pre_reset`` and,
        with ALIF targets, ``state.adaptation``)."""
        check_state_network(self.projection, state)
        check_synapse_rows("the traces", traces._eligibility, self.projection.n_synapses)
        adaptation = state.adaptation if self.params.use_alif else None
        eprop_trace_step(self.params, traces, state.spikes, state.v_pre_reset, adaptation)

    def record_decision(self, traces: EpropTraces, decision: Decision) -> None:
        """Nothing to record: supervised e-prop learns from the readout error alone."""

    def learning_signal(self, output_error: torch.Tensor, check: bool = True) -> torch.Tensor:
        """L = (y − y*) Bᵀ, ``[B, V]``, from the readout error ``[B, K]``. ``check`` rejects non-finite
        errors (one device→host read per call: pass False in a per-step loop on a GPU; a non-finite
        gradient is still rejected when it is applied)."""
        check_shape("output_error", output_error, (None, self.readout.n_outputs))
        if check:
            check_finite("output_error", output_error)
        matrix = feedback_matrix(self.feedback, self.readout.weight)
        return learning_signal(matrix, output_error)

    def gradient(self, traces: EpropTraces, signal: torch.Tensor) -> torch.Tensor:
        """``[P]`` batch-mean L·ē for this step (see :func:`eprop_gradient`)."""
        check_synapse_rows("the traces", traces.eligibility, self.projection.n_synapses)
        check_shape("learning signal", signal, (traces.eligibility.shape[1], self.projection.n_post))
        return eprop_gradient(self.params, traces, signal)

    def weight_update(self, weights: torch.Tensor, traces: EpropTraces, signal: LearningSignal) -> torch.Tensor:
        """Δw = −η · mean_b L ē, ``[P]`` mV, for ``signal.output_error`` ``[B, K]`` (a gradient-descent step
        on this time step's loss)."""
        check_weights(self.projection, weights)
        error = require(signal, "output_error", "EProp", (traces.eligibility.shape[1], self.readout.n_outputs))
        return self.gradient(traces, self.learning_signal(error, check=False)).mul_(-self.learning_rate)

    def apply(self, weights: torch.Tensor, traces: EpropTraces, signal: LearningSignal) -> dict[str, torch.Tensor]:
        """Apply :meth:`weight_update` (clamped to [0, w_max], Dale's law); returns the mean |Δw| (mV)."""
        delta = self.weight_update(weights, traces, signal)
        apply_weight_update(weights, self.projection, delta, check_finite=False)
        if signal.done is not None:
            self.reset_traces(traces, signal.done.bool())
        return {"mean_abs_dw_mv": delta.abs().mean()}

    def reset_traces(self, traces: EpropTraces, mask: torch.Tensor) -> None:
        """Clear the traces of the batch elements where ``mask`` is True."""
        reset_eprop_traces(traces, mask)

    def readout_gradient(
        self, readout_trace: torch.Tensor, output_error: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact dE/dW_out ``[K, M]`` and dE/db ``[K]`` of this step, batch-averaged."""
        check_shape("output_error", output_error, (readout_trace.shape[0], self.readout.n_outputs))
        batch = readout_trace.shape[0]
        return output_error.t() @ readout_trace / batch, output_error.mean(dim=0)
