"""Build a connectome-wired LIF network from a :class:`BrainConfig`: neurons, synapses (CSR by presynaptic
neuron), delays and the exact-integration constants. Construction runs once on the host (NumPy, seeded
from ``config.seed``); the result lives on the config's device and is never dense N×N."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import weakref
from typing import NamedTuple

import numpy as np
import torch

from encephagen_gym.brain.config import BrainConfig, resolve_device
from encephagen_gym.connectome import Connectome, load_connectome

__all__ = [
    "EXCITATORY",
    "INHIBITORY",
    "Network",
    "NetworkFingerprint",
    "build_network",
    "check_same_network",
    "synapse_propagator",
    "weights_fingerprint",
]

#: Receptor channel of a synapse, given by its presynaptic neuron type (Dale's law).
EXCITATORY = 0
INHIBITORY = 1


def synapse_propagator(tau_syn_ms: float, tau_m_ms: float, dt_ms: float) -> float:
    """Exact contribution to V(t+dt) of a unit synaptic current I(t) decaying with ``tau_syn_ms``.

    Solves τ_m dV/dt = −V + I(t), I(t) = I₀ e^{−t/τ_s}: V(dt) − V(0)e^{−dt/τ_m} = I₀ P with
    P = τ_s/(τ_s − τ_m) (e^{−dt/τ_s} − e^{−dt/τ_m}); the limit (dt/τ_m) e^{−dt/τ_m} when τ_s = τ_m.
    """
    if math.isclose(tau_syn_ms, tau_m_ms, rel_tol=1e-9):
        return dt_ms / tau_m_ms * math.exp(-dt_ms / tau_m_ms)
    return tau_syn_ms / (tau_syn_ms - tau_m_ms) * (math.exp(-dt_ms / tau_syn_ms) - math.exp(-dt_ms / tau_m_ms))


#: BrainConfig fields that do not change the network (where and how it is simulated).
_RUNTIME_FIELDS = ("device", "backend")


@dataclasses.dataclass(frozen=True, eq=False)
class NetworkFingerprint:
    """The identity of a network, made once by :func:`build_network` and carried by everything made for it
    (states, plastic projections, readouts, and through them the learning rules), so that using one with
    another network is an error instead of a crash or a silently wrong result.

    ``settings``: every :class:`~encephagen_gym.brain.config.BrainConfig` field except ``device`` and
    ``backend`` (same config → identical network); ``n_neurons``, ``n_synapses``, ``max_delay_steps``: the
    sizes that shape states and traces. Equality compares ``digest``, a 64-bit hash of all of these (stable
    across processes, so pickled objects keep their identity): O(1).
    """

    settings: tuple[tuple[str, object], ...]
    n_neurons: int
    n_synapses: int
    max_delay_steps: int
    digest: int

    @classmethod
    def of(cls, config, n_neurons: int, n_synapses: int, max_delay_steps: int) -> NetworkFingerprint:
        """The fingerprint of the network built from ``config`` with these sizes."""
        settings = tuple((field.name, getattr(config, field.name)) for field in dataclasses.fields(config)
                         if field.name not in _RUNTIME_FIELDS)  # fmt: skip
        text = repr((settings, n_neurons, n_synapses, max_delay_steps)).encode()
        digest = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
        return cls(settings, n_neurons, n_synapses, max_delay_steps, digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetworkFingerprint) and other.digest == self.digest

    def __hash__(self) -> int:
        return self.digest

    def describe(self) -> str:
        """A short description, e.g. ``tvb96, 96 regions x 20 neurons, dt 1.0 ms, seed 0``."""
        values = dict(self.settings)
        return (f"{values['connectome']}, {self.n_neurons} neurons ({values['neurons_per_region']} per region), "
                f"dt {values['dt_ms']} ms, seed {values['seed']}")  # fmt: skip

    def differences(self, other: NetworkFingerprint, mine: str, theirs: str) -> list[str]:
        """What differs, as ``"<name>: <mine> made for X, <theirs> has Y"`` phrases."""
        values, other_values = dict(self.settings), dict(other.settings)
        pairs = [(name, values.get(name), other_values.get(name)) for name in dict.fromkeys([*values, *other_values])]
        pairs += [(name, getattr(self, name), getattr(other, name))
                  for name in ("n_neurons", "n_synapses", "max_delay_steps")]  # fmt: skip
        return [f"{mine} made for {name}={a!r}, {theirs} has {b!r}" for name, a, b in pairs if a != b]


def check_same_network(
    expected: NetworkFingerprint, found: NetworkFingerprint | None, what: str, target: str = "this network"
) -> None:
    """ValueError unless ``found`` (the fingerprint carried by ``what``, e.g. "the state") is that of the
    network ``target`` has (``expected``); the message lists what differs. O(1) when they match."""
    if found is expected or found == expected:
        return
    if not isinstance(found, NetworkFingerprint):
        raise ValueError(f"{what} carries no network fingerprint (not made by this library's constructors)")
    details = "; ".join(found.differences(expected, what, target)) or "the wiring differs"
    raise ValueError(f"{what} was made for another network ({found.describe()}): {details}")


# The network each weights tensor made by build_network (or moved by SpikingBrain.to) belongs to, so that a
# weight update can tell another brain's weight vector of the same length from its own.
_WEIGHT_OWNERS: dict[int, tuple[weakref.ref, NetworkFingerprint]] = {}


def register_weights(weights: torch.Tensor, fingerprint: NetworkFingerprint) -> None:
    """Record that ``weights`` are the synaptic strengths of the network ``fingerprint`` (kept while the
    tensor lives)."""
    key = id(weights)
    _WEIGHT_OWNERS[key] = (weakref.ref(weights, lambda _, key=key: _WEIGHT_OWNERS.pop(key, None)), fingerprint)


def weights_fingerprint(weights: torch.Tensor) -> NetworkFingerprint | None:
    """The network a weights tensor was built for (None for tensors not made by :func:`build_network`, e.g.
    clones)."""
    entry = _WEIGHT_OWNERS.get(id(weights))
    return entry[1] if entry is not None and entry[0]() is weights else None


class Network(NamedTuple):
    """Immutable network parameters on one device (the synaptic weights are kept apart, see ``weights``).

    Neurons are numbered region by region: region r owns neurons ``[r·n, (r+1)·n)`` with n =
    ``neurons_per_region``, its first ``n_exc`` excitatory. Synapses are sorted by presynaptic neuron
    (CSR), then by delay, then by postsynaptic neuron: the outgoing synapses of neuron i are
    ``row_ptr[i]:row_ptr[i+1]``, in the order in which its spike reaches them.

    Per-neuron tensors (length N): ``neuron_region`` (int64), ``is_excitatory`` (bool),
    ``nmda_share`` (float32, fraction of excitatory charge carried by NMDA onto that neuron), ``is_adaptive``
    (bool, ALIF neurons), ``adaptation_mv`` (float32, β_j: threshold rise per unit of adaptation in mV, 0 for
    non-adaptive neurons) and ``adaptation_jump`` (float32, 1 for ALIF neurons else 0: the jump of a_j per
    spike).
    Per-synapse tensors (length S): ``pre``, ``post`` (int64 neuron ids), ``pre_region``, ``post_region``
    (int64), ``channel`` (EXCITATORY/INHIBITORY, from the presynaptic type), ``delay_steps`` (int64 ≥ 1),
    ``is_long_range`` (bool), ``is_pathway`` (bool: the synapses ``BrainConfig.pathways`` adds onto excitatory
    neurons; its feedforward inhibition, ``pathway_inhibition``, is long-range but not pathway). Initial
    non-negative strengths in mV are returned separately by :func:`build_network` (the learnable ``weights``
    tensor).
    Scalars: decay factors and propagators for exact integration over one step of ``dt_ms``; ``jump_x``
    the current jump per mV of strength (τ_m/τ_x, negative for GABA); ``excitatory_gain`` ``[2, 1, N]``
    the AMPA and NMDA jumps per mV of excitatory strength, split by each neuron's ``nmda_share``;
    ``current_decay`` ``[3, 1, 1]`` and ``v_propagator`` ``[1, 3]`` for the (AMPA, NMDA, GABA) currents;
    ``csr_rows`` ``[N, 2]`` (first synapse, out-degree) per neuron; ``v_threshold_rel`` = θ − V_reset and
    ``leak_drive`` the per-step pull towards V_rest, for voltages measured from V_reset; ``decay_adaptation``
    ρ = e^{−dt/τ_a} and ``alif_active`` (any ALIF neuron). ``fingerprint``: the network's identity
    (:class:`NetworkFingerprint`), checked wherever a state, projection or readout meets a network.
    """

    config: BrainConfig
    connectome: Connectome
    device: torch.device
    n_regions: int
    neurons_per_region: int
    n_exc: int
    n_neurons: int
    n_synapses: int
    max_delay_steps: int
    neuron_region: torch.Tensor
    is_excitatory: torch.Tensor
    nmda_share: torch.Tensor
    is_adaptive: torch.Tensor
    adaptation_mv: torch.Tensor
    adaptation_jump: torch.Tensor
    pre: torch.Tensor
    post: torch.Tensor
    pre_region: torch.Tensor
    post_region: torch.Tensor
    channel: torch.Tensor
    delay_steps: torch.Tensor
    is_long_range: torch.Tensor
    is_pathway: torch.Tensor
    row_ptr: torch.Tensor
    out_degree: torch.Tensor
    ring_target: torch.Tensor
    decay_m: float
    decay_ampa: float
    decay_gaba: float
    decay_nmda: float
    prop_ampa: float
    prop_gaba: float
    prop_nmda: float
    jump_ampa: float
    jump_gaba: float
    jump_nmda: float
    excitatory_gain: torch.Tensor
    current_decay: torch.Tensor
    v_propagator: torch.Tensor
    csr_rows: torch.Tensor
    nmda_active: bool
    v_threshold_rel: float
    leak_drive: float
    background_gain: float
    refractory_steps: int
    background_rate_hz: float
    decay_adaptation: float
    alif_active: bool
    fingerprint: NetworkFingerprint

    @property
    def roles(self) -> tuple[str, ...]:
        """Role of each region (from the connectome's exact-label table)."""
        return self.connectome.roles

    def neurons_of_regions(self, regions: np.ndarray | list[int], excitatory_only: bool = False) -> torch.Tensor:
        """Neuron ids (int64, on the device) of the given regions, optionally only excitatory ones."""
        n = self.neurons_per_region
        width = self.n_exc if excitatory_only else n
        ids = [np.arange(int(r) * n, int(r) * n + width) for r in regions]
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return torch.as_tensor(flat, dtype=torch.int64, device=self.device)

    def neurons_with_role(self, *roles: str, excitatory_only: bool = False) -> torch.Tensor:
        """Neuron ids of all regions whose role is one of ``roles``."""
        return self.neurons_of_regions(self.connectome.regions_with_role(*roles), excitatory_only)

    def synapses_between_roles(self, pre_roles: tuple[str, ...], post_roles: tuple[str, ...]) -> torch.Tensor:
        """Indices of the synapses from regions with a role in ``pre_roles`` to regions with one in
        ``post_roles`` (for selecting plastic projections)."""
        pre_regions = torch.as_tensor(self.connectome.regions_with_role(*pre_roles), device=self.device)
        post_regions = torch.as_tensor(self.connectome.regions_with_role(*post_roles), device=self.device)
        mask = torch.isin(self.pre_region, pre_regions) & torch.isin(self.post_region, post_regions)
        return mask.nonzero().squeeze(1)


def _long_range_delays_mm(connectome: Connectome) -> np.ndarray:
    lengths = connectome.tract_lengths_mm
    return np.where(lengths > 0, lengths, connectome.euclidean_distances_mm())


def _sample_pairs(
    rng: np.random.Generator, n_pre: int, n_post: int, prob: float, exclude_self: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Independent Bernoulli(prob) connections between n_pre × n_post neurons (local indices)."""
    total = n_pre * n_post
    if prob <= 0 or total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    count = rng.binomial(total, min(prob, 1.0))
    flat = np.sort(rng.choice(total, size=count, replace=False))
    pre, post = np.divmod(flat, n_post)
    if exclude_self:
        keep = pre != post
        pre, post = pre[keep], post[keep]
    return pre, post


def _adaptive_neurons(config: BrainConfig, roles: tuple[str, ...]) -> np.ndarray:
    """``[N]`` bool: the ALIF neurons, ``config.n_adaptive_per_region`` excitatory neurons in each region of an
    ``alif_roles`` role, drawn from a random stream of their own (the wiring does not depend on them)."""
    n, n_exc = config.neurons_per_region, config.n_excitatory_per_region
    adaptive = np.zeros(len(roles) * n, dtype=bool)
    count = config.n_adaptive_per_region
    if count == 0:
        return adaptive
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xA11F]))
    for region, role in enumerate(roles):
        if role in config.alif_roles:
            adaptive[region * n + np.sort(rng.choice(n_exc, size=count, replace=False))] = True
    return adaptive


def build_network(config: BrainConfig) -> tuple[Network, torch.Tensor]:
    """Wire the network described by ``config``; return ``(network, weights)``.

    ``weights`` is a float32 tensor of length S with the non-negative strength (mV) of each synapse; its
    sign is given by ``network.channel`` (the presynaptic neuron's type), so learning rules can update it in
    place (keeping it ≥ 0 keeps Dale's law). Same config → identical network and weights.
    """
    device = resolve_device(config.device)
    connectome = load_connectome(config.connectome)
    missing = sorted(set(config.nmda_roles) - set(connectome.roles))
    if missing:
        roles = sorted(set(connectome.roles))
        raise ValueError(f"nmda_roles {missing} do not exist in {config.connectome}; roles: {roles}")
    missing = sorted({role for pair in config.pathways for role in pair} - set(connectome.roles))
    if missing:
        roles = sorted(set(connectome.roles))
        raise ValueError(f"pathway roles {missing} do not exist in {config.connectome}; roles: {roles}")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5EED]))
    n_regions, n = connectome.n_regions, config.neurons_per_region
    n_exc = config.n_excitatory_per_region
    n_neurons = n_regions * n
    dt = config.dt_ms
    local_delay = round(config.local_delay_ms / dt)

    pres, posts, strengths, delays, long_flags = [], [], [], [], []

    # Local recurrent synapses (all neuron types), one block per region.
    j_inh = config.inhibition_ratio * config.j_exc_mv
    for region in range(n_regions):
        pre, post = _sample_pairs(rng, n, n, config.local_connection_prob, exclude_self=True)
        pres.append(pre + region * n)
        posts.append(post + region * n)
        strengths.append(np.where(pre < n_exc, config.j_exc_mv, j_inh))
        delays.append(np.full(len(pre), local_delay))
        long_flags.append(np.zeros(len(pre), dtype=bool))

    # Long-range excitatory synapses between distinct regions, scaled by the normalised connectome weight.
    off_diag = connectome.adjacency()
    w_max = connectome.weights[off_diag].max() if off_diag.any() else 1.0
    tract_mm = _long_range_delays_mm(connectome)
    for source, target in zip(*np.nonzero(off_diag), strict=True):
        w_norm = connectome.weights[source, target] / w_max
        pre, post = _sample_pairs(rng, n_exc, n, config.long_range_connection_prob * w_norm, exclude_self=False)
        strength = config.global_coupling * config.j_exc_mv * w_norm
        pres.append(pre + source * n)
        posts.append(post + target * n)
        strengths.append(np.where(post < n_exc, strength, strength * config.feedforward_inhibition))
        delay = max(1, round(tract_mm[source, target] / config.conduction_velocity_mm_per_ms / dt))
        delays.append(np.full(len(pre), delay))
        long_flags.append(np.ones(len(pre), dtype=bool))

    plastic_flags = [np.zeros(len(p), dtype=bool) for p in pres]
    # Pathways: a fixed number of inputs per excitatory target neuron along the connectome's edges (see
    # BrainConfig); drawn after everything else, so a config without pathways wires exactly as before. With
    # pathway_inhibition > 0 each inhibitory neuron of the target region gets as many from the same sources
    # (feedforward inhibition: fixed, not part of the plastic pathway), drawn after that region's excitatory ones.
    sources_of: dict[str, list[str]] = {}
    for source_role, target_role in config.pathways:
        sources_of.setdefault(target_role, []).append(source_role)
    for target_role, source_roles in sources_of.items():
        sources = connectome.regions_with_role(*source_roles)
        for target in connectome.regions_with_role(target_role):
            weight = np.where(sources == target, 0.0, connectome.weights[sources, target]).astype(np.float64)
            if config.pathway_in_degree == 0 or weight.sum() <= 0:
                continue
            groups = [(np.arange(n_exc), config.pathway_j_mv, True)]
            if config.pathway_inhibition > 0:
                groups.append((np.arange(n_exc, n), config.pathway_inhibition * config.pathway_j_mv, False))
            for neurons, strength, plastic in groups:
                count = len(neurons) * config.pathway_in_degree
                source = rng.choice(sources, size=count, p=weight / weight.sum())
                pres.append(source * n + rng.integers(n_exc, size=count))
                posts.append(np.repeat(target * n + neurons, config.pathway_in_degree))
                strengths.append(np.full(count, strength))
                delay = np.round(tract_mm[source, target] / config.conduction_velocity_mm_per_ms / dt)
                delays.append(np.maximum(delay, 1).astype(np.int64))
                long_flags.append(np.ones(count, dtype=bool))
                plastic_flags.append(np.full(count, plastic))

    pre = np.concatenate(pres).astype(np.int64)
    post = np.concatenate(posts).astype(np.int64)
    strength = np.concatenate(strengths).astype(np.float32)
    delay = np.maximum(np.concatenate(delays), 1).astype(np.int64)
    long_range = np.concatenate(long_flags)
    pathway = np.concatenate(plastic_flags)
    order = np.lexsort((post, delay, pre))  # CSR: by presynaptic neuron, then delay, then postsynaptic
    pre, post, strength, delay, long_range, pathway = (
        pre[order],
        post[order],
        strength[order],
        delay[order],
        long_range[order],
        pathway[order],
    )

    is_exc = (np.arange(n_neurons) % n) < n_exc
    channel = np.where(is_exc[pre], EXCITATORY, INHIBITORY).astype(np.int64)
    out_degree = np.bincount(pre, minlength=n_neurons).astype(np.int64)
    row_ptr = np.concatenate([[0], np.cumsum(out_degree)]).astype(np.int64)
    region_of = np.arange(n_neurons) // n
    max_delay = int(delay.max()) if len(delay) else 1

    nmda_share = np.zeros(n_neurons, dtype=np.float32)
    nmda_regions = [r for r, role in enumerate(connectome.roles) if role in config.nmda_roles]
    share = config.nmda_ratio / (1.0 + config.nmda_ratio)
    for region in nmda_regions:
        nmda_share[region * n : (region + 1) * n] = share

    is_adaptive = _adaptive_neurons(config, connectome.roles)

    tau_m = config.tau_m_ms

    def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

    network = Network(
        config=config,
        connectome=connectome,
        device=device,
        n_regions=n_regions,
        neurons_per_region=n,
        n_exc=n_exc,
        n_neurons=n_neurons,
        n_synapses=len(pre),
        max_delay_steps=max_delay,
        neuron_region=tensor(region_of, torch.int64),
        is_excitatory=tensor(is_exc, torch.bool),
        nmda_share=tensor(nmda_share, torch.float32),
        is_adaptive=tensor(is_adaptive, torch.bool),
        adaptation_mv=tensor(np.where(is_adaptive, config.adaptation_mv, 0.0), torch.float32),
        adaptation_jump=tensor(is_adaptive, torch.float32),
        pre=tensor(pre, torch.int64),
        post=tensor(post, torch.int64),
        pre_region=tensor(region_of[pre], torch.int64),
        post_region=tensor(region_of[post], torch.int64),
        channel=tensor(channel, torch.int64),
        delay_steps=tensor(delay, torch.int64),
        is_long_range=tensor(long_range, torch.bool),
        is_pathway=tensor(pathway, torch.bool),
        row_ptr=tensor(row_ptr, torch.int64),
        out_degree=tensor(out_degree, torch.int64),
        # position of each synapse's target inside one ring slot's [channel, post] block
        ring_target=tensor(channel * n_neurons + post, torch.int64),
        decay_m=math.exp(-dt / tau_m),
        decay_ampa=math.exp(-dt / config.tau_ampa_ms),
        decay_gaba=math.exp(-dt / config.tau_gaba_ms),
        decay_nmda=math.exp(-dt / config.tau_nmda_ms),
        prop_ampa=synapse_propagator(config.tau_ampa_ms, tau_m, dt),
        prop_gaba=synapse_propagator(config.tau_gaba_ms, tau_m, dt),
        prop_nmda=synapse_propagator(config.tau_nmda_ms, tau_m, dt),
        jump_ampa=tau_m / config.tau_ampa_ms,
        jump_gaba=-tau_m / config.tau_gaba_ms,
        jump_nmda=tau_m / config.tau_nmda_ms,
        excitatory_gain=tensor(
            np.stack([(tau_m / config.tau_ampa_ms) * (1.0 - nmda_share), (tau_m / config.tau_nmda_ms) * nmda_share])[
                :, None, :
            ],
            torch.float32,
        ),
        current_decay=tensor(
            np.array([math.exp(-dt / t) for t in (config.tau_ampa_ms, config.tau_nmda_ms, config.tau_gaba_ms)])[
                :, None, None
            ],
            torch.float32,
        ),
        v_propagator=tensor(
            np.array(
                [
                    [
                        synapse_propagator(t, tau_m, dt)
                        for t in (config.tau_ampa_ms, config.tau_nmda_ms, config.tau_gaba_ms)
                    ]
                ]
            ),
            torch.float32,
        ),
        csr_rows=tensor(np.stack([row_ptr[:-1], out_degree], axis=1), torch.int32),
        nmda_active=bool(nmda_share.any()),
        v_threshold_rel=config.v_threshold_mv - config.v_reset_mv,
        leak_drive=(1.0 - math.exp(-dt / tau_m)) * (config.v_rest_mv - config.v_reset_mv),
        background_gain=tau_m / config.tau_ampa_ms * config.background_j_mv,
        refractory_steps=round(config.refractory_ms / dt),
        background_rate_hz=config.background_rate_hz,
        decay_adaptation=math.exp(-dt / config.tau_adaptation_ms),
        alif_active=bool(is_adaptive.any()),
        fingerprint=NetworkFingerprint.of(config, n_neurons, len(pre), max_delay),
    )
    weights = tensor(strength, torch.float32)
    register_weights(weights, network.fingerprint)
    return network, weights
