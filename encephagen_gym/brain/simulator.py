"""The batched LIF simulator: state record, initial state, and one exactly integrated step.

The step is a plain function of ``(network, weights, state, input_current)`` in the style of norse's
functional LIF; :class:`~encephagen_gym.brain.module.SpikingBrain` wraps it. For speed, the step updates
the state's tensors **in place** and returns a state that shares them (a ``NamedTuple`` with the step
counter advanced): keep ``clone_state(state)`` if you need a snapshot.

Model, per neuron (units mV, ms), with currents I_x in mV:

    τ_m dV/dt = −(V − V_rest) + I_ampa + I_nmda + I_gaba + I_ext,   τ_x dI_x/dt = −I_x  (x = ampa/nmda/gaba)

A spike arriving through a synapse of strength J (mV) makes I_x jump by ±J·τ_m/τ_x, so that the charge it
delivers equals a J-mV voltage jump of a delta synapse. Between spikes everything is linear and is
integrated exactly over a step h (decay factors e^{−h/τ}, propagators from
:func:`~encephagen_gym.brain.network.synapse_propagator`; I_ext is held constant over the step). When
V ≥ θ the neuron spikes, V is reset and clamped for the refractory period (its currents keep evolving).

Order within a step t → t+1: (1) V(t+1) from V(t), I(t), I_ext(t); refractory neurons are clamped;
(2) spikes where V(t+1) ≥ θ, reset; (3) currents decay and receive the spikes that arrive at t+1 (ring
buffer slot) plus the Poisson background counts of the step; (4) the new spikes are scattered into the
ring at t+1+delay, only for the neurons that spiked (CSR gather + scatter_add; no dense N×N product).
Internally voltages are measured from V_reset (u = V − V_reset), so a reset is u = 0.

Background noise: each step, each batch element reads one window of N Poisson(λ·dt) counts from a fixed
bank of counts drawn once from an explicit ``torch.Generator``, at an offset from its own
Park–Miller (MINSTD) stream (offsets precomputed in blocks of 1024 steps). Counts are exact Poisson
samples; windows at independent offsets make them (practically) independent across neurons and steps, at
the cost of one memory copy instead of N random
draws per step. Batch elements with the same noise key see the same noise, so identical inputs give
identical spikes.

Backends (``BrainConfig.backend``): ``"torch"`` is the tensor-op step below, on any device; ``"numba"``
(the default on CPU) runs the same step as one compiled function, with a presynaptic spike queue in place
of steps (3)–(4)'s ring (:mod:`~encephagen_gym.brain.cpu_kernel`); it is faster and spreads the batch over
numba's threads. The two agree to float32 rounding (summation order differs), not bit for bit.

Devices: everything stays on the network's device. On CUDA, ``nonzero`` and the size of the spike-event
list are read back once per step (two scalars; no tensors are copied), and ``scatter_add_`` uses float
atomics, so bit-exact repetition is guaranteed on the CPU only (enable
``torch.use_deterministic_algorithms(True)`` for deterministic CUDA scatters, at some speed cost).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from encephagen_gym.brain.config import resolve_backend
from encephagen_gym.brain.network import Network

__all__ = ["BrainState", "brain_step", "clone_state", "init_state", "membrane_potential_mv", "reset_elements"]

_MINSTD_A = 48271
_MINSTD_M = 2147483647
_DEFAULT_BANK_SIZE = 1 << 21
_NOISE_BLOCK = 1024


class _Views(NamedTuple):
    """Views into the state's tensors, made once so that a step does not pay for slicing."""

    ring_slots: tuple[torch.Tensor, ...]
    ampa_nmda: torch.Tensor
    ampa: torch.Tensor
    gaba: torch.Tensor
    arrivals_exc: torch.Tensor
    arrivals_inh: torch.Tensor
    noise_rows: tuple[torch.Tensor, ...]
    gate: torch.Tensor
    nmda: torch.Tensor
    ring_flat: torch.Tensor


def _make_views(currents, arrivals, ring, noise_offsets, v, v_pre) -> _Views:
    return _Views(
        ring_slots=tuple(ring.unbind(0)),
        ampa_nmda=currents[:2],
        ampa=currents[0],
        gaba=currents[2],
        arrivals_exc=arrivals[:, 0],
        arrivals_inh=arrivals[:, 1],
        noise_rows=tuple(noise_offsets.unbind(0)),
        gate=torch.empty_like(v),
        nmda=currents[1],
        ring_flat=ring.view(-1),
    )


class BrainState(NamedTuple):
    """Batched simulator state (B brains, N neurons). Tensors live on the network's device.

    Dynamic (updated in place every step):
        v: ``[B, N]`` membrane potential after reset, in mV measured from V_reset (the absolute potential
            for the defaults V_rest = V_reset = 0; use :func:`membrane_potential_mv` for absolute values).
        v_pre_reset: ``[B, N]`` membrane potential of the last step before threshold/reset (mV), i.e. what
            learning rules' pseudo-derivatives need (refractory neurons read V_reset).
        currents: ``[3, B, N]`` synaptic currents in mV, rows ``AMPA, NMDA, GABA`` (GABA ≤ 0); see the
            ``i_ampa``/``i_nmda``/``i_gaba`` properties.
        refractory: ``[B, N]`` float, refractory steps left (V is held at V_reset while > 0).
        spikes: ``[B, N]`` float32 in {0, 1}, spikes emitted in the last step.
        arrivals: ``[B, 2, N]`` synaptic input that arrived in the last step per postsynaptic neuron and
            channel (0: excitatory, 1: inhibitory), summed strengths in mV (before the τ_m/τ scaling).
        ring: ``[2D, B, 2, N]`` delay ring buffer of future arrivals (slot s and s + D both hold time s);
            torch backend only (empty for numba).
        spike_queue: ``[B, D, N]`` int32, the neurons that spiked at each of the last D steps (slot
            step mod D, first ``queue_length`` entries); numba backend only (empty for torch).
        queue_cursor: ``[B, D, N]`` int32, per queued spike the next of its synapses to deliver, and
        queue_due: ``[B, D, N]`` int32, that synapse's delay (0 once all are delivered); numba only.
        queue_length: ``[B, D]`` int32, number of valid entries per spike-queue slot.
        noise_key: ``[B]`` int64, per-element MINSTD state choosing background-noise windows.
        noise_offsets: ``[K, B]`` int64, precomputed window offsets for the current block of K steps.
        step: number of steps taken (Python int; time = step × dt).
        views: precomputed views into the tensors above (internal).
    Constant (shared, derived from the network and the batch size):
        noise_windows: ``[L − N + 1, N]`` view of the Poisson background count bank.
        syn_ring_offset: ``[S]`` int64, flat ring offset of each synapse's target (delay, channel, post);
            torch backend only.
        backend: ``"torch"`` or ``"numba"`` (resolved from ``network.config.backend`` by :func:`init_state`).
    """

    v: torch.Tensor
    v_pre_reset: torch.Tensor
    currents: torch.Tensor
    refractory: torch.Tensor
    spikes: torch.Tensor
    arrivals: torch.Tensor
    ring: torch.Tensor
    noise_key: torch.Tensor
    noise_offsets: torch.Tensor
    step: int
    noise_windows: torch.Tensor
    syn_ring_offset: torch.Tensor
    views: _Views | _KernelViews
    spike_queue: torch.Tensor
    queue_cursor: torch.Tensor
    queue_due: torch.Tensor
    queue_length: torch.Tensor
    backend: str

    @property
    def batch_size(self) -> int:
        """Number of brains B simulated in parallel."""
        return self.v.shape[0]

    @property
    def i_ampa(self) -> torch.Tensor:
        """``[B, N]`` AMPA current (mV)."""
        return self.currents[0]

    @property
    def i_nmda(self) -> torch.Tensor:
        """``[B, N]`` NMDA-like current (mV)."""
        return self.currents[1]

    @property
    def i_gaba(self) -> torch.Tensor:
        """``[B, N]`` GABA current (mV, ≤ 0)."""
        return self.currents[2]

    def __deepcopy__(self, memo: dict) -> BrainState:
        return clone_state(self)

    def __reduce__(self):
        # the views (numpy views for the numba backend) must be rebuilt on the unpickled tensors
        return _rebuild_state, (tuple(getattr(self, name) for name in self._fields if name != "views"),)

    @property
    def ring_depth(self) -> int:
        """D: number of delay slots (max delay in steps + 1)."""
        return self.spike_queue.shape[1] if self.backend == "numba" else self.ring.shape[0] // 2


_DYNAMIC_FIELDS = ("v", "v_pre_reset", "currents", "refractory", "spikes", "arrivals", "ring",
                   "noise_key", "noise_offsets", "spike_queue", "queue_cursor", "queue_due",
                   "queue_length")  # fmt: skip


class _KernelViews(NamedTuple):
    """numpy views of the state's tensors for the numba backend (made once per state)."""

    arrays: tuple
    bank: object
    noise_offsets: object


def _noise_bank(network: Network, generator: torch.Generator, bank_size: int) -> torch.Tensor:
    n = network.n_neurons
    length = max(bank_size, 4 * n)
    mean_count = network.background_rate_hz * network.config.dt_ms * 1e-3
    rates = torch.full((length,), mean_count, dtype=torch.float32, device=network.device)
    bank = torch.poisson(rates, generator=generator) if mean_count > 0 else rates
    return bank.unfold(0, n, 1)


_POWERS: dict[torch.device, torch.Tensor] = {}


def _minstd_powers(device: torch.device) -> torch.Tensor:
    """``[K]`` int64: A^k mod M for k = 1..K (made once per device)."""
    if device not in _POWERS:
        powers, value = [], 1
        for _ in range(_NOISE_BLOCK):
            value = value * _MINSTD_A % _MINSTD_M
            powers.append(value)
        _POWERS[device] = torch.tensor(powers, dtype=torch.int64, device=device)
    return _POWERS[device]


def _noise_block(key: torch.Tensor, n_windows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next K states of each element's MINSTD stream → (window offsets [K, B], last state [B])."""
    states = torch.remainder(_minstd_powers(key.device)[:, None] * key[None, :], _MINSTD_M)
    return torch.remainder(states, n_windows), states[-1].clone()


def init_state(
    network: Network,
    batch_size: int = 1,
    generator: torch.Generator | None = None,
    noise_keys: torch.Tensor | list[int] | None = None,
    noise_windows: torch.Tensor | None = None,
    bank_size: int = _DEFAULT_BANK_SIZE,
    backend: str | None = None,
) -> BrainState:
    """A fresh state for ``batch_size`` brains.

    Randomness comes only from ``generator`` (a ``torch.Generator`` on the network's device; one seeded
    with ``network.config.seed`` when omitted): initial V uniform in [V_reset, θ), the Poisson background
    count bank (unless ``noise_windows`` of another state are passed to share it), and the per-element noise
    keys (unless ``noise_keys`` gives them, integers in [1, 2³¹ − 1): elements with equal keys, equal initial
    V and equal inputs spike identically).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device, n, cfg = network.device, network.n_neurons, network.config
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device}, the network on {device}")
    shape = (batch_size, n)
    v = network.v_threshold_rel * torch.rand(shape, generator=generator, device=device)
    if noise_keys is None:
        keys = torch.randint(1, _MINSTD_M, (batch_size,), generator=generator, device=device)
    else:
        keys = torch.as_tensor(noise_keys, dtype=torch.int64, device=device).clone()
        if keys.shape != (batch_size,) or bool(((keys < 1) | (keys >= _MINSTD_M)).any()):
            raise ValueError(f"noise_keys must be {batch_size} integers in [1, 2^31 - 1)")
    windows = noise_windows if noise_windows is not None else _noise_bank(network, generator, bank_size)
    offsets, keys = _noise_block(keys, windows.shape[0])
    depth = network.max_delay_steps + 1
    backend = resolve_backend(network.config.backend if backend is None else backend, device)
    empty_int = torch.zeros(0, dtype=torch.int64, device=device)
    if backend == "numba":
        from encephagen_gym.brain import cpu_kernel  # imports numba, only when used

        cpu_kernel.kernel_tables(network)  # checks the network, builds and caches its tables
        ring = torch.zeros(0, device=device)
        syn_offset = empty_int
        # only the first queue_length entries of a slot are ever read: leave the rest unwritten (untouched
        # pages cost no memory)
        queue = torch.empty((batch_size, depth, n), dtype=torch.int32, device=device)
        cursor = torch.empty((batch_size, depth, n), dtype=torch.int32, device=device)
        due = torch.empty((batch_size, depth, n), dtype=torch.int32, device=device)
        queue_length = torch.zeros((batch_size, depth), dtype=torch.int32, device=device)
    else:
        ring = torch.zeros((2 * depth, batch_size, 2, n), device=device)
        syn_offset = network.delay_steps * (batch_size * 2 * n) + network.ring_target
        queue = cursor = due = queue_length = torch.zeros(0, dtype=torch.int32, device=device)
    state = BrainState(
        v=v,
        v_pre_reset=v.clone(),
        currents=torch.zeros((3, *shape), device=device),
        refractory=torch.zeros(shape, device=device),
        spikes=torch.zeros(shape, device=device),
        arrivals=torch.zeros((batch_size, 2, n), device=device),
        ring=ring,
        noise_key=keys,
        noise_offsets=offsets,
        step=0,
        noise_windows=windows,
        syn_ring_offset=syn_offset,
        views=None,  # type: ignore[arg-type]
        spike_queue=queue,
        queue_cursor=cursor,
        queue_due=due,
        queue_length=queue_length,
        backend=backend,
    )
    return _with_views(state)


def _with_views(state: BrainState) -> BrainState:
    if state.backend == "numba":
        fields = ("v", "v_pre_reset", "currents", "refractory", "spikes", "arrivals", "spike_queue", "queue_cursor",
                  "queue_due", "queue_length")  # fmt: skip
        windows = state.noise_windows
        bank = torch.as_strided(windows, (windows.shape[0] + windows.shape[1] - 1,), (1,))
        views = _KernelViews(
            arrays=tuple(getattr(state, name).numpy() for name in fields),
            bank=bank.numpy(),
            noise_offsets=state.noise_offsets.numpy(),
        )
        return state._replace(views=views)
    views = _make_views(state.currents, state.arrivals, state.ring, state.noise_offsets, state.v,
                        state.v_pre_reset)  # fmt: skip
    return state._replace(views=views)


def _rebuild_state(fields: tuple) -> BrainState:
    values = dict(zip((name for name in BrainState._fields if name != "views"), fields, strict=True))
    return _with_views(BrainState(views=None, **values))


def membrane_potential_mv(network: Network, v: torch.Tensor) -> torch.Tensor:
    """Absolute membrane potential in mV from the state's ``v`` or ``v_pre_reset`` (measured from V_reset)."""
    return v + network.config.v_reset_mv


def clone_state(state: BrainState) -> BrainState:
    """A deep copy of the dynamic tensors (the constant bank and synapse offsets are shared)."""
    return _with_views(state._replace(**{name: getattr(state, name).clone() for name in _DYNAMIC_FIELDS}))


def reset_elements(
    network: Network, state: BrainState, mask: torch.Tensor, generator: torch.Generator | None = None
) -> None:
    """Restart the brains where ``mask`` (``[B]`` bool, on the state's device) is True, in place.

    Each restarted brain gets what :func:`init_state` gives a new one — V uniform in [V_reset, θ) (drawn from
    ``generator``, a generator on the network's device; the default one is seeded with the wiring seed),
    no synaptic currents, no refractoriness, no spikes or arrivals, and no spikes still travelling along
    its axons — while its background-noise stream continues where it was (the bank and keys are shared
    state; restarting them would replay the same noise). Brains where ``mask`` is False are untouched.
    No device→host read.
    """
    batch, n = state.v.shape
    if mask.shape != (batch,):
        raise ValueError(f"mask must have shape ({batch},), got {tuple(mask.shape)}")
    mask = mask.to(device=state.v.device, dtype=torch.bool)
    if generator is None:
        generator = torch.Generator(device=state.v.device)
        generator.manual_seed(network.config.seed)
    fresh_v = network.v_threshold_rel * torch.rand((batch, n), generator=generator, device=state.v.device)
    rows = mask[:, None]
    state.v.copy_(torch.where(rows, fresh_v, state.v))
    state.v_pre_reset.copy_(torch.where(rows, fresh_v, state.v_pre_reset))
    keep = (~mask).to(state.v.dtype)
    state.currents.mul_(keep[None, :, None])
    state.refractory.mul_(keep[:, None])
    state.spikes.mul_(keep[:, None])
    state.arrivals.mul_(keep[:, None, None])
    if state.backend == "numba":
        state.queue_length.masked_fill_(rows, 0)
    else:
        state.ring.mul_(keep[None, :, None, None])


def brain_step(
    network: Network,
    weights: torch.Tensor,
    state: BrainState,
    input_current: torch.Tensor | None = None,
) -> BrainState:
    """Advance ``state`` by one step of ``network.config.dt_ms`` (in place); return the advanced state.

    ``weights``: ``[S]`` non-negative synaptic strengths in mV (sign from ``network.channel``).
    ``input_current``: ``[B, N]`` external current in mV (the steady-state depolarisation it would cause),
    held constant over the step, or None. The shape is checked here; finiteness is checked by the callers
    that own the inputs (:class:`~encephagen_gym.brain.module.SpikingBrain` does).
    """
    batch, n = state.v.shape
    if input_current is not None and input_current.shape != (batch, n):
        raise ValueError(f"input_current must have shape {(batch, n)}, got {tuple(input_current.shape)}")
    step = state.step
    views = state.views
    if state.backend == "numba":
        block = step % _NOISE_BLOCK
        if block == 0 and step > 0:
            _refresh_noise_offsets(state)
        from encephagen_gym.brain import cpu_kernel

        tables = cpu_kernel.kernel_tables(network)
        offsets = views.noise_offsets[block]
        cpu_kernel.fused_step(tables, weights, views.arrays, views.bank, offsets, input_current, step)
        return state._replace(step=step + 1)

    # (1) membrane, in u = V − V_reset: u(t+1) = u(t)·e^{-h/τm} + Σ_x P_x I_x(t)
    #     + (1 − e^{-h/τm})(I_ext + V_rest − V_reset); refractory neurons are held at u = 0 by the gate g
    #     = clamp(1 − steps_left, 0, 1)
    v_new = state.v_pre_reset
    torch.mul(state.v, network.decay_m, out=v_new)
    v_new.add_(views.ampa, alpha=network.prop_ampa)
    v_new.add_(views.gaba, alpha=network.prop_gaba)
    if network.nmda_active:
        v_new.add_(views.nmda, alpha=network.prop_nmda)
    if network.leak_drive != 0.0:
        v_new.add_(network.leak_drive)
    if input_current is not None:
        v_new.add_(input_current, alpha=1.0 - network.decay_m)
    gate = views.gate
    torch.sub(1.0, state.refractory, out=gate).clamp_(min=0.0)
    v_new.mul_(gate)

    # (2) threshold, reset (u = 0), refractory countdown
    spikes = state.spikes
    torch.ge(v_new, network.v_threshold_rel, out=spikes)
    torch.addcmul(v_new, v_new, spikes, value=-1.0, out=state.v)
    state.refractory.sub_(1.0).clamp_(min=0.0).add_(spikes, alpha=float(network.refractory_steps))

    # (3) currents decay and take this step's arrivals (ring slots s and s + D) and background counts
    depth = len(views.ring_slots) // 2
    slot = (step + 1) % depth
    early, late = views.ring_slots[slot], views.ring_slots[slot + depth]
    torch.add(early, late, out=state.arrivals)
    early.zero_()
    late.zero_()
    state.currents.mul_(network.current_decay)
    views.ampa_nmda.addcmul_(network.excitatory_gain, views.arrivals_exc)
    views.gaba.add_(views.arrivals_inh, alpha=network.jump_gaba)
    if network.background_rate_hz > 0:
        block = step % _NOISE_BLOCK
        if block == 0 and step > 0:
            _refresh_noise_offsets(state)
        counts = state.noise_windows.index_select(0, views.noise_rows[block])
        views.ampa.add_(counts, alpha=network.background_gain)

    # (4) event-driven propagation of the new spikes into the ring
    _propagate(network, weights, state, slot)
    return state._replace(step=step + 1)


def _refresh_noise_offsets(state: BrainState) -> None:
    offsets, key = _noise_block(state.noise_key, state.noise_windows.shape[0])
    state.noise_offsets.copy_(offsets)
    state.noise_key.copy_(key)


def _propagate(network: Network, weights: torch.Tensor, state: BrainState, slot: int) -> None:
    """Scatter-add the synapses of the neurons that just spiked into the ring at ``slot + delay``."""
    flat_index = state.spikes.view(-1).nonzero().squeeze(1)
    if flat_index.numel() == 0:
        return
    batch, n = state.spikes.shape
    slot_stride = batch * 2 * n
    if batch == 1:
        neuron = flat_index
        base = None
    else:
        neuron = torch.remainder(flat_index, n)
        base = (flat_index - neuron).mul_(2).add_(slot * slot_stride)  # b·2N + slot·stride
    first, counts = network.csr_rows.index_select(0, neuron).unbind(1)  # first synapse, out-degree (int32)
    total = int(counts.sum())
    if total == 0:
        return
    # synapse ids of the spiking neurons: an arange over all events, shifted per spike to its CSR row
    shift = first - counts.cumsum(0, dtype=torch.int32) + counts
    synapse = torch.repeat_interleave(shift, counts, output_size=total)
    synapse.add_(_arange(total, neuron.device))
    target = state.syn_ring_offset.index_select(0, synapse)
    if base is None:
        target.add_(slot * slot_stride)
    else:
        target.add_(torch.repeat_interleave(base, counts, output_size=total))
    state.views.ring_flat.scatter_add_(0, target, weights.index_select(0, synapse))


_ARANGE: dict[torch.device, torch.Tensor] = {}


def _arange(length: int, device: torch.device) -> torch.Tensor:
    """A view of a cached int32 ``arange(length)`` (grown by doubling), to avoid one allocation per step."""
    cached = _ARANGE.get(device)
    if cached is None or cached.numel() < length:
        cached = torch.arange(max(length, 2 * (0 if cached is None else cached.numel()), 1 << 16),
                              dtype=torch.int32, device=device)  # fmt: skip
        _ARANGE[device] = cached
    return cached[:length]
