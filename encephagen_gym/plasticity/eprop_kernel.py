"""The ``"numba"`` CPU path of :func:`~encephagen_gym.plasticity.eprop.eprop_trace_step`: two compiled passes.

Same equations as the torch path (see :mod:`encephagen_gym.plasticity.eprop`), split by what they touch:

- every step, :func:`trace_step` (per neuron): presynaptic filter stages, push into the delayed history, and
  the pseudo-derivative ψ of the postsynaptic voltages, recorded for the step;
- when ē is read, or after ``PENDING_STEPS`` steps, :func:`settle` (per synapse): ē ← κ ē + ψ_post ·
  x_pre(t − d) over the recorded steps, and for the synapses onto ALIF neurons the adaptation term
  (ē −= ψ β ε^a, ε^a ← ρ ε^a + e) in a second loop; with ``eligibility="midpoint"`` instead one step per synapse
  through per-neuron coefficients of the window (:func:`_midpoint_coefficients`, :func:`_midpoint_pass`).

The per-synapse pass reads and writes ē, the synapse tables and the history once per decision instead of
once per step; its data (about 1 MB at 96×20) no longer fits in cache next to the brain's, so this is most
of the saving. Used when the brain's backend is ``"numba"`` (the default on CPU); results agree with the
torch path to float32 rounding.

Float32 traces that decay with no input end up subnormal (below 1.2e-38), and arithmetic on subnormals is
tens of times slower on x86 CPUs: a silent presynaptic neuron's filters, and the eligibility of its synapses,
get there within a few seconds. The kernel therefore sets decaying traces below ``TINY`` (1e-20) to zero,
which changes no result at float32 resolution and keeps the pass from slowing down ten-fold in long silences.
Arrays reach the kernels flat (explicit row·B + b offsets); the per-synapse pass views them as ``[rows, B]``
at batch > 1 (numba vectorizes the known unit stride, about 2× faster at batch 16) and goes step by step. At
batch 1, where a 2-D loop with a unit inner trip count is about 3× slower, it indexes them flat (as the
per-neuron step's own batch-1 kernel does, about 2× faster) and goes synapse by synapse, each synapse through all
recorded steps in a register (the same values; 8–20 % faster), in blocks spread over numba's threads when there
are several and the projection is large (:func:`launch`; the same values on any thread count).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numba
import numpy as np
import torch

from encephagen_gym.brain.cpu_kernel import _PARALLEL_LAUNCH, cached_for

__all__ = ["BLOCKS", "PARALLEL_MIN_SYNAPSES", "TINY", "launch", "settle", "trace_step"]

#: At batch 1 the per-synapse passes (this module's and :mod:`reward_eprop_kernel`'s) are spread over numba's threads
#: (when there are several) from this many plastic synapses on: at 96×200 (166,400) two threads took the
#: eligibility pass from 2.8 to 1.65 ms per decision; at 96×20 (16,640) the launch cost about what it saved.
PARALLEL_MIN_SYNAPSES = 50_000

#: The number of blocks a parallel per-synapse pass is split into (fixed, so that sums over blocks are taken in
#: the same order on any thread count).
BLOCKS = 64


def launch(serial: Callable, parallel: Callable, n_synapses: int, *args):
    """``serial(*args)``, or ``parallel(*args)`` (the same pass in blocks on numba's threads) when numba has
    several threads, there are at least ``PARALLEL_MIN_SYNAPSES`` synapses and no other Python thread is in a
    parallel launch (numba's workqueue pool must not be entered twice, see
    :mod:`~encephagen_gym.brain.cpu_kernel`); torch's thread count is restored after it."""
    if n_synapses < PARALLEL_MIN_SYNAPSES or numba.get_num_threads() < 2:
        return serial(*args)
    if not _PARALLEL_LAUNCH.acquire(blocking=False):
        return serial(*args)
    torch_threads = torch.get_num_threads()
    try:
        return parallel(*args)
    finally:
        _PARALLEL_LAUNCH.release()
        if torch.get_num_threads() != torch_threads:  # numba's OpenMP start-up resets the shared count
            torch.set_num_threads(torch_threads)


#: Decaying traces below this magnitude are set to zero (see the module docstring: no subnormal arithmetic).
TINY = 1e-20
_TINY32 = np.float32(TINY)


@numba.njit(inline="always")
def _flushed(value):
    return value if abs(value) >= _TINY32 else np.float32(0.0)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _neuron_step(spikes, v_pre, n_neurons, batch, pre_neurons, post_neurons, current, membrane, decay_current, jump,
                 propagator, use_nmda, current_nmda, membrane_nmda, nmda_jump, channel_fast, channel_nmda, mixed,
                 buffer, scalars, slot, depth, width, use_alif, adaptation, post_beta, psi, pre_spikes):  # fmt: skip
    """One step of the per-neuron traces; ψ of the step into ``psi`` ``[V·B]``; ``pre_spikes`` ``[U·B]``: scratch
    for the presynaptic spikes."""
    # Every array is flat; element (row, b) of a [rows, B] trace is at row·B + b, of a [B, N] state at b·N + n.
    n_pre = pre_neurons.shape[0]
    decay_m, decay_nmda, propagator_nmda = scalars[0], scalars[1], scalars[2]
    threshold, gamma_pd = scalars[4], scalars[5]
    zero = np.float32(0.0)
    for u in range(n_pre):
        neuron = pre_neurons[u]
        for b in range(batch):
            pre_spikes[u * batch + b] = spikes[b * n_neurons + neuron]

    # presynaptic filter stages: x ← α x + P a, then a ← β a + J z (and the NMDA path)
    for u in range(n_pre):
        decay, jump_u, propagator_u = decay_current[u], jump[u], propagator[u]
        for b in range(batch):
            i = u * batch + b
            z = pre_spikes[i]
            membrane[i] = _flushed(membrane[i] * decay_m + current[i] * propagator_u)
            current[i] = _flushed(current[i] * decay + z * jump_u)
            if use_nmda:
                membrane_nmda[i] = _flushed(membrane_nmda[i] * decay_m + current_nmda[i] * propagator_nmda)
                current_nmda[i] = _flushed(current_nmda[i] * decay_nmda + z * nmda_jump[u])

    # push x(t) (or its per-channel NMDA mixtures) into both copies of the history slot
    low, high = slot * width * batch, (slot + depth) * width * batch
    if use_nmda:
        for channel in range(channel_fast.shape[0] // n_pre):
            for u in range(n_pre):
                column = channel * n_pre + u
                fast, slow = channel_fast[column], channel_nmda[column]
                for b in range(batch):
                    value = fast * membrane[u * batch + b] + slow * membrane_nmda[u * batch + b]
                    mixed[column * batch + b] = value
                    buffer[low + column * batch + b] = value
                    buffer[high + column * batch + b] = value
    else:
        for i in range(n_pre * batch):
            buffer[low + i] = membrane[i]
            buffer[high + i] = membrane[i]

    # pseudo-derivative ψ = max(0, γ/θ − |u − θ| γ/θ²) of each postsynaptic neuron
    slope, peak = np.float32(-gamma_pd / (threshold * threshold)), np.float32(gamma_pd / threshold)
    for v in range(post_neurons.shape[0]):
        neuron = post_neurons[v]
        for b in range(batch):
            u = v_pre[b * n_neurons + neuron]
            if use_alif:  # against the adaptive threshold: u − β a is compared with θ
                u = u - adaptation[b * n_neurons + neuron] * post_beta[v]
            value = abs(u - threshold) * slope + peak
            psi[v * batch + b] = value if value > zero else zero


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _neuron_step_single(spikes, v_pre, n_neurons, batch, pre_neurons, post_neurons, current, membrane, decay_current,
                        jump, propagator, use_nmda, current_nmda, membrane_nmda, nmda_jump, channel_fast, channel_nmda,
                        mixed, buffer, scalars, slot, depth, width, use_alif, adaptation, post_beta, psi,
                        pre_spikes):  # fmt: skip
    """:func:`_neuron_step` for one brain (``batch`` = 1), with the same operations in the same order per
    element, so the same values: without the unit inner loops, with the branches hoisted out of the loops and the
    presynaptic spikes gathered into ``pre_spikes`` first (the gather inside kept the filter loops from being
    vectorised), LLVM vectorises the filter and history loops (35 against 62 µs per step at 96×200 with the gather
    inside, 125 µs with the batch loops)."""
    n_pre = pre_neurons.shape[0]
    decay_m, decay_nmda, propagator_nmda = scalars[0], scalars[1], scalars[2]
    threshold, gamma_pd = scalars[4], scalars[5]
    zero = np.float32(0.0)
    for u in range(n_pre):
        pre_spikes[u] = spikes[pre_neurons[u]]
    for u in range(n_pre):
        membrane[u] = _flushed(membrane[u] * decay_m + current[u] * propagator[u])
        current[u] = _flushed(current[u] * decay_current[u] + pre_spikes[u] * jump[u])
    low, high = slot * width, (slot + depth) * width
    if use_nmda:
        for u in range(n_pre):
            membrane_nmda[u] = _flushed(membrane_nmda[u] * decay_m + current_nmda[u] * propagator_nmda)
            current_nmda[u] = _flushed(current_nmda[u] * decay_nmda + pre_spikes[u] * nmda_jump[u])
        for channel in range(channel_fast.shape[0] // n_pre):
            first = channel * n_pre
            for u in range(n_pre):
                value = channel_fast[first + u] * membrane[u] + channel_nmda[first + u] * membrane_nmda[u]
                mixed[first + u] = value
                buffer[low + first + u] = value
                buffer[high + first + u] = value
    else:
        for u in range(n_pre):
            buffer[low + u] = membrane[u]
            buffer[high + u] = membrane[u]
    slope, peak = np.float32(-gamma_pd / (threshold * threshold)), np.float32(gamma_pd / threshold)
    if use_alif:  # against the adaptive threshold: u − β a is compared with θ
        for v in range(post_neurons.shape[0]):
            neuron = post_neurons[v]
            value = abs(v_pre[neuron] - adaptation[neuron] * post_beta[v] - threshold) * slope + peak
            psi[v] = value if value > zero else zero
    else:
        for v in range(post_neurons.shape[0]):
            value = abs(v_pre[post_neurons[v]] - threshold) * slope + peak
            psi[v] = value if value > zero else zero


@numba.njit(inline="always")
def _plain_synapses(start, stop, plain_synapses, post_local, index, buffer, eligibility, kappa, windows, psi_by_post):
    """ē ← κ ē + ψ_post x_pre(t − d) over the recorded steps, for ``plain_synapses[start:stop]`` of one brain."""
    steps = windows.shape[0]
    for i in range(start, stop):
        p = plain_synapses[i]
        first, column = post_local[p] * steps, index[p]
        value = eligibility[p]
        for k in range(steps):
            value = value * kappa + psi_by_post[first + k] * buffer[windows[k] + column]
        eligibility[p] = _flushed(value)


@numba.njit(inline="always")
def _alif_synapses(start, stop, alif_synapses, alif_index, alif_post, alif_beta, epsilon, buffer, eligibility,
                   kappa, decay_adaptation, windows, psi_by_post):  # fmt: skip
    """The same for the synapses onto ALIF neurons ``alif_synapses[start:stop]``: e = ψ (x − β ε^a), so ē also
    loses ψ β ε^a; then ε^a ← ρ ε^a + e."""
    steps = windows.shape[0]
    for q in range(start, stop):
        p = alif_synapses[q]
        first, column, beta = alif_post[q] * steps, alif_index[q], alif_beta[q]
        value, adaptive = eligibility[p], epsilon[q]
        for k in range(steps):
            psi_post = psi_by_post[first + k]
            arrived = buffer[windows[k] + column]
            value = value * kappa + psi_post * arrived
            correction = adaptive * beta * psi_post
            value -= correction
            adaptive = adaptive * decay_adaptation + (arrived * psi_post - correction)
        eligibility[p] = _flushed(value)
        epsilon[q] = _flushed(adaptive)


@numba.njit(inline="always")
def _psi_by_post(psi, n_post, steps, psi_by_post):
    """ψ ``[K, V]`` transposed into ``psi_by_post`` ``[V, K]`` (a synapse's K values side by side)."""
    for k in range(steps):
        for v in range(n_post):
            psi_by_post[v * steps + k] = psi[k * n_post + v]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _synapse_pass_single(post_local, index, buffer, eligibility, scalars, windows, psi, n_post, psi_by_post,
                         plain_synapses, use_alif, alif_synapses, alif_index, alif_post, alif_beta,
                         epsilon):  # fmt: skip
    """:func:`_synapse_pass` for one brain (batch 1), synapse by synapse: each synapse's ē (and ε^a) goes
    through the K recorded steps in a register, with the same operations in the same order per element as the
    step-by-step pass, so the same values (8–20 % faster: ē is read and written once, and ψ is read from
    ``psi_by_post`` ``[V·K]``, ψ transposed so that a synapse's K values lie side by side).
    ``plain_synapses``: the positions of the synapses onto non-adaptive neurons."""
    kappa, decay_adaptation = scalars[3], scalars[6]
    _psi_by_post(psi, n_post, windows.shape[0], psi_by_post)
    _plain_synapses(0, plain_synapses.shape[0], plain_synapses, post_local, index, buffer, eligibility, kappa, windows,
                    psi_by_post)  # fmt: skip
    if use_alif:
        _alif_synapses(0, alif_synapses.shape[0], alif_synapses, alif_index, alif_post, alif_beta, epsilon, buffer,
                       eligibility, kappa, decay_adaptation, windows, psi_by_post)  # fmt: skip


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def _synapse_pass_single_parallel(post_local, index, buffer, eligibility, scalars, windows, psi, n_post, psi_by_post,
                                  plain_synapses, use_alif, alif_synapses, alif_index, alif_post, alif_beta,
                                  epsilon):  # fmt: skip
    """:func:`_synapse_pass_single` with the synapses split into ``BLOCKS`` blocks spread over numba's threads
    (synapses are independent: the same values on any thread count)."""
    chunks = BLOCKS
    kappa, decay_adaptation = scalars[3], scalars[6]
    _psi_by_post(psi, n_post, windows.shape[0], psi_by_post)
    n_plain, n_alif = plain_synapses.shape[0], alif_synapses.shape[0] if use_alif else 0
    for c in numba.prange(chunks):
        _plain_synapses(c * n_plain // chunks, (c + 1) * n_plain // chunks, plain_synapses, post_local, index, buffer,
                        eligibility, kappa, windows, psi_by_post)  # fmt: skip
        _alif_synapses(c * n_alif // chunks, (c + 1) * n_alif // chunks, alif_synapses, alif_index, alif_post,
                       alif_beta, epsilon, buffer, eligibility, kappa, decay_adaptation, windows,
                       psi_by_post)  # fmt: skip


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _synapse_pass(batch, post_local, index, buffer, eligibility, scalars, windows, psi, n_post, use_alif,
                  alif_synapses, alif_index, alif_post, alif_beta, epsilon):  # fmt: skip
    """ē (and ε^a) over the recorded steps k = 0..K−1 of B > 1 brains: ``windows[k]`` is the flat offset of
    step k's history window, ``psi[k·V·B + v·B + b]`` its ψ."""
    kappa, decay_adaptation = scalars[3], scalars[6]
    stride = n_post * batch
    # Step by step, as if each had been applied at its time (the same operations in the same order); between
    # steps ē, the tables and the overlapping history windows stay in cache, as they do not across brain steps.
    elig, history, step = eligibility.reshape((-1, batch)), buffer.reshape((-1, batch)), psi.reshape((-1, batch))
    for k in range(windows.shape[0]):
        # ē ← κ ē + ψ_post x_pre(t − d); as [rows, B] arrays, whose known unit inner stride numba vectorizes
        # (about 2× faster than flat offsets at batch 16)
        low, first_post = windows[k] // batch, (k * stride) // batch
        for p in range(index.shape[0]):
            row, post = low + index[p], first_post + post_local[p]
            for b in range(batch):
                elig[p, b] = elig[p, b] * kappa + step[post, b] * history[row, b]
        # synapses onto ALIF neurons: e = ψ (x − β ε^a), so ē also loses ψ β ε^a; then ε^a ← ρ ε^a + e (a
        # second, branch-free loop: these synapses are interleaved with the others)
        if use_alif:
            adaptive = epsilon.reshape((-1, batch))
            for q in range(alif_synapses.shape[0]):
                row, post, at, beta = low + alif_index[q], first_post + alif_post[q], alif_synapses[q], alif_beta[q]
                for b in range(batch):
                    psi_post = step[post, b]
                    correction = adaptive[q, b] * beta * psi_post
                    elig[at, b] -= correction
                    adaptive[q, b] = adaptive[q, b] * decay_adaptation + (history[row, b] * psi_post - correction)
    for i in range(eligibility.shape[0]):
        eligibility[i] = _flushed(eligibility[i])
    for i in range(epsilon.shape[0]):
        epsilon[i] = _flushed(epsilon[i])


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _midpoint_coefficients(psi, steps, n_post, batch, post_beta, use_alif, kappa, decay_adaptation, coefficients):
    """Per postsynaptic neuron and brain, the window's linear map of the ``"midpoint"`` eligibility (see
    :class:`~encephagen_gym.plasticity.eprop.EpropTraces`): with the presynaptic trace x held constant over the
    K recorded steps, ē_K = κ^K ē_0 + a x + c ε^a_0 and ε^a_K = d ε^a_0 + e x — the exact pass's recursion run
    on the coefficients. ``psi[k·V·B + v·B + b]``; ``coefficients`` ``[4·V·B]`` receives a, c, d, e."""
    size = n_post * batch
    a, c, d, e = (
        coefficients[:size],
        coefficients[size : 2 * size],
        coefficients[2 * size : 3 * size],
        coefficients[3 * size :],
    )
    a[:] = 0.0
    if not use_alif:
        for k in range(steps):
            for j in range(size):
                a[j] = a[j] * kappa + psi[k * size + j]
        return
    c[:] = 0.0
    d[:] = 1.0
    e[:] = 0.0
    beta = post_beta if batch == 1 else np.repeat(post_beta[:n_post], batch)  # one flat loop: numba vectorizes it
    for k in range(steps):
        for j in range(size):
            psi_post = psi[k * size + j]
            adapting = beta[j] * psi_post
            a[j] = a[j] * kappa + psi_post - adapting * e[j]
            c[j] = c[j] * kappa - adapting * d[j]
            d[j] = d[j] * (decay_adaptation - adapting)
            e[j] = e[j] * (decay_adaptation - adapting) + psi_post


@numba.njit(inline="always")
def _midpoint_plain(start, stop, batch, post_local, index, buffer, eligibility, early, late, decay_window,
                    coefficients):  # fmt: skip
    """``"midpoint"`` ē ← κ^K ē + a x̃ for the synapses ``start:stop`` (all of them: a already holds the
    adaptive neurons' own terms), x̃ the mean of the presynaptic trace at the window's two middle steps
    (history offsets ``early``, ``late``)."""
    if batch == 1:  # flat (a unit inner loop is about 2× slower)
        for p in range(start, stop):
            row = index[p]
            arrived = np.float32(0.5) * (buffer[early + row] + buffer[late + row])
            eligibility[p] = _flushed(eligibility[p] * decay_window + coefficients[post_local[p]] * arrived)
        return
    # as [rows, B] arrays, whose known unit inner stride numba vectorizes (5× faster than flat offsets at batch 16)
    elig, history, a = eligibility.reshape((-1, batch)), buffer.reshape((-1, batch)), coefficients.reshape((-1, batch))
    early, late = early // batch, late // batch
    for p in range(start, stop):
        row, post = index[p], post_local[p]
        for b in range(batch):
            arrived = np.float32(0.5) * (history[early + row, b] + history[late + row, b])
            elig[p, b] = _flushed(elig[p, b] * decay_window + a[post, b] * arrived)


@numba.njit(inline="always")
def _midpoint_alif(start, stop, batch, alif_synapses, alif_index, alif_post, epsilon, buffer, eligibility, early,
                   late, coefficients):  # fmt: skip
    """Then for the synapses onto ALIF neurons ``alif_synapses[start:stop]``: ē += c ε^a, ε^a ← d ε^a + e x̃."""
    size = coefficients.shape[0] // 4
    if batch == 1:
        for q in range(start, stop):
            p, row, own = alif_synapses[q], alif_index[q], alif_post[q]
            arrived = np.float32(0.5) * (buffer[early + row] + buffer[late + row])
            adaptive = epsilon[q]
            eligibility[p] = _flushed(eligibility[p] + coefficients[size + own] * adaptive)
            epsilon[q] = _flushed(coefficients[2 * size + own] * adaptive + coefficients[3 * size + own] * arrived)
        return
    elig, history, adaptive = (
        eligibility.reshape((-1, batch)),
        buffer.reshape((-1, batch)),
        epsilon.reshape((-1, batch)),
    )
    rows = size // batch  # a, c, d, e: rows 0, V, 2V, 3V of [4V, B]
    table = coefficients.reshape((-1, batch))
    early, late = early // batch, late // batch
    for q in range(start, stop):
        p, row, post = alif_synapses[q], alif_index[q], alif_post[q]
        for b in range(batch):
            arrived = np.float32(0.5) * (history[early + row, b] + history[late + row, b])
            before = adaptive[q, b]
            elig[p, b] = _flushed(elig[p, b] + table[rows + post, b] * before)
            adaptive[q, b] = _flushed(table[2 * rows + post, b] * before + table[3 * rows + post, b] * arrived)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _midpoint_pass(batch, post_local, index, buffer, eligibility, early, late, decay_window, coefficients, use_alif,
                   alif_synapses, alif_index, alif_post, epsilon):  # fmt: skip
    """The ``"midpoint"`` per-synapse pass of B brains (flat ``[rows, B]`` arrays): one read of ē and two of the
    history per synapse and brain (and of ε^a and the history again onto ALIF neurons), where the exact pass
    reads the history once per recorded step."""
    _midpoint_plain(0, index.shape[0], batch, post_local, index, buffer, eligibility, early, late, decay_window,
                    coefficients)  # fmt: skip
    if use_alif:
        _midpoint_alif(0, alif_synapses.shape[0], batch, alif_synapses, alif_index, alif_post, epsilon, buffer,
                       eligibility, early, late, coefficients)  # fmt: skip


@numba.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def _midpoint_pass_parallel(batch, post_local, index, buffer, eligibility, early, late, decay_window, coefficients,
                            use_alif, alif_synapses, alif_index, alif_post, epsilon):  # fmt: skip
    """:func:`_midpoint_pass` in ``BLOCKS`` blocks on numba's threads (synapses are independent: the same values;
    the ALIF blocks after all plain blocks, as in the serial pass)."""
    n, n_alif = index.shape[0], alif_synapses.shape[0] if use_alif else 0
    for c in numba.prange(BLOCKS):
        _midpoint_plain(c * n // BLOCKS, (c + 1) * n // BLOCKS, batch, post_local, index, buffer, eligibility, early,
                        late, decay_window, coefficients)  # fmt: skip
    for c in numba.prange(BLOCKS):
        _midpoint_alif(c * n_alif // BLOCKS, (c + 1) * n_alif // BLOCKS, batch, alif_synapses, alif_index, alif_post,
                       epsilon, buffer, eligibility, early, late, coefficients)  # fmt: skip


def _copy(tensor: torch.Tensor | None, dims: int = 2, dtype=np.float32) -> np.ndarray:
    """A numpy copy (no reference to the tensor, so the cache below does not keep it alive)."""
    if tensor is None:
        return np.zeros((1,) * dims, dtype=dtype)
    return np.array(tensor.detach().cpu().numpy(), dtype=dtype, copy=True)


def _view(tensor: torch.Tensor | None) -> np.ndarray:
    """A flat numpy view of a contiguous CPU tensor (a one-element array for None)."""
    return np.zeros(1, dtype=np.float32) if tensor is None else tensor.numpy().reshape(-1)


def _float32_view(tensor: torch.Tensor) -> np.ndarray:
    """A flat numpy view of a float32 contiguous CPU tensor (a converted copy otherwise)."""
    if tensor.dtype is not torch.float32 or not tensor.is_contiguous() or tensor.requires_grad:
        tensor = tensor.detach().to(torch.float32).contiguous()
    return tensor.numpy().reshape(-1)


_CONSTANTS: dict = {}


def _constants(params, history) -> tuple:
    """The projection's constants as flat numpy copies (int32 synapse indices halve the per-synapse memory
    traffic) and the scalars, made once per projection (they depend only on the network and the projection)."""
    return cached_for(_CONSTANTS, params.projection.post_local, lambda: _build_constants(params, history))


def _build_constants(params, history) -> tuple:
    proj = params.projection
    post_local, index = _copy(proj.post_local, dtype=np.int32), _copy(history.index, dtype=np.int32)
    alif_synapses = _copy(params.alif_synapses, 1, dtype=np.int32).reshape(-1)
    alif_index, alif_post = (index[alif_synapses], post_local[alif_synapses]) if params.use_alif else (index, index)
    plain = np.ones(index.shape[0], dtype=bool)
    if params.use_alif:
        plain[alif_synapses] = False
    return tuple(array.reshape(-1) for array in (
        _copy(proj.pre_neurons, dtype=np.int64),
        _copy(proj.post_neurons, dtype=np.int64),
        post_local,
        index,
        _copy(params.decay_current),
        _copy(params.jump),
        _copy(params.propagator),
        _copy(params.nmda_jump),
        _copy(params.channel_fast, 3),
        _copy(params.channel_nmda, 3),
        _copy(params.post_adaptation_mv),
        alif_synapses,
        np.ascontiguousarray(alif_index),
        np.ascontiguousarray(alif_post),
        _copy(params.alif_adaptation_mv),
        np.flatnonzero(plain).astype(np.int32),
        np.array([params.decay_m, params.decay_nmda, params.propagator_nmda, params.kappa, params.threshold_mv,
                  params.gamma_pd, params.decay_adaptation], dtype=np.float32),
    ))  # fmt: skip


_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trace_views(traces) -> tuple:
    """Flat numpy views of the trace tensors (which the kernel updates in place), remembered per ``traces``
    object for as long as its tensors stay the same objects: making them costs more than the kernel's own work
    at small sizes. The last two views are scratch: ψ by postsynaptic neuron (the batch-1 pass) and the step's
    presynaptic spikes."""
    tensors = (traces.current, traces.membrane, traces.current_nmda, traces.membrane_nmda, traces.mixed,
               traces.history.buffer, traces._eligibility, traces._adaptation, traces.pending_psi)  # fmt: skip
    cached = _VIEWS.get(traces)
    if cached is not None and all(a is b for a, b in zip(cached[0], tensors, strict=True)):
        return cached[1]
    views = tuple(_view(tensor) for tensor in tensors)
    steps, n_post = traces.pending_psi.shape[:2]
    views += (np.empty(steps * n_post, dtype=np.float32),)  # one brain's ψ by postsynaptic neuron
    views += (np.empty(traces.current.numel(), dtype=np.float32),)  # the step's presynaptic spikes
    _VIEWS[traces] = (tensors, views)
    return views


def trace_step(
    params, traces, spikes: torch.Tensor, v_pre_reset: torch.Tensor, time: int, adaptation: torch.Tensor | None
) -> None:
    """Advance the per-neuron traces of ``traces`` (:class:`~encephagen_gym.plasticity.eprop.EpropTraces`,
    CPU) in place to ``time`` and record the step's ψ (the per-synapse traces follow in :func:`settle`);
    ``adaptation`` ``[B, N]`` is needed when ``params.use_alif``."""
    if traces.pending == traces.pending_psi.shape[0]:
        settle(params, traces)
    history = traces.history
    (pre_neurons, post_neurons, _, _, decay_current, jump, propagator, nmda_jump, channel_fast, channel_nmda,
     post_beta, *_, scalars) = _constants(params, history)  # fmt: skip
    current, membrane, current_nmda, membrane_nmda, mixed, buffer, _, _, psi, _, pre_spikes = _trace_views(traces)
    batch, n_neurons = spikes.shape  # checked by eprop_trace_step: the kernels do not check bounds
    size = post_neurons.shape[0] * batch
    step_psi = psi[traces.pending * size : (traces.pending + 1) * size]
    (_neuron_step_single if batch == 1 else _neuron_step)(
        _float32_view(spikes),
        _float32_view(v_pre_reset),
        n_neurons,
        batch,
        pre_neurons,
        post_neurons,
        current,
        membrane,
        decay_current,
        jump,
        propagator,
        params.use_nmda,
        current_nmda,
        membrane_nmda,
        nmda_jump,
        channel_fast,
        channel_nmda,
        mixed,
        buffer,
        scalars,
        time % history.depth,
        history.depth,
        history.width,
        params.use_alif,
        _float32_view(adaptation) if params.use_alif else step_psi,
        post_beta,
        step_psi,
        pre_spikes,
    )
    traces.pending += 1


def settle(params, traces) -> None:
    """Bring ē and ε^a of ``traces`` up to date over its pending steps (the last one at ``traces.time``)."""
    pending = traces.pending
    if not pending:
        return
    history = traces.history
    (_, post_neurons, post_local, index, *_, post_beta, alif_synapses, alif_index, alif_post, alif_beta,
     plain_synapses, scalars) = _constants(params, history)  # fmt: skip
    _, _, _, _, _, buffer, eligibility, epsilon, psi, psi_by_post, _ = _trace_views(traces)
    batch = traces.batch_size
    first = traces.time - pending + 1
    windows = np.array([((first + k) % history.depth) * history.width * batch for k in range(pending)], np.int64)
    if params.eligibility == "midpoint":
        n_post = post_neurons.shape[0]
        coefficients = np.empty(4 * n_post * batch, dtype=np.float32)
        _midpoint_coefficients(psi, pending, n_post, batch, post_beta, params.use_alif, scalars[3], scalars[6],
                               coefficients)  # fmt: skip
        launch(_midpoint_pass, _midpoint_pass_parallel, index.shape[0] * batch, batch, post_local, index, buffer,
               eligibility, windows[(pending - 1) // 2], windows[pending // 2], np.float32(scalars[3] ** pending),
               coefficients, params.use_alif, alif_synapses, alif_index, alif_post, epsilon)  # fmt: skip
    elif batch == 1:
        launch(_synapse_pass_single, _synapse_pass_single_parallel, index.shape[0], post_local, index, buffer,
               eligibility, scalars, windows, psi, post_neurons.shape[0], psi_by_post, plain_synapses,
               params.use_alif, alif_synapses, alif_index, alif_post, alif_beta, epsilon)  # fmt: skip
    else:
        _synapse_pass(batch, post_local, index, buffer, eligibility, scalars, windows, psi, post_neurons.shape[0],
                      params.use_alif, alif_synapses, alif_index, alif_post, alif_beta, epsilon)  # fmt: skip
    traces.pending = 0
