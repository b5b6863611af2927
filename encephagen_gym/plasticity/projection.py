"""Plastic projections: which synapses a rule may change, and the one function that changes them.

A :class:`PlasticProjection` is a fixed subset of the brain's synapses (``P`` of the ``S`` in
``brain.weights``) chosen by region-role pairs, plus the per-neuron index maps every rule needs: the
distinct presynaptic neurons (``U``) and postsynaptic neurons (``V``) of the subset, and for each synapse
its position in those lists. Rules keep per-neuron factors as ``[U, B]`` / ``[V, B]`` tensors and only the
genuinely per-synapse quantities as ``[P, B]``.

:func:`apply_weight_update` is the only place where weights change: it adds a batch-averaged ``Δw`` (mV) to
the projection's synapses and clamps them to ``[0, w_max]``. Weights are non-negative magnitudes whose
sign comes from the presynaptic neuron (``network.channel``), so the clamp keeps Dale's law; synapses
outside the projection are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from encephagen_gym.brain.network import (
    EXCITATORY,
    Network,
    NetworkFingerprint,
    check_same_network,
    weights_fingerprint,
)

__all__ = [
    "DEFAULT_PLASTIC_PAIRS",
    "PlasticProjection",
    "apply_weight_update",
    "check_weights",
    "incoming_projection",
    "pathway_projection",
    "projection_from_synapses",
    "select_projection",
]

#: Default plastic projections: the long-range inputs of the readout regions (premotor and motor cortex,
#: see ``brain.decoders.DEFAULT_READOUT_ROLES``) from every role that receives observations (vision →
#: visual, audition → auditory, touch/proprioception → somatosensory, cues → thalamus and prefrontal), plus
#: premotor → motor. Synapses onto the neurons that feed the readout are where e-prop's learning signals
#: act most directly (in ``scripts/plasticity_experiments.py`` the bandit is learned through them and not
#: without them). All excitatory, none onto NMDA regions. On the 96×200 tvb96 brain: 61,213 synapses
#: (2.6 % of 2.39 M); see ``scripts/benchmark_brain.py`` for their cost. Deeper pathways (e.g.
#: visual → temporal → prefrontal) can be added with :func:`select_projection`.
DEFAULT_PLASTIC_PAIRS: tuple[tuple[str, str], ...] = (
    ("visual", "premotor"),
    ("visual", "motor"),
    ("auditory", "premotor"),
    ("auditory", "motor"),
    ("somatosensory", "premotor"),
    ("somatosensory", "motor"),
    ("thalamus", "premotor"),
    ("thalamus", "motor"),
    ("prefrontal", "premotor"),
    ("prefrontal", "motor"),
    ("premotor", "motor"),
)

#: Default upper bound of a plastic weight, as a multiple of the largest initial weight in the projection.
DEFAULT_W_MAX_FACTOR = 4.0


class PlasticProjection(NamedTuple):
    """A set of ``P`` plastic synapses of one network, with per-neuron index maps (all on the device).

    Per synapse (length P): ``synapses`` (index into ``weights``), ``pre``/``post`` (neuron ids),
    ``delay_steps`` (≥ 1), ``is_excitatory`` (bool, from the presynaptic type), ``pre_local`` (index into
    ``pre_neurons``), ``post_local`` (index into ``post_neurons``), ``w_max`` (upper bound in mV: weights
    are clamped to ``[0, w_max]`` after every update).
    Per neuron: ``pre_neurons`` ``[U]`` and ``post_neurons`` ``[V]``, sorted distinct neuron ids.
    ``max_delay_steps`` is the largest delay in the projection (sets the depth of delayed-trace
    histories). ``pairs`` records the role pairs it was built from (empty when built from synapse ids).
    ``by_id`` ``[P]``: the synapses' positions in increasing synapse-id order, and ``synapses_by_id`` /
    ``w_max_by_id`` the ids and bounds in that order (weight updates sweep the weight array in order).
    ``fingerprint``: the identity of the network it was made for (checked by :func:`apply_weight_update` and
    by the rules at every entry point).
    """

    synapses: torch.Tensor
    pre: torch.Tensor
    post: torch.Tensor
    delay_steps: torch.Tensor
    is_excitatory: torch.Tensor
    pre_neurons: torch.Tensor
    post_neurons: torch.Tensor
    pre_local: torch.Tensor
    post_local: torch.Tensor
    w_max: torch.Tensor
    max_delay_steps: int
    n_neurons: int
    pairs: tuple[tuple[str, str], ...]
    by_id: torch.Tensor
    synapses_by_id: torch.Tensor
    w_max_by_id: torch.Tensor
    fingerprint: NetworkFingerprint

    @property
    def n_synapses(self) -> int:
        """P, the number of plastic synapses."""
        return int(self.synapses.numel())

    @property
    def n_pre(self) -> int:
        """U, the number of distinct presynaptic neurons."""
        return int(self.pre_neurons.numel())

    @property
    def n_post(self) -> int:
        """V, the number of distinct postsynaptic neurons."""
        return int(self.post_neurons.numel())

    @property
    def device(self) -> torch.device:
        return self.synapses.device

    def to(self, device: torch.device | str) -> PlasticProjection:
        """The same projection with its tensors on ``device``."""
        items = self._asdict().items()
        return self._replace(**{k: v.to(device) for k, v in items if isinstance(v, torch.Tensor)})


def _check_roles(network: Network, roles: Sequence[str], what: str) -> None:
    present = set(network.roles)
    unknown = [role for role in roles if role not in present]
    if unknown:
        raise ValueError(
            f"{what} roles {unknown} are not roles of the {network.config.connectome} connectome; "
            f"valid roles: {sorted(present)}"
        )


def select_projection(
    network: Network,
    weights: torch.Tensor,
    pairs: Sequence[tuple[str, str]] = DEFAULT_PLASTIC_PAIRS,
    excitatory_only: bool = False,
    w_max_mv: float | None = None,
    skip_empty: bool = False,
) -> PlasticProjection:
    """The synapses from regions of role ``pre`` to regions of role ``post`` for each ``(pre, post)`` pair.

    Pairs of distinct roles select long-range synapses (which are all excitatory); a pair ``(r, r)`` also
    selects the local synapses within those regions (excitatory and inhibitory unless
    ``excitatory_only``). ``w_max_mv`` defaults to ``DEFAULT_W_MAX_FACTOR`` × the largest initial weight in
    the selection's synapses of the same sign (excitatory and inhibitory synapses have separate bounds).
    ValueError on an unknown role, a malformed pair, or a pair without synapses (unless ``skip_empty``, which
    drops such pairs, e.g. on very small brains; ValueError if none is left). ``projection.pairs`` lists the
    pairs actually used.
    """
    if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(p, str) for p in pairs):
        pairs = (pairs,)  # a single ("pre", "post") pair
    pairs = tuple(tuple(pair) for pair in pairs)
    if not pairs:
        raise ValueError("pairs must contain at least one (pre_role, post_role) pair")
    chosen, used = [], []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(role, str) for role in pair):
            raise ValueError(f"each pair must be (pre_role, post_role) strings, got {pair!r}")
        _check_roles(network, pair, "plastic-projection")
        ids = network.synapses_between_roles((pair[0],), (pair[1],))
        if excitatory_only:
            ids = ids[network.channel.index_select(0, ids) == EXCITATORY]
        if ids.numel() == 0 and skip_empty:
            continue
        if ids.numel() == 0:
            raise ValueError(
                f"the projection {pair[0]} -> {pair[1]} has no synapses in this network "
                f"({network.config.connectome}, {network.neurons_per_region} neurons per region); "
                "choose another role pair"
            )
        chosen.append(ids)
        used.append(pair)
    if not chosen:
        raise ValueError(f"none of the pairs {list(pairs)} has synapses in this network")
    synapses = torch.unique(torch.cat(chosen))
    return projection_from_synapses(network, weights, synapses, w_max_mv=w_max_mv, pairs=tuple(used))


def projection_from_synapses(
    network: Network,
    weights: torch.Tensor,
    synapses: torch.Tensor,
    w_max_mv: float | None = None,
    pairs: tuple[tuple[str, str], ...] = (),
) -> PlasticProjection:
    """A projection from explicit synapse indices (distinct, into ``weights``).

    Synapses are ordered by (delay descending, presynaptic neuron) so that the delayed-trace gather of
    every step reads memory in increasing order (about 2× faster on a CPU than a random order).
    """
    synapses = torch.as_tensor(synapses, device=network.device).long().reshape(-1)
    if synapses.numel() == 0:
        raise ValueError("a plastic projection needs at least one synapse")
    if weights.shape != (network.n_synapses,):
        raise ValueError(f"weights must have shape ({network.n_synapses},), got {tuple(weights.shape)}")
    if bool((synapses < 0).any()) or bool((synapses >= network.n_synapses).any()):
        raise ValueError(f"synapse indices must lie in [0, {network.n_synapses})")
    if torch.unique(synapses).numel() != synapses.numel():
        raise ValueError("synapse indices must be distinct")
    pre = network.pre.index_select(0, synapses)
    delay = network.delay_steps.index_select(0, synapses)
    order = torch.argsort(pre - delay * network.n_neurons, stable=True)  # delay desc, then pre asc
    synapses, pre, delay = synapses[order], pre[order], delay[order]
    post = network.post.index_select(0, synapses)
    pre_neurons, pre_local = torch.unique(pre, return_inverse=True)
    post_neurons, post_local = torch.unique(post, return_inverse=True)
    is_excitatory = network.channel.index_select(0, synapses) == EXCITATORY
    if w_max_mv is None:
        initial = weights.index_select(0, synapses)
        exc_max = initial[is_excitatory].max() if bool(is_excitatory.any()) else initial.new_zeros(())
        inh_max = initial[~is_excitatory].max() if bool((~is_excitatory).any()) else initial.new_zeros(())
        w_max = DEFAULT_W_MAX_FACTOR * torch.where(is_excitatory, exc_max, inh_max)
        if not bool((w_max > 0).all()):
            raise ValueError("initial weights are all zero; pass w_max_mv explicitly")
    else:
        if not (isinstance(w_max_mv, int | float) and 0 < w_max_mv < float("inf")):
            raise ValueError(f"w_max_mv must be a positive finite number, got {w_max_mv!r}")
        w_max = torch.full((synapses.numel(),), float(w_max_mv), device=network.device)
    return PlasticProjection(
        synapses=synapses,
        pre=pre,
        post=post,
        delay_steps=delay,
        is_excitatory=is_excitatory,
        pre_neurons=pre_neurons,
        post_neurons=post_neurons,
        pre_local=pre_local,
        post_local=post_local,
        w_max=w_max,
        max_delay_steps=int(delay.max()),
        n_neurons=network.n_neurons,
        pairs=pairs,
        by_id=(by_id := torch.argsort(synapses)),
        synapses_by_id=synapses.index_select(0, by_id),
        w_max_by_id=w_max.index_select(0, by_id),
        fingerprint=network.fingerprint,
    )


def check_weights(projection: PlasticProjection, weights: torch.Tensor) -> None:
    """ValueError unless ``weights`` has one entry per synapse of the projection's network and, when it is the
    weights tensor of a brain (see :func:`~encephagen_gym.brain.network.weights_fingerprint`), of that
    network. O(1)."""
    if not isinstance(weights, torch.Tensor) or weights.shape != (projection.fingerprint.n_synapses,):
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        made_for = projection.fingerprint
        raise ValueError(f"weights has shape {shape}, but the projection was made for a network of "
                         f"{made_for.n_synapses} synapses ({made_for.describe()})")  # fmt: skip
    owner = weights_fingerprint(weights)
    if owner is not None and owner is not projection.fingerprint:
        check_same_network(projection.fingerprint, owner, "the weights", "the projection")


def apply_weight_update(
    weights: torch.Tensor, projection: PlasticProjection, delta: torch.Tensor, check_finite: bool = True
) -> torch.Tensor:
    """``w ← clamp(w + Δw, 0, w_max)`` on the projection's synapses, in place; returns ``weights``.

    ``delta`` is ``[P]`` in mV (already averaged over the batch and scaled by the learning rate); ``weights``
    must be the ``[S]`` weights of the projection's network (another brain's weight vector is refused; a
    clone of the right length is accepted, it carries no identity). The
    clamp keeps every weight a non-negative magnitude (Dale's law: the sign stays the presynaptic
    neuron's) and bounded. ``check_finite`` rejects NaN/inf updates (one device→host read; updates happen
    at environment steps, not every simulation step).
    """
    check_weights(projection, weights)
    if delta.shape != (projection.n_synapses,):
        raise ValueError(f"delta must have shape ({projection.n_synapses},), got {tuple(delta.shape)}")
    if check_finite and not bool(torch.isfinite(delta).all()):
        raise ValueError("weight update contains NaN or infinite values (check the learning signals)")
    synapses = projection.synapses_by_id  # read and write the weights in increasing address order
    current = weights.index_select(0, synapses)
    current.add_(delta.index_select(0, projection.by_id).to(current.dtype)).clamp_(min=0.0)
    torch.minimum(current, projection.w_max_by_id, out=current)
    weights.index_copy_(0, synapses, current)
    return weights


def pathway_projection(network: Network, weights: torch.Tensor, w_max_mv: float | None = None) -> PlasticProjection:
    """The synapses of the network's pathways (``BrainConfig.pathways``; ``network.is_pathway``): what the agent
    learns by default. ``w_max_mv`` defaults to 4 × the pathway strength. ValueError if the network has none."""
    synapses = network.is_pathway.nonzero().squeeze(1)
    if synapses.numel() == 0:
        raise ValueError("this network has no pathway synapses (BrainConfig.pathways is empty)")
    pairs = tuple(tuple(pair) for pair in network.config.pathways)
    return projection_from_synapses(network, weights, synapses, w_max_mv=w_max_mv, pairs=pairs)


def incoming_projection(
    network: Network,
    weights: torch.Tensor,
    post_roles: Sequence[str] | str,
    excitatory_only: bool = True,
    w_max_mv: float | None = None,
) -> PlasticProjection:
    """All (by default excitatory) synapses onto the neurons of regions with a role in ``post_roles``, local
    and long-range: the inputs that homeostatic synaptic scaling rescales."""
    post_roles = (post_roles,) if isinstance(post_roles, str) else tuple(post_roles)
    if not post_roles:
        raise ValueError("post_roles must name at least one role")
    _check_roles(network, post_roles, "post")
    regions = torch.as_tensor(network.connectome.regions_with_role(*post_roles), device=network.device)
    mask = torch.isin(network.post_region, regions)
    if excitatory_only:
        mask &= network.channel == EXCITATORY
    synapses = mask.nonzero().squeeze(1)
    if synapses.numel() == 0:
        kind = "excitatory " if excitatory_only else ""
        raise ValueError(f"no {kind}synapses onto roles {list(post_roles)}")
    return projection_from_synapses(network, weights, synapses, w_max_mv=w_max_mv)
