"""The ``"numba"`` CPU path of :func:`~encephagen_gym.plasticity.eprop.eprop_trace_step`: one compiled pass.

Same equations and order of operations as the torch path (see :mod:`encephagen_gym.plasticity.eprop`):
presynaptic filter stages, push into the delayed history, pseudo-derivative of the postsynaptic voltage,
then ē ← κ ē + ψ_post · x_pre(t − d) per synapse, without the ``[P, B]`` temporaries of the gathers, and for
the synapses onto ALIF neurons the adaptation term (ē −= ψ β ε^a, ε^a ← ρ ε^a + e) in a second loop. Used
when the brain's backend is ``"numba"`` (the default on CPU); results agree with the torch path to float32
rounding.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from encephagen_gym.brain.cpu_kernel import cached_for

__all__ = ["trace_step"]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _trace_step(spikes, v_pre, pre_neurons, post_neurons, post_local, index, current, membrane, decay_current,
                jump, propagator, use_nmda, current_nmda, membrane_nmda, nmda_jump, channel_fast, channel_nmda,
                mixed, buffer, eligibility, scalars, slot, depth, width, use_alif, adaptation, post_beta,
                alif_synapses, alif_beta, epsilon):  # fmt: skip
    n_pre, batch = current.shape
    decay_m, decay_nmda, propagator_nmda = scalars[0], scalars[1], scalars[2]
    kappa, threshold, gamma_pd, decay_adaptation = scalars[3], scalars[4], scalars[5], scalars[6]
    zero = np.float32(0.0)

    # presynaptic filter stages: x ← α x + P a, then a ← β a + J z (and the NMDA path)
    for u in range(n_pre):
        neuron = pre_neurons[u]
        for b in range(batch):
            z = spikes[b, neuron]
            membrane[u, b] = membrane[u, b] * decay_m + current[u, b] * propagator[u, 0]
            current[u, b] = current[u, b] * decay_current[u, 0] + z * jump[u, 0]
            if use_nmda:
                membrane_nmda[u, b] = membrane_nmda[u, b] * decay_m + current_nmda[u, b] * propagator_nmda
                current_nmda[u, b] = current_nmda[u, b] * decay_nmda + z * nmda_jump[u, 0]

    # push x(t) (or its per-channel NMDA mixtures) into both copies of the history slot
    low, high = slot * width, (slot + depth) * width
    if use_nmda:
        for c in range(channel_fast.shape[0]):
            for u in range(n_pre):
                row = c * n_pre + u
                for b in range(batch):
                    value = channel_fast[c, u, 0] * membrane[u, b] + channel_nmda[c, u, 0] * membrane_nmda[u, b]
                    mixed[row, b] = value
                    buffer[low + row, b] = value
                    buffer[high + row, b] = value
    else:
        for u in range(n_pre):
            for b in range(batch):
                buffer[low + u, b] = membrane[u, b]
                buffer[high + u, b] = membrane[u, b]

    # pseudo-derivative ψ = max(0, γ/θ − |u − θ| γ/θ²) of each postsynaptic neuron
    n_post = post_neurons.shape[0]
    psi = np.empty((n_post, batch), dtype=np.float32)
    slope, peak = np.float32(-gamma_pd / (threshold * threshold)), np.float32(gamma_pd / threshold)
    for v in range(n_post):
        neuron = post_neurons[v]
        for b in range(batch):
            u = v_pre[b, neuron]
            if use_alif:  # against the adaptive threshold: u − β a is compared with θ
                u = u - adaptation[b, neuron] * post_beta[v, 0]
            value = abs(u - threshold) * slope + peak
            psi[v, b] = value if value > zero else zero

    # ē ← κ ē + ψ_post x_pre(t − d), reading the history window that starts at this slot
    n_syn = index.shape[0]
    if batch == 1:  # flat loop: about 2× faster than 2-D indexing with a unit inner loop
        flat_elig, flat_psi, flat_buffer = eligibility.reshape(n_syn), psi.reshape(n_post), buffer.reshape(-1)
        for p in range(n_syn):
            flat_elig[p] = flat_elig[p] * kappa + flat_psi[post_local[p]] * flat_buffer[low + index[p]]
    else:
        for p in range(n_syn):
            row = low + index[p]
            post = post_local[p]
            for b in range(batch):
                eligibility[p, b] = eligibility[p, b] * kappa + psi[post, b] * buffer[row, b]

    # synapses onto ALIF neurons: e = ψ (x − β ε^a), so ē loses ψ β ε^a; then ε^a ← ρ ε^a + e
    if use_alif:
        for q in range(alif_synapses.shape[0]):
            p = alif_synapses[q]
            row = low + index[p]
            post = post_local[p]
            beta = alif_beta[q, 0]
            for b in range(batch):
                correction = epsilon[q, b] * beta * psi[post, b]
                eligibility[p, b] -= correction
                epsilon[q, b] = epsilon[q, b] * decay_adaptation + (buffer[row, b] * psi[post, b] - correction)


def _copy(tensor: torch.Tensor | None, dims: int = 2, dtype=np.float32) -> np.ndarray:
    """A numpy copy (no reference to the tensor, so the cache below does not keep it alive)."""
    if tensor is None:
        return np.zeros((1,) * dims, dtype=dtype)
    return np.array(tensor.detach().cpu().numpy(), dtype=dtype, copy=True)


def _view(tensor: torch.Tensor | None) -> np.ndarray:
    return np.zeros((1, 1), dtype=np.float32) if tensor is None else tensor.numpy()


_CONSTANTS: dict = {}


def _constants(params, history) -> tuple:
    """The projection's constants as numpy copies (int32 synapse indices halve the per-synapse memory
    traffic), made once per projection (they depend only on the network and the projection)."""
    proj = params.projection
    return cached_for(_CONSTANTS, proj.post_local, lambda: (
        _copy(proj.pre_neurons, dtype=np.int64),
        _copy(proj.post_neurons, dtype=np.int64),
        _copy(proj.post_local, dtype=np.int32),
        _copy(history.index, dtype=np.int32),
        _copy(params.decay_current),
        _copy(params.jump),
        _copy(params.propagator),
        _copy(params.nmda_jump),
        _copy(params.channel_fast, 3),
        _copy(params.channel_nmda, 3),
        _copy(params.post_adaptation_mv),
        _copy(params.alif_synapses, 1, dtype=np.int32),
        _copy(params.alif_adaptation_mv),
    ))  # fmt: skip


def trace_step(
    params, traces, spikes: torch.Tensor, v_pre_reset: torch.Tensor, time: int, adaptation: torch.Tensor | None
) -> None:
    """Advance ``traces`` (:class:`~encephagen_gym.plasticity.eprop.EpropTraces`, CPU) in place to ``time``;
    ``adaptation`` ``[B, N]`` is needed when ``params.use_alif``."""
    history = traces.history
    (pre_neurons, post_neurons, post_local, index, decay_current, jump, propagator, nmda_jump, channel_fast,
     channel_nmda, post_beta, alif_synapses, alif_beta) = _constants(params, history)  # fmt: skip
    scalars = np.array([params.decay_m, params.decay_nmda, params.propagator_nmda, params.kappa,
                        params.threshold_mv, params.gamma_pd, params.decay_adaptation], dtype=np.float32)  # fmt: skip
    if params.use_alif:
        adaptation_view = adaptation.detach().to(torch.float32).contiguous().numpy()
        epsilon = traces.adaptation.numpy()
    else:
        adaptation_view = epsilon = np.zeros((1, 1), dtype=np.float32)
    _trace_step(
        spikes.detach().to(torch.float32).contiguous().numpy(),
        v_pre_reset.detach().to(torch.float32).contiguous().numpy(),
        pre_neurons,
        post_neurons,
        post_local,
        index,
        traces.current.numpy(),
        traces.membrane.numpy(),
        decay_current,
        jump,
        propagator,
        params.use_nmda,
        _view(traces.current_nmda),
        _view(traces.membrane_nmda),
        nmda_jump,
        channel_fast,
        channel_nmda,
        _view(traces.mixed),
        history.buffer.numpy(),
        traces.eligibility.numpy(),
        scalars,
        time % history.depth,
        history.depth,
        history.width,
        params.use_alif,
        adaptation_view,
        post_beta,
        alif_synapses,
        alif_beta,
        epsilon,
    )
