"""Encoders: an environment's observation → input current (mV) into the neurons of matching brain regions.

An observation is a flat vector split into named modalities (``env.unwrapped.observation_layout``: modality
→ slice; an env without one is a single ``"observation"`` modality). Each modality drives the excitatory
neurons of the region roles given by :data:`MODALITY_ROLES`, through one of two codes:

- ``"intensity"`` (values already in [0, 1]: retina pixels, cues, the US, foot contacts): each value is one
  input *pool*; the current into its neurons is ``gain_mv × clip(x, 0, 1)``. An 8×8 image therefore drives
  64 pools, each pixel its own subset of visual excitatory neurons.
- ``"signed"`` (unbounded body variables, commands): each value is standardised by a running mean and
  standard deviation (:class:`RunningStandardiser`, updated while training, frozen otherwise, saved with the
  model), ``z = clip((x − μ)/σ, −z_max, z_max)``, then coded by a population:
  ``"push_pull"`` (default; two pools per value, ``gain_mv × max(±z, 0)/z_max``: one grows with the value,
  the other as it falls) or ``"gaussian"`` (``n_gaussian`` pools per value with preferred values spread
  evenly over [−z_max, z_max] and tuning width equal to their spacing:
  ``gain_mv × exp(−(z − c)²/(2w²))``).

**Which neurons.** The pools that target the same roles share those roles' excitatory neurons. The neurons
are listed in order of (position within the region, region) — so consecutive neurons lie in different
regions — and neuron ``k`` of the list joins pool ``(k + ⌊k/F⌋) mod F`` (F pools): each pass over the pools
is shifted by one, so that the neurons of a pool lie in different regions even when the number of regions
divides F, each region sees a strided sample of the whole image, and pool sizes differ by at most one.
A ValueError is raised when there are fewer neurons than pools (use more ``neurons_per_region``). Neurons
that two modalities share (when their roles overlap) receive the sum of both currents.

**Amplitude.** The current is held for the whole env step. With the default brain (mean background drive
16 mV, threshold 20 mV) a driven neuron fires ≈ 40 Hz at 15 mV (issue 10's probe), so the default
``gain_mv`` of 15 keeps every driven role within 2–80 Hz (tested for every registered env).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from encephagen_gym.brain.network import Network

__all__ = [
    "CODES",
    "GENERIC_MODALITY",
    "MODALITY_CODES",
    "MODALITY_ROLES",
    "SIGNED_CODES",
    "ObservationEncoder",
    "RunningStandardiser",
    "resolve_roles",
]

#: Observation modality → region roles it drives, as alternatives in order of preference: the first group
#: of which at least one role exists in the connectome is used (with the roles of that group that exist).
#: tvb96/tvb76 have every primary group; tvb66 (human DK parcellation) lacks amygdala, thalamus and basal
#: ganglia, so the US falls back to the hippocampus and cues to prefrontal cortex alone.
MODALITY_ROLES: dict[str, tuple[tuple[str, ...], ...]] = {
    "vision": (("visual",),),
    "audition": (("auditory",),),
    "us": (("amygdala",), ("hippocampus",)),
    "cue": (("prefrontal", "thalamus"),),
    "command": (("prefrontal", "thalamus"),),
    "vestibular": (("somatosensory",),),
    "proprioception": (("somatosensory",),),
    "touch": (("somatosensory",),),
    "cpg": (("motor",),),
    "observation": (("visual", "auditory", "somatosensory"),),
}

#: The modality of an env without ``observation_layout``: the whole vector, into the primary sensory regions.
GENERIC_MODALITY = "observation"

CODES = ("intensity", "signed")
SIGNED_CODES = ("push_pull", "gaussian")

#: How each modality's values are coded (see the module docstring).
MODALITY_CODES: dict[str, str] = {
    "vision": "intensity",
    "audition": "intensity",
    "us": "intensity",
    "cue": "intensity",
    "touch": "intensity",
    "command": "signed",
    "vestibular": "signed",
    "proprioception": "signed",
    "cpg": "signed",
    "observation": "signed",
}


def resolve_roles(modality: str, present_roles: Sequence[str], table: Mapping[str, tuple] | None = None) -> tuple:
    """The roles ``modality`` drives in a connectome with ``present_roles`` (see :data:`MODALITY_ROLES`)."""
    table = MODALITY_ROLES if table is None else table
    if modality not in table:
        raise ValueError(
            f"no region roles known for the observation modality {modality!r}; known modalities: "
            f"{sorted(table)} (pass modality_roles={{{modality!r}: ('role', ...)}} to route it)"
        )
    present = set(present_roles)
    for group in table[modality]:
        chosen = tuple(role for role in group if role in present)
        if chosen:
            return chosen
    raise ValueError(f"none of the roles {table[modality]} for the modality {modality!r} exist in this connectome")


class RunningStandardiser(nn.Module):
    """Running mean and variance of ``n`` features (Chan et al.'s parallel update), as buffers.

    :meth:`update` folds in a batch ``[B, n]``; :meth:`standardise` returns ``(x − μ)/σ`` (σ floored at
    ``min_std``). Starts at μ = 0, σ = 1."""

    def __init__(self, n_features: int, min_std: float = 1e-3) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features, dtype=torch.float64))
        self.register_buffer("var", torch.ones(n_features, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.min_std = float(min_std)

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        batch = batch.to(torch.float64)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean.add_(delta * batch_count / total)
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        std = self.var.sqrt().clamp(min=self.min_std).to(x.dtype)
        return (x - self.mean.to(x.dtype)) / std


class ObservationEncoder(nn.Module):
    """Observation ``[B, D]`` → input current ``[B, N]`` (mV) for ``network`` (see the module docstring).

    Args:
        network: the brain's network (roles, neurons, device).
        observation_layout: modality → slice of the observation (``None``: one generic modality of
            ``observation_size`` values).
        observation_size: D, the length of the observation vector.
        gain_mv: current (mV) into a pool's neurons at full intensity / |z| = z_max; a number for every
            modality or a mapping modality → number (missing modalities get 15 mV).
        signed_code: ``"push_pull"`` or ``"gaussian"``; ``n_gaussian`` pools per value for the latter.
        z_max: standardised value at which signed codes saturate.
        modality_roles: overrides of :data:`MODALITY_ROLES` (modality → roles, or alternatives).
        modality_codes: overrides of :data:`MODALITY_CODES`.

    Call :meth:`forward` (``encoder(obs)``) for the current; ``encoder(obs, update_statistics=True)`` first
    updates the running statistics of the signed modalities (while training).
    """

    def __init__(
        self,
        network: Network,
        observation_layout: Mapping[str, slice] | None,
        observation_size: int,
        gain_mv: float | Mapping[str, float] = 15.0,
        signed_code: str = "push_pull",
        n_gaussian: int = 3,
        z_max: float = 2.0,
        modality_roles: Mapping[str, Sequence[str] | tuple[tuple[str, ...], ...]] | None = None,
        modality_codes: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(observation_size, int) or observation_size < 1:
            raise ValueError(f"observation_size must be a positive integer, got {observation_size!r}")
        if signed_code not in SIGNED_CODES:
            raise ValueError(f"signed_code must be one of {SIGNED_CODES}, got {signed_code!r}")
        if not isinstance(n_gaussian, int) or n_gaussian < 2:
            raise ValueError(f"n_gaussian must be an integer >= 2, got {n_gaussian!r}")
        if not (math.isfinite(z_max) and z_max > 0):
            raise ValueError(f"z_max must be a positive number, got {z_max!r}")
        layout = _check_layout(observation_layout, observation_size)
        roles_table = _roles_table(modality_roles)
        codes = {**MODALITY_CODES, **dict(modality_codes or {})}
        bad = {name: code for name, code in codes.items() if code not in CODES}
        if bad:
            raise ValueError(f"modality codes must be one of {CODES}, got {bad}")
        gains = _gains(gain_mv, layout)

        self.layout = dict(layout)
        self.observation_size = observation_size
        self.n_neurons = network.n_neurons
        self.signed_code = signed_code
        self.z_max = float(z_max)
        self.n_gaussian = n_gaussian
        self.roles = {name: resolve_roles(name, network.roles, roles_table) for name in layout}
        self.codes = {name: codes.get(name, "signed") for name in layout}

        # columns of the observation that each code reads, in pool order
        intensity_cols = [c for name, s in layout.items() if self.codes[name] == "intensity" for c in _cols(s)]
        signed_cols = [c for name, s in layout.items() if self.codes[name] == "signed" for c in _cols(s)]
        self.register_buffer("intensity_columns", torch.as_tensor(intensity_cols, dtype=torch.int64))
        self.register_buffer("signed_columns", torch.as_tensor(signed_cols, dtype=torch.int64))
        self.standardiser = RunningStandardiser(len(signed_cols))
        per_value = 2 if signed_code == "push_pull" else n_gaussian
        centres = torch.linspace(-self.z_max, self.z_max, n_gaussian)
        self.register_buffer("gaussian_centres", centres)
        self.gaussian_width = float(centres[1] - centres[0])

        # pool index of every coded feature: intensity pools first, then signed pools (value-major)
        pools_of: dict[str, list[int]] = {}
        next_intensity, next_signed = 0, len(intensity_cols)
        for name, s in layout.items():
            n_values = len(_cols(s))
            if self.codes[name] == "intensity":
                pools_of[name] = list(range(next_intensity, next_intensity + n_values))
                next_intensity += n_values
            else:
                pools_of[name] = list(range(next_signed, next_signed + n_values * per_value))
                next_signed += n_values * per_value
        self.n_pools = next_signed

        targets, pools, pool_gain = [], [], []
        by_roles: dict[tuple[str, ...], list[str]] = {}
        for name in layout:
            by_roles.setdefault(self.roles[name], []).append(name)
        self.pool_sizes: dict[str, int] = {}
        for roles, names in by_roles.items():
            neurons = network.neurons_with_role(*roles, excitatory_only=True).cpu().numpy()
            n_regions = len(neurons) // network.n_exc
            strided = neurons.reshape(n_regions, network.n_exc).T.reshape(-1)  # (position, region) order
            group_pools = [p for name in names for p in pools_of[name]]
            group_gain = [gains[name] for name in names for _ in pools_of[name]]
            if len(strided) < len(group_pools):
                raise ValueError(
                    f"the modalities {names} need {len(group_pools)} input pools but the {list(roles)} regions "
                    f"have only {len(strided)} excitatory neurons (neurons_per_region={network.neurons_per_region}); "
                    "use a larger brain or signed_code='push_pull'"
                )
            position = np.arange(len(strided))
            assignment = (position + position // len(group_pools)) % len(group_pools)
            targets.append(strided)
            pools.append(np.asarray(group_pools)[assignment])
            pool_gain.append(np.asarray(group_gain, dtype=np.float32)[assignment])
            for name in names:
                self.pool_sizes[name] = len(strided) // len(group_pools)
        device = network.device
        self.register_buffer("target_neurons", torch.as_tensor(np.concatenate(targets), device=device))
        self.register_buffer("target_pool", torch.as_tensor(np.concatenate(pools), device=device))
        self.register_buffer("target_gain", torch.as_tensor(np.concatenate(pool_gain), device=device))
        self.to(device)

    @property
    def driven_roles(self) -> tuple[str, ...]:
        """Every role some modality drives."""
        return tuple(sorted({role for roles in self.roles.values() for role in roles}))

    def code(self, observation: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` pool activities in [0, 1] for observations ``[B, D]`` (no statistics update)."""
        parts = []
        if self.intensity_columns.numel():
            parts.append(observation.index_select(1, self.intensity_columns).clamp(0.0, 1.0))
        if self.signed_columns.numel():
            z = self.standardiser.standardise(observation.index_select(1, self.signed_columns))
            z = z.clamp(-self.z_max, self.z_max)
            if self.signed_code == "push_pull":
                coded = torch.stack([z.clamp(min=0.0), (-z).clamp(min=0.0)], dim=2) / self.z_max
            else:
                offset = z[:, :, None] - self.gaussian_centres
                coded = torch.exp(-0.5 * (offset / self.gaussian_width).square())
            parts.append(coded.reshape(observation.shape[0], -1))
        return torch.cat(parts, dim=1)

    def forward(
        self,
        observation: torch.Tensor,
        update_statistics: bool = False,
        out: torch.Tensor | None = None,
        check_finite: bool = True,
    ) -> torch.Tensor:
        """Input current ``[B, N]`` (mV) for observations ``[B, D]``. ``update_statistics`` first folds the
        batch into the running mean/std of the signed modalities (do it while training). ``out``: a ``[B, N]``
        tensor to write into. ``check_finite`` rejects NaN/inf (one device→host read: callers that checked
        the observation on the host pass False)."""
        if observation.dim() != 2 or observation.shape[1] != self.observation_size:
            raise ValueError(f"observation must have shape [B, {self.observation_size}], got {list(observation.shape)}")
        observation = observation.to(device=self.target_neurons.device, dtype=torch.float32)
        if check_finite and not bool(torch.isfinite(observation).all()):
            raise ValueError("observation contains NaN or infinite values")
        if update_statistics and self.signed_columns.numel():
            self.standardiser.update(observation.index_select(1, self.signed_columns))
        coded = self.code(observation)
        drive = coded.index_select(1, self.target_pool).mul_(self.target_gain)
        if out is None:
            out = torch.zeros((observation.shape[0], self.n_neurons), device=observation.device)
        else:
            out.zero_()
        return out.index_add_(1, self.target_neurons, drive)

    def extra_repr(self) -> str:
        routes = ", ".join(f"{name}→{'+'.join(self.roles[name])} ({self.codes[name]})" for name in self.layout)
        return f"{routes}; {self.n_pools} pools"


def _cols(s: slice) -> list[int]:
    return list(range(s.start, s.stop))


def _check_layout(layout: Mapping[str, slice] | None, size: int) -> dict[str, slice]:
    if layout is None:
        return {GENERIC_MODALITY: slice(0, size)}
    checked: dict[str, slice] = {}
    covered = np.zeros(size, dtype=int)
    for name, s in dict(layout).items():
        if not isinstance(s, slice) or s.step not in (None, 1) or s.start is None or not 0 <= s.start < s.stop <= size:
            raise ValueError(f"observation_layout[{name!r}] must be a slice inside [0, {size}), got {s!r}")
        checked[name] = slice(s.start, s.stop)
        covered[s.start : s.stop] += 1
    if (covered != 1).any():
        raise ValueError(f"observation_layout must tile the {size} observation values exactly once, got {layout}")
    return checked


def _roles_table(overrides: Mapping | None) -> dict[str, tuple[tuple[str, ...], ...]]:
    table = dict(MODALITY_ROLES)
    for name, roles in dict(overrides or {}).items():
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        if not roles:
            raise ValueError(f"modality_roles[{name!r}] must name at least one role")
        table[name] = (roles,) if all(isinstance(r, str) for r in roles) else tuple(tuple(g) for g in roles)
    return table


def _gains(gain_mv: float | Mapping[str, float], layout: Mapping[str, slice]) -> dict[str, float]:
    default = 15.0
    if isinstance(gain_mv, Mapping):
        unknown = sorted(set(gain_mv) - set(layout))
        if unknown:
            raise ValueError(f"gain_mv names modalities {unknown} that the observation does not have: {sorted(layout)}")
        gains = {name: float(gain_mv.get(name, default)) for name in layout}
    else:
        gains = dict.fromkeys(layout, float(gain_mv))
    for name, value in gains.items():
        if not (math.isfinite(value) and 0.0 <= value <= 100.0):
            raise ValueError(f"gain_mv for {name!r} must lie in [0, 100] mV, got {value!r}")
    return gains
