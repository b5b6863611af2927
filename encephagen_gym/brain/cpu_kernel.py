"""The ``"numba"`` CPU backend of the simulator: one compiled, fused step per call.

Same model, order of operations and noise as the ``"torch"`` backend
(:func:`~encephagen_gym.brain.simulator.brain_step`); what differs is how delayed spikes travel.
Instead of pushing every spike's synapses into a ring of future arrivals (random writes over
``D × 2N`` floats per brain, which miss the CPU caches), each brain keeps a **spike queue**: the neurons
that spiked in each of the last D steps (D = max delay + 1), each with a cursor into its CSR row. The
network sorts every row by delay (:func:`~encephagen_gym.brain.network.build_network`), so a spike
reaches its targets in row order: each step, every queued spike whose next synapse is due (delay = its
age) delivers the run of synapses with that delay into the brain's ``[2, N]`` arrivals buffer, which
stays in cache, and moves its cursor on. Postsynaptic neuron and delay are packed into one 32-bit word
per synapse, so a visit reads two cache lines (that word and the weight). Same idea as GeNN's
presynaptic spike queues for axonal delays; it needs no assumption about how delays are distributed.

Batch elements are independent and are spread over numba's threads (``numba.set_num_threads``; torch's
own thread count is left as it was; a batch of one runs on the calling thread); the
sums are taken in a fixed order, so results are reproducible run to run on any thread count. Float
sums run in a different order than the torch backend's ``scatter_add_``, so the two backends agree to
float32 rounding (≈1e-5 mV), not bit for bit; spike trains then diverge after a while, as any chaotic
network's do, with the same statistics (tested).

The first call compiles the kernel (a few seconds; numba caches it on disk). Speed on a 2-core CPU: see
``scripts/benchmark_brain.py`` (``--backends``); the work is memory-latency bound (one visit per queued
spike and delay, ~20 000 synaptic events per ms for the full brain), so the batch scales with cores,
not with SIMD width.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numba
import numpy as np
import torch

__all__ = ["KernelTables", "cached_for", "filter_readout_trace", "fused_step", "kernel_tables"]

T = TypeVar("T")


class KernelTables(NamedTuple):
    """Network constants in the layout the kernel reads (numpy arrays).

    The network's CSR rows ``row_ptr[i]:row_ptr[i + 1]`` are sorted by delay, so a spike's cursor moves
    forward through its row as time goes on; ``synapse[k]`` packs synapse k's postsynaptic neuron (low
    22 bits) and delay in steps (high 10 bits) into one uint32, so that a delivery reads one word besides
    the weight; the weights are read from the live ``weights`` tensor (learning rules change it in
    place). ``neuron_table`` ``[4, N]`` float32, per neuron: the AMPA and NMDA jumps per mV of excitatory
    input, β_j and the per-spike jump of a_j (ALIF neurons; one array, since every array argument adds to the
    cost of a kernel call). ``params`` and ``flags`` hold the step constants (see :func:`_build_tables`).
    """

    row_ptr: np.ndarray
    synapse: np.ndarray
    is_excitatory: np.ndarray
    neuron_table: np.ndarray
    params: np.ndarray
    flags: np.ndarray
    depth: int
    alif_active: bool


# numba's threading layer is left to numba (OpenMP where available: on a 2-core machine about 3× faster per
# launch than its "workqueue" pool). Its OpenMP launch resets the process-wide OpenMP thread count, which
# torch reads too, so fused_step restores torch's count afterwards. The workqueue pool must not be entered
# from two Python threads at once, so parallel launches take a lock; a thread that finds it taken runs its
# batch serially instead.
_PARALLEL_LAUNCH = threading.Lock()

_POST_BITS = 22
_POST_MASK = (1 << _POST_BITS) - 1
_TABLES: dict[int, tuple[weakref.ref, KernelTables]] = {}


def cached_for(cache: dict, owner: torch.Tensor, build: Callable[[], T]) -> T:
    """``build()``, memoised in ``cache`` for as long as the tensor ``owner`` lives (the cached value must
    not reference ``owner``, or it would never be freed: keep numpy copies, not views)."""
    cached = cache.get(id(owner))
    if cached is not None and cached[0]() is owner:
        return cached[1]
    value = build()
    for stale in [key for key, (ref, _) in cache.items() if ref() is None]:
        del cache[stale]
    cache[id(owner)] = (weakref.ref(owner), value)
    return value


def kernel_tables(network) -> KernelTables:
    """The kernel's view of ``network`` (a CPU :class:`~encephagen_gym.brain.network.Network`), cached."""
    return cached_for(_TABLES, network.post, lambda: _build_tables(network))


def _build_tables(network) -> KernelTables:
    n = network.n_neurons
    if network.n_synapses >= 2**31:
        raise ValueError("the numba backend supports fewer than 2^31 synapses; use backend='torch'")
    pre, delay = network.pre.numpy(), network.delay_steps.numpy()
    if n >= 1 << _POST_BITS or network.max_delay_steps >= 1 << (32 - _POST_BITS):
        raise ValueError(
            f"the numba backend supports < {1 << _POST_BITS} neurons and delays < {1 << (32 - _POST_BITS)} steps; "
            "use backend='torch'"
        )
    if np.any((pre[1:] == pre[:-1]) & (delay[1:] < delay[:-1])):
        raise ValueError("the numba backend needs CSR rows sorted by delay (as build_network makes them)")
    gains = network.excitatory_gain.reshape(2, n).numpy()
    decays = network.current_decay.reshape(3).tolist()
    params = np.array(
        [
            network.decay_m,
            network.prop_ampa,
            network.prop_gaba,
            network.prop_nmda,
            network.leak_drive,
            1.0 - network.decay_m,
            network.v_threshold_rel,
            float(network.refractory_steps),
            decays[0],
            decays[1],
            decays[2],
            network.jump_gaba,
            network.background_gain,
            network.decay_adaptation,
        ],
        dtype=np.float32,
    )
    flags = np.array(
        [int(network.nmda_active), int(network.leak_drive != 0.0), int(network.background_rate_hz > 0)],
        dtype=np.int64,
    )
    return KernelTables(
        row_ptr=network.row_ptr.numpy().astype(np.int32),
        synapse=(network.post.numpy().astype(np.uint32) | (delay.astype(np.uint32) << _POST_BITS)),
        is_excitatory=network.is_excitatory.numpy().astype(np.uint8),
        neuron_table=np.ascontiguousarray(
            np.stack([gains[0], gains[1], network.adaptation_mv.numpy(), network.adaptation_jump.numpy()]),
            dtype=np.float32,
        ),
        params=params,
        flags=flags,
        depth=network.max_delay_steps + 1,
        alif_active=network.alif_active,
    )


# Argument order shared by the kernels below and fused_step (state arrays, noise, input, network tables).
@numba.njit(cache=True, nogil=True, boundscheck=False)
def _one_brain(b, step, v, v_pre, cur, refr, spk, arr, queue, cursor, due, qlen, adapt, counts, bank, offsets, inp,
               has_input, w, row_ptr, synapse, is_exc, neuron_table, params, flags, depth):  # fmt: skip
    """One step of brain ``b``."""
    n = v.shape[1]
    gain_a, gain_n, beta, jump = neuron_table[0], neuron_table[1], neuron_table[2], neuron_table[3]
    decay_m, prop_ampa, prop_gaba, prop_nmda = params[0], params[1], params[2], params[3]
    leak, input_gain, theta, refractory_steps = params[4], params[5], params[6], params[7]
    decay_ampa, decay_nmda, decay_gaba, jump_gaba, background_gain, decay_adaptation = (
        params[8], params[9], params[10], params[11], params[12], params[13]
    )  # fmt: skip
    nmda_active, has_leak, has_background = flags[0], flags[1], flags[2]
    zero = np.float32(0.0)
    one = np.float32(1.0)

    # (a) arrivals of this step: a neuron that spiked d steps ago delivers its synapses of delay d. Its row
    #     is sorted by delay; its queue entry keeps a cursor into the row and the delay found there.
    exc_in, inh_in = arr[b, 0], arr[b, 1]
    exc_in[:] = zero
    inh_in[:] = zero
    for d in range(1, depth):
        past = (step - d) % depth
        count = qlen[b, past]
        if count == 0:  # common at small dt: most slots hold no spike
            continue
        slot_due, slot_cursor, slot_queue = due[b, past], cursor[b, past], queue[b, past]
        for m in range(count):
            if slot_due[m] != d:
                continue
            i = slot_queue[m]
            k = slot_cursor[m]
            end = row_ptr[i + 1]
            target = exc_in if is_exc[i] else inh_in
            while k < end:
                packed = synapse[k]
                if packed >> _POST_BITS != d:
                    break
                target[packed & _POST_MASK] += w[k]
                k += 1
            slot_cursor[m] = k
            slot_due[m] = synapse[k] >> _POST_BITS if k < end else 0

    # (b) membrane, threshold, reset, refractoriness, currents (same order as the torch backend); written
    #     without data-dependent branches so that the compiler vectorises it
    v_b, v_pre_b, refr_b, spk_b = v[b], v_pre[b], refr[b], spk[b]
    if adapt is not None:  # None without ALIF neurons: numba prunes these branches when it compiles
        adapt_b = adapt[b]
    ampa_b, nmda_b, gaba_b = cur[0, b], cur[1, b], cur[2, b]
    inp_b = inp[b] if has_input else v_b
    noise = bank[offsets[b] : offsets[b] + n]
    for j in range(n):
        u = v_b[j] * decay_m
        u += prop_ampa * ampa_b[j]
        u += prop_gaba * gaba_b[j]
        if nmda_active:
            u += prop_nmda * nmda_b[j]
        if has_leak:
            u += leak
        if has_input:
            u += input_gain * inp_b[j]
        u *= max(one - refr_b[j], zero)
        v_pre_b[j] = u
        if adapt is not None:  # a(t+1) = ρ a(t) + z(t) (z(t) is still in spk_b), threshold θ + β a(t+1)
            a = adapt_b[j] * decay_adaptation + jump[j] * spk_b[j]
            adapt_b[j] = a
            fired = u >= theta + beta[j] * a
        else:
            fired = u >= theta
        spk_b[j] = one if fired else zero
        v_b[j] = zero if fired else u
        refr_b[j] = max(refr_b[j] - one, zero) + (refractory_steps if fired else zero)
        excitatory = exc_in[j]
        ampa = ampa_b[j] * decay_ampa + gain_a[j] * excitatory
        if has_background:
            ampa += background_gain * noise[j]
        ampa_b[j] = ampa
        nmda_b[j] = nmda_b[j] * decay_nmda + gain_n[j] * excitatory
        gaba_b[j] = gaba_b[j] * decay_gaba + jump_gaba * inh_in[j]

    # (c) count and queue this step's spikes, each with a cursor at the start of its row
    now = step % depth
    slot_due, slot_cursor, slot_queue, counts_b = due[b, now], cursor[b, now], queue[b, now], counts[b]
    count = 0
    for j in range(n):
        if spk_b[j] != zero:
            counts_b[j] += one
            slot_queue[count] = j
            slot_cursor[count] = row_ptr[j]
            slot_due[count] = synapse[row_ptr[j]] >> _POST_BITS if row_ptr[j + 1] > row_ptr[j] else 0
            count += 1
    qlen[b, now] = count


@numba.njit(cache=True, nogil=True, parallel=True)
def _batch_parallel(step, v, v_pre, cur, refr, spk, arr, queue, cursor, due, qlen, adapt, counts, bank, offsets, inp,
                    has_input, w, row_ptr, synapse, is_exc, neuron_table, params, flags, depth):  # fmt: skip
    for b in numba.prange(v.shape[0]):
        _one_brain(b, step, v, v_pre, cur, refr, spk, arr, queue, cursor, due, qlen, adapt, counts, bank, offsets, inp,
                   has_input, w, row_ptr, synapse, is_exc, neuron_table, params, flags, depth)  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _batch_serial(step, v, v_pre, cur, refr, spk, arr, queue, cursor, due, qlen, adapt, counts, bank, offsets, inp,
                  has_input, w, row_ptr, synapse, is_exc, neuron_table, params, flags, depth):  # fmt: skip
    for b in range(v.shape[0]):
        _one_brain(b, step, v, v_pre, cur, refr, spk, arr, queue, cursor, due, qlen, adapt, counts, bank, offsets, inp,
                   has_input, w, row_ptr, synapse, is_exc, neuron_table, params, flags, depth)  # fmt: skip


def fused_step(
    tables: KernelTables,
    weights: torch.Tensor,
    arrays: tuple[np.ndarray, ...],
    bank: np.ndarray,
    offsets: np.ndarray,
    input_current: torch.Tensor | None,
    step: int,
) -> None:
    """Advance the state whose numpy views are ``arrays`` = (v, v_pre, currents, refractory, spikes,
    arrivals, spike_queue, queue_cursor, queue_due, queue_length, adaptation, spike_count) by one step, in
    place. ``offsets``: ``[B]`` noise-window offsets of this step into ``bank`` (the Poisson count bank).

    The kernel does not check bounds: the shapes are checked here (a few integer comparisons), so that a state
    or weights made for another network raise instead of reading out of bounds (the callers check the
    network's fingerprint first, see :func:`~encephagen_gym.brain.simulator.brain_step`)."""
    v = arrays[0]
    n = tables.is_excitatory.shape[0]
    if v.shape[1] != n or arrays[6].shape[1:] != (tables.depth, n) or weights.shape != tables.synapse.shape:
        raise ValueError(f"state or weights do not fit the network the kernel was built for ({n} neurons, "
                         f"{tables.depth} delay slots, {tables.synapse.shape[0]} synapses)")  # fmt: skip
    if input_current is None:
        inp, has_input = v, False
    else:
        inp, has_input = input_current.detach().to(torch.float32).contiguous().numpy(), True
    w = weights.detach().numpy() if weights.requires_grad else weights.numpy()
    # without ALIF neurons the adaptation array is passed as None, which compiles a kernel without ALIF code
    adapt = arrays[10] if tables.alif_active else None
    args = (step, *arrays[:10], adapt, arrays[11], bank, offsets, inp, has_input, w, tables.row_ptr, tables.synapse,
            tables.is_excitatory, tables.neuron_table, tables.params, tables.flags, tables.depth)  # fmt: skip
    torch_threads = torch.get_num_threads()
    if v.shape[0] > 1 and numba.get_num_threads() > 1 and _PARALLEL_LAUNCH.acquire(blocking=False):
        try:
            _batch_parallel(*args)
        finally:
            _PARALLEL_LAUNCH.release()
    else:
        _batch_serial(*args)
    if torch.get_num_threads() != torch_threads:  # numba's OpenMP start-up resets the shared count
        torch.set_num_threads(torch_threads)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _filter_trace(trace, spikes, neurons, decays):
    """z̄ ← κ_t z̄ + z[neurons] for each block t of ``trace`` ``[T·M]`` (one brain; the torch path's operations)."""
    n_inputs = neurons.shape[0]
    for t in range(decays.shape[0]):
        decay, first = decays[t], t * n_inputs
        for m in range(n_inputs):
            trace[first + m] = trace[first + m] * decay + spikes[neurons[m]]


def filter_readout_trace(
    trace: torch.Tensor, spikes: torch.Tensor, neurons: torch.Tensor, decays: torch.Tensor
) -> None:
    """One brain's readout trace (float32, contiguous, CPU ``[1, T·M]``) filtered in place with one step's
    ``spikes`` ``[1, N]`` of the input ``neurons`` ``[M]`` (int64) and per-block ``decays`` ``[T, 1]`` (float32):
    one compiled call instead of three tensor operations (their cost dominates at batch 1). Shapes are checked by
    the caller."""
    _filter_trace(trace.numpy().reshape(-1), spikes.numpy().reshape(-1), neurons.numpy(), decays.numpy().reshape(-1))
