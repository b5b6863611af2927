"""A differentiable re-implementation of the brain's dynamics, for verifying e-prop against autograd.

:func:`differentiable_run` replays a run of :func:`~encephagen_gym.brain.simulator.brain_step` (same network,
weights, initial voltages and input currents; background noise must be off, because its counts are not
replayed) with plain, out-of-place torch operations, so that autograd can differentiate a loss with respect
to the weights. Spikes are a Heaviside step whose backward pass is e-prop's pseudo-derivative ψ. Two modes:

- ``"eprop"``: the e-prop approximation, i.e. exactly the derivative that
  :mod:`encephagen_gym.plasticity.eprop` computes forward in time: recurrent spikes are detached (no
  derivative through other neurons), the reset is ``u − stopgrad(u·z)`` and the refractory clamp
  ``u − stopgrad(u·(1 − g))`` (no derivative through either). A neuron's own spikes stay in the graph where
  they raise its adaptive threshold (ALIF: a(t+1) = ρ a(t) + z(t)), which is the ε^a path of e-prop.
- ``"bptt"``: full backpropagation through time with the surrogate gradient through everything (recurrent
  spikes, the reset ``u·(1 − z)``, the clamp ``u·g``).

Dense per-step work over all synapses: meant for small networks (hundreds of neurons, hundreds of steps).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from encephagen_gym.brain.network import EXCITATORY, Network
from encephagen_gym.plasticity.eprop import DEFAULT_GAMMA_PD, pseudo_derivative

__all__ = ["ReferenceRun", "differentiable_run"]

MODES = ("eprop", "bptt")


class _Spike(torch.autograd.Function):
    """z = H(u − θ) forward; dz/du = ψ(u) backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, threshold: float, gamma_pd: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.threshold, ctx.gamma_pd = threshold, gamma_pd
        return (u >= threshold).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad * pseudo_derivative(u, ctx.threshold, ctx.gamma_pd), None, None


class _AdaptiveSpike(torch.autograd.Function):
    """z = H(u − θ − βa) forward (threshold formed as the simulator forms it); backward dz/du = ψ(u − βa),
    dz/d(βa) = −ψ(u − βa), with ψ centred on θ."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, beta_a: torch.Tensor, threshold: float, gamma_pd: float) -> torch.Tensor:
        ctx.save_for_backward(u, beta_a)
        ctx.threshold, ctx.gamma_pd = threshold, gamma_pd
        return (u >= beta_a + threshold).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, beta_a = ctx.saved_tensors
        psi = pseudo_derivative(u - beta_a, ctx.threshold, ctx.gamma_pd)
        return grad * psi, -grad * psi, None, None


class ReferenceRun(NamedTuple):
    """``spikes`` ``[T, B, N]`` (differentiable), ``v_pre_reset`` ``[T, B, N]`` (mV from V_reset)."""

    spikes: torch.Tensor
    v_pre_reset: torch.Tensor


def differentiable_run(
    network: Network,
    weights: torch.Tensor,
    v_initial: torch.Tensor,
    input_current: torch.Tensor,
    mode: str = "eprop",
    gamma_pd: float = DEFAULT_GAMMA_PD,
) -> ReferenceRun:
    """Simulate ``T`` steps from voltages ``v_initial`` ``[B, N]`` (currents, refractoriness and delay line
    empty, as after ``init_state``) with ``input_current`` ``[T, B, N]`` (mV) and ``weights`` ``[S]`` (may
    require grad). ValueError if the network has background noise or ``mode`` is unknown."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if network.background_rate_hz > 0:
        raise ValueError("the reference cannot replay background noise; use a network with background_eta=0")
    steps, batch, n = input_current.shape
    if v_initial.shape != (batch, n):
        raise ValueError(f"v_initial must have shape {(batch, n)}, got {tuple(v_initial.shape)}")
    theta = network.v_threshold_rel
    alpha = network.decay_m
    decay = network.current_decay[:, 0, 0]  # AMPA, NMDA, GABA
    gain_ampa, gain_nmda = network.excitatory_gain[0, 0], network.excitatory_gain[1, 0]
    excitatory = network.channel == EXCITATORY
    delays = sorted(set(network.delay_steps.tolist()))
    groups = []
    for delay in delays:
        for exc in (True, False):
            ids = ((network.delay_steps == delay) & (excitatory == exc)).nonzero().squeeze(1)
            if ids.numel():
                groups.append((delay, exc, ids, network.pre[ids], network.post[ids]))

    v = v_initial
    i_ampa = i_nmda = i_gaba = torch.zeros_like(v_initial)
    refractory = torch.zeros_like(v_initial)
    adaptation = torch.zeros_like(v_initial)
    z = torch.zeros_like(v_initial)
    history: list[torch.Tensor] = []  # z(1), z(2), ... ; spikes of time t at index t − 1
    spikes_out, v_out = [], []
    for step in range(steps):
        # (1) membrane
        u = alpha * v + network.prop_ampa * i_ampa + network.prop_gaba * i_gaba
        if network.nmda_active:
            u = u + network.prop_nmda * i_nmda
        u = u + network.leak_drive + (1.0 - alpha) * input_current[step]
        gate = (1.0 - refractory).clamp(min=0.0)
        u = u * gate if mode == "bptt" else u - (u * (1.0 - gate)).detach()
        # (2) adaptation (own spikes, kept in the graph), spike, reset, refractoriness
        if network.alif_active:
            adaptation = network.decay_adaptation * adaptation + network.adaptation_jump * z
            z = _AdaptiveSpike.apply(u, adaptation * network.adaptation_mv, theta, gamma_pd)
        else:
            z = _Spike.apply(u, theta, gamma_pd)
        v = u * (1.0 - z) if mode == "bptt" else u - (u * z).detach()
        refractory = ((refractory - 1.0).clamp(min=0.0) + z * network.refractory_steps).detach()
        spikes_out.append(z)
        v_out.append(u)
        history.append(z if mode == "bptt" else z.detach())
        # (3) currents decay and receive the spikes emitted `delay` steps ago
        time = step + 1
        exc_in = torch.zeros_like(v_initial)
        inh_in = torch.zeros_like(v_initial)
        for delay, exc, ids, pre, post in groups:
            if time - delay < 1:
                continue
            z_pre = history[time - delay - 1].index_select(1, pre)
            contribution = torch.zeros_like(v_initial).index_add(1, post, z_pre * weights[ids])
            if exc:
                exc_in = exc_in + contribution
            else:
                inh_in = inh_in + contribution
        i_ampa = decay[0] * i_ampa + gain_ampa * exc_in
        i_nmda = decay[1] * i_nmda + gain_nmda * exc_in
        i_gaba = decay[2] * i_gaba + network.jump_gaba * inh_in
    return ReferenceRun(spikes=torch.stack(spikes_out), v_pre_reset=torch.stack(v_out))
