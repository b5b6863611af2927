"""Region-level connectomes from the ``tvb-data`` package, their region roles, and null models.

Three parcellations ship with ``tvb-data`` (GPL-3; read from the installed package, never copied here):

``tvb96`` (default)
    96 regions (48 per hemisphere) of the macaque-derived **Regional Map** parcellation (Kötter & Wanke 2005)
    with thalamic (``TM-*``) and basal-ganglia (``BG-*``) nuclei. Weights are **ordinal CoCoMac-style
    strengths in {0, 1, 2, 3}** (42.7 % of the 96×96 entries non-zero, directed, asymmetric, with non-zero
    diagonal entries for intrinsic connections). Tract lengths in mm for every pair. This is *not* human
    tractography, whatever older descriptions said: the labels (``RM-*``, ``TM-*``, ``BG-*``, ``MM82a-G``) and
    the ordinal weights identify it.
``tvb76``
    76 regions (38 per hemisphere) with Regional Map names in a compact spelling (``rA1``, ``lPFCORB`` …),
    without thalamus and basal ganglia, orbital PFC merged (``PFCORB``) and an unconnected placeholder
    ``CC`` (zero weights, zero area). Weights lie in [0, 3]; 97.8 % of the non-zero ones are the integers
    1–3 (ordinal, CoCoMac-style), the rest are fractional; 27 % non-zero, directed, almost no
    inter-hemispheric entries.
``tvb66``
    66 cortical regions (33 per hemisphere) with **Desikan–Killiany-style** names (``rPREC``, ``lSF`` …;
    no insula, no subcortical regions) from **human diffusion MRI**. Weights are continuous in [0, 0.51]
    and symmetric to 6e-5 relative (an undirected tractography graph); tract lengths are given only for
    connected pairs. The zip has no ``cortical.txt``; all 66 regions are cortical parcels.

Orientation convention
----------------------
``Connectome.weights[i, j]`` is the strength of the projection **from region i (source) to region j
(target)**: rows are sources, columns are targets. This is how the tvb96 file is stored, verified on the
data by anatomy that is strictly one-way: the striatum (``BG-Pu``, ``BG-Cd``, ``BG-Acc``) has ~30 non-zero
entries in its *column* (cortical inputs) and exactly one in its *row* (``BG-Pa``, the pallidum), and the
pallidum's row holds only ``TM-F`` (pallidum → thalamus). Note that TVB's own simulator reads its weight
matrix the other way round (``weights[target, source]``, see TVB's ``coupling.py``), so TVB effectively
simulates the transpose of this file. We keep the file's orientation for tvb96 and tvb76 (same Regional Map
origin; tvb76 has no one-way nucleus to verify it on) and tvb66 is symmetric, so its orientation is moot.
``tract_lengths_mm`` uses the same ``[source, target]`` indexing (it is symmetric in all three files).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import io
import re
import zipfile

import numpy as np

__all__ = [
    "CONNECTOME_NAMES",
    "NULL_MODELS",
    "ROLE_TABLES",
    "Connectome",
    "check_connectome_name",
    "density_matched_random",
    "load_connectome",
    "region_roles",
    "rewire_degree_preserving",
    "valid_connectome_names",
]

CONNECTOME_NAMES: tuple[str, ...] = ("tvb96", "tvb76", "tvb66")
NULL_MODELS: tuple[str, ...] = ("rewired", "random")

_ZIP_FILES = {"tvb96": "connectivity_96.zip", "tvb76": "connectivity_76.zip", "tvb66": "connectivity_66.zip"}

_PROVENANCE = {
    "tvb96": (
        "tvb-data connectivity_96.zip: macaque-derived Regional Map parcellation (Kötter & Wanke 2005) with "
        "thalamic and basal-ganglia nuclei, 96 regions; ordinal CoCoMac-style weights in {0,1,2,3}; tract "
        "lengths in mm. Orientation weights[source, target] (verified on striatum/pallidum one-way "
        "projections). Data licence GPL-3 (tvb-data), read from the installed package."
    ),
    "tvb76": (
        "tvb-data connectivity_76.zip: Regional Map region names (38 per hemisphere, no thalamus/basal "
        "ganglia, unconnected placeholder CC); weights in [0,3], mostly ordinal integers; tract lengths "
        "in mm. Orientation weights[source, target] assumed as for tvb96. Data licence GPL-3 (tvb-data)."
    ),
    "tvb66": (
        "tvb-data connectivity_66.zip: human diffusion-MRI connectivity, 66 Desikan-Killiany-style cortical "
        "regions; continuous symmetric weights; tract lengths in mm for connected pairs. Data licence GPL-3 "
        "(tvb-data)."
    ),
}

# --------------------------------------------------------------------------------------------------------
# Role tables: exact labels without hemisphere marker -> role. Every label of a parcellation has one role.
# --------------------------------------------------------------------------------------------------------

# tvb96 / Regional Map. Decisions: RM-PMCvl/PMCm/PMCdl are premotor cortex (ventrolateral, medial = SMA,
# dorsolateral), not primary motor, so they get "premotor"; M1 alone is "motor". RM-FEF (area 8) is grouped
# with prefrontal, as the original project did. RM-PFCcl (centrolateral PFC) is prefrontal, not cingulate.
# RM-PHC (parahippocampal cortex) joins RM-HC in "hippocampus" (the medial-temporal memory system).
# RM-IA / RM-Ip are the anterior / posterior insula. MM82a-G is gustatory cortex.
_RM96_ROLES: dict[str, str] = {
    "RM-V1": "visual", "RM-V2": "visual", "RM-VACd": "visual", "RM-VACv": "visual",
    "RM-A1": "auditory", "RM-A2": "auditory",
    "RM-S1": "somatosensory", "RM-S2": "somatosensory",
    "RM-M1": "motor",
    "RM-PMCvl": "premotor", "RM-PMCm": "premotor", "RM-PMCdl": "premotor",
    "RM-PFCoi": "prefrontal", "RM-PFCom": "prefrontal", "RM-PFCol": "prefrontal", "RM-PFCpol": "prefrontal",
    "RM-PFCvl": "prefrontal", "RM-PFCm": "prefrontal", "RM-PFCcl": "prefrontal", "RM-PFCdm": "prefrontal",
    "RM-PFCdl": "prefrontal", "RM-FEF": "prefrontal",
    "RM-TCpol": "temporal", "RM-TCs": "temporal", "RM-TCc": "temporal", "RM-TCi": "temporal",
    "RM-TCv": "temporal",
    "RM-PCi": "parietal", "RM-PCm": "parietal", "RM-PCip": "parietal", "RM-PCs": "parietal",
    "RM-CCs": "cingulate", "RM-CCr": "cingulate", "RM-CCp": "cingulate", "RM-CCa": "cingulate",
    "RM-IA": "insula", "RM-Ip": "insula",
    "RM-HC": "hippocampus", "RM-PHC": "hippocampus",
    "RM-Amyg": "amygdala",
    "MM82a-G": "gustatory",
    "BG-Cd": "basal_ganglia", "BG-Pu": "basal_ganglia", "BG-Pa": "basal_ganglia", "BG-Acc": "basal_ganglia",
    "TM-F": "thalamus", "TM-T": "thalamus", "TM-OP": "thalamus",
}  # fmt: skip

# tvb76: same areas, compact names; CC is an unconnected placeholder (zero weights, zero area) -> "other".
_RM76_ROLES: dict[str, str] = {
    "V1": "visual", "V2": "visual",
    "A1": "auditory", "A2": "auditory",
    "S1": "somatosensory", "S2": "somatosensory",
    "M1": "motor",
    "PMCVL": "premotor", "PMCM": "premotor", "PMCDL": "premotor",
    "PFCORB": "prefrontal", "PFCPOL": "prefrontal", "PFCVL": "prefrontal", "PFCM": "prefrontal",
    "PFCCL": "prefrontal", "PFCDM": "prefrontal", "PFCDL": "prefrontal", "FEF": "prefrontal",
    "TCPOL": "temporal", "TCS": "temporal", "TCC": "temporal", "TCI": "temporal", "TCV": "temporal",
    "PCI": "parietal", "PCM": "parietal", "PCIP": "parietal", "PCS": "parietal",
    "CCS": "cingulate", "CCR": "cingulate", "CCP": "cingulate", "CCA": "cingulate",
    "IA": "insula", "IP": "insula",
    "HC": "hippocampus", "PHC": "hippocampus",
    "AMYG": "amygdala",
    "G": "gustatory",
    "CC": "other",
}  # fmt: skip

# tvb66 / Desikan-Killiany. Decisions: PREC (precentral) and PARC (paracentral lobule: leg M1/S1) are
# "motor"; CMF (caudal middle frontal, mostly dorsal premotor BA 6 with the FEF) is "premotor"; the
# inferior-frontal pars (POPE, PTRI, PORB), orbitofrontal (LOF, MOF), RMF, SF and frontal pole are
# "prefrontal"; TT (transverse temporal = Heschl's gyrus) is "auditory" while ST (superior temporal gyrus)
# is "temporal"; ENT and PARH (entorhinal, parahippocampal) form "hippocampus" as in tvb96.
_DK66_ROLES: dict[str, str] = {
    "PCAL": "visual", "CUN": "visual", "LING": "visual", "LOCC": "visual",
    "TT": "auditory",
    "PSTC": "somatosensory",
    "PREC": "motor", "PARC": "motor",
    "CMF": "premotor",
    "FP": "prefrontal", "LOF": "prefrontal", "MOF": "prefrontal", "POPE": "prefrontal", "PORB": "prefrontal",
    "PTRI": "prefrontal", "RMF": "prefrontal", "SF": "prefrontal",
    "BSTS": "temporal", "FUS": "temporal", "IT": "temporal", "MT": "temporal", "ST": "temporal",
    "TP": "temporal",
    "IP": "parietal", "PCUN": "parietal", "SP": "parietal", "SMAR": "parietal",
    "CAC": "cingulate", "ISTC": "cingulate", "PC": "cingulate", "RAC": "cingulate",
    "ENT": "hippocampus", "PARH": "hippocampus",
}  # fmt: skip

ROLE_TABLES: dict[str, dict[str, str]] = {"tvb96": _RM96_ROLES, "tvb76": _RM76_ROLES, "tvb66": _DK66_ROLES}


def _split_hemisphere(parcellation: str, label: str) -> tuple[str, str]:
    """Return (label without hemisphere marker, "R" or "L")."""
    if parcellation == "tvb96":
        base, _, side = label.rpartition("_")
        return base, side
    return label[1:], label[0].upper()


@dataclasses.dataclass(frozen=True, eq=False)
class Connectome:
    """A directed region-level connectome (immutable; arrays are read-only).

    Attributes:
        name: the name it was loaded by (e.g. ``"tvb96"`` or ``"tvb96:rewired:3"``).
        labels: region labels, length R, in file order.
        weights: ``[R, R]`` float64, ``weights[source, target]`` (row = source, column = target), in the
            data's arbitrary units (ordinal 0–3 for tvb96).
        tract_lengths_mm: ``[R, R]`` float64 tract lengths in mm, ``[source, target]``; 0 where the data
            give none (tvb66 unconnected pairs, diagonal).
        centres_mm: ``[R, 3]`` region centre coordinates in mm (each file's own frame).
        cortical: ``[R]`` bool, True for cortical regions.
        hemisphere: ``[R]`` str, ``"R"`` or ``"L"``.
        roles: ``[R]`` str, the functional role of each region from the exact-label table.
        provenance: where the data came from and what they are.
    """

    name: str
    labels: tuple[str, ...]
    weights: np.ndarray
    tract_lengths_mm: np.ndarray
    centres_mm: np.ndarray
    cortical: np.ndarray
    hemisphere: np.ndarray
    roles: tuple[str, ...]
    provenance: str

    @property
    def n_regions(self) -> int:
        """Number of regions R."""
        return len(self.labels)

    @property
    def base_name(self) -> str:
        """The parcellation this connectome comes from (``"tvb96"`` for ``"tvb96:rewired:3"``)."""
        return self.name.split(":")[0]

    def adjacency(self, include_self: bool = False) -> np.ndarray:
        """``[R, R]`` bool, True where ``weights[source, target] > 0`` (diagonal dropped unless asked)."""
        adj = self.weights > 0
        if not include_self:
            adj = adj & ~np.eye(self.n_regions, dtype=bool)
        return adj

    def out_degree(self) -> np.ndarray:
        """Number of targets of each region (self-connection excluded)."""
        return self.adjacency().sum(axis=1)

    def in_degree(self) -> np.ndarray:
        """Number of sources of each region (self-connection excluded)."""
        return self.adjacency().sum(axis=0)

    def regions_with_role(self, *roles: str) -> np.ndarray:
        """Indices of the regions whose role is one of ``roles``; ValueError for a role not present."""
        present = set(self.roles)
        unknown = [r for r in roles if r not in present]
        if unknown:
            raise ValueError(f"roles {unknown} not in {self.base_name}; valid roles: {sorted(present)}")
        return np.array([i for i, r in enumerate(self.roles) if r in roles], dtype=np.int64)

    def index(self, label: str) -> int:
        """Index of a region label (exact match)."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"no region labelled {label!r} in {self.name}") from None

    def euclidean_distances_mm(self) -> np.ndarray:
        """``[R, R]`` Euclidean distances between region centres, in mm."""
        diff = self.centres_mm[:, None, :] - self.centres_mm[None, :, :]
        return np.sqrt((diff**2).sum(-1))


def region_roles(parcellation: str, labels: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Roles of ``labels`` of ``parcellation`` from the exact-label table (KeyError on an unknown label)."""
    table = ROLE_TABLES[parcellation]
    return tuple(table[_split_hemisphere(parcellation, label)[0]] for label in labels)


def _read_matrix(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    return np.loadtxt(io.BytesIO(archive.read(member)), dtype=np.float64)


@functools.lru_cache(maxsize=8)
def _load_base(parcellation: str) -> Connectome:
    resource = importlib.resources.files("tvb_data.connectivity").joinpath(_ZIP_FILES[parcellation])
    with resource.open("rb") as handle, zipfile.ZipFile(handle) as archive:
        members = set(archive.namelist())
        weights = _read_matrix(archive, "weights.txt")
        tract_lengths = _read_matrix(archive, "tract_lengths.txt")
        rows = [line.split() for line in archive.read("centres.txt").decode().splitlines() if line.strip()]
        labels = tuple(row[0] for row in rows)
        centres = np.array([[float(v) for v in row[1:4]] for row in rows], dtype=np.float64)
        if "cortical.txt" in members:
            cortical = _read_matrix(archive, "cortical.txt").astype(bool).ravel()
        else:  # tvb66: Desikan cortical parcels only
            cortical = np.ones(len(labels), dtype=bool)
    n = len(labels)
    if weights.shape != (n, n) or tract_lengths.shape != (n, n) or cortical.shape != (n,):
        raise RuntimeError(f"inconsistent shapes in tvb-data {_ZIP_FILES[parcellation]}")
    hemisphere = np.array([_split_hemisphere(parcellation, label)[1] for label in labels])
    return _freeze(
        Connectome(
            name=parcellation,
            labels=labels,
            weights=weights,
            tract_lengths_mm=tract_lengths,
            centres_mm=centres,
            cortical=cortical,
            hemisphere=hemisphere,
            roles=region_roles(parcellation, labels),
            provenance=_PROVENANCE[parcellation],
        )
    )


def _freeze(connectome: Connectome) -> Connectome:
    for field in ("weights", "tract_lengths_mm", "centres_mm", "cortical", "hemisphere"):
        getattr(connectome, field).setflags(write=False)
    return connectome


def _edge_tract_lengths(base: Connectome, adjacency: np.ndarray) -> np.ndarray:
    """Tract lengths for a new edge set: the data's length where it has one, else the centre distance."""
    lengths = np.where(base.tract_lengths_mm > 0, base.tract_lengths_mm, base.euclidean_distances_mm())
    out = np.where(adjacency, lengths, base.tract_lengths_mm)
    np.fill_diagonal(out, np.diag(base.tract_lengths_mm))
    return out


def rewire_degree_preserving(base: Connectome, seed: int, swaps_per_edge: int = 10) -> Connectome:
    """Directed degree-preserving null model (Maslov–Sneppen edge swaps) from an explicit ``seed``.

    Off-diagonal edges ``a→b, c→d`` are swapped to ``a→d, c→b`` when that creates neither a self-loop nor a
    duplicate edge, ``swaps_per_edge × E`` times (E = off-diagonal edge count). Every region keeps its exact
    out-degree and in-degree. Weights travel with the source end of the edge (``a→b`` with weight w becomes
    ``a→d`` with weight w), so each region's out-strength and the weight distribution are preserved too,
    in-strength is not. The diagonal (intrinsic) entries are kept as they are. Tract lengths: the data's
    length of the new pair where the data have one, else the Euclidean distance between centres.
    """
    rng = np.random.default_rng(seed)
    n = base.n_regions
    off_diag = base.adjacency()
    src, dst = np.nonzero(off_diag)
    weight = base.weights[src, dst].copy()
    exists = off_diag.copy()
    n_edges = len(src)
    for _ in range(swaps_per_edge * n_edges):
        e1, e2 = rng.integers(n_edges, size=2)
        a, b, c, d = src[e1], dst[e1], src[e2], dst[e2]
        if a == d or c == b or exists[a, d] or exists[c, b]:
            continue
        exists[a, b] = exists[c, d] = False
        exists[a, d] = exists[c, b] = True
        dst[e1], dst[e2] = d, b
    weights = np.zeros((n, n))
    weights[src, dst] = weight
    np.fill_diagonal(weights, np.diag(base.weights))
    return _derived(base, f"{base.name}:rewired:{seed}", weights, "directed degree-preserving rewiring", seed)


def density_matched_random(base: Connectome, seed: int) -> Connectome:
    """Directed random graph with exactly the off-diagonal edge count of ``base``, from an explicit ``seed``.

    Edge positions are drawn uniformly without replacement among the off-diagonal pairs; the original
    off-diagonal non-zero weights are shuffled onto them (weight distribution preserved, degrees not). The
    diagonal is kept. Tract lengths as in :func:`rewire_degree_preserving`.
    """
    rng = np.random.default_rng(seed)
    n = base.n_regions
    off_diag = base.adjacency()
    candidates = np.flatnonzero(~np.eye(n, dtype=bool))
    chosen = rng.choice(candidates, size=int(off_diag.sum()), replace=False)
    weights = np.zeros(n * n)
    weights[chosen] = rng.permutation(base.weights[off_diag])
    weights = weights.reshape(n, n)
    np.fill_diagonal(weights, np.diag(base.weights))
    return _derived(base, f"{base.name}:random:{seed}", weights, "density-matched random graph", seed)


def _derived(base: Connectome, name: str, weights: np.ndarray, what: str, seed: int) -> Connectome:
    adjacency = (weights > 0) & ~np.eye(base.n_regions, dtype=bool)
    return _freeze(
        dataclasses.replace(
            base,
            name=name,
            weights=weights,
            tract_lengths_mm=_edge_tract_lengths(base, adjacency),
            centres_mm=base.centres_mm.copy(),
            cortical=base.cortical.copy(),
            hemisphere=base.hemisphere.copy(),
            provenance=f"NULL MODEL ({what}, seed {seed}) of {base.name}. {base.provenance}",
        )
    )


def valid_connectome_names() -> str:
    """Human-readable list of the accepted connectome names."""
    return (
        f"{', '.join(CONNECTOME_NAMES)}, or '<name>:rewired:<seed>' / '<name>:random:<seed>' "
        "(seed a non-negative integer), e.g. 'tvb96:rewired:3'"
    )


_NAME_PATTERN = re.compile(r"^(?P<base>[a-z0-9]+)(?::(?P<model>[a-z]+):(?P<seed>\d+))?$")


def check_connectome_name(name: str) -> None:
    """Raise ValueError (listing the valid names) unless ``name`` is a loadable connectome name."""
    match = _NAME_PATTERN.match(name) if isinstance(name, str) else None
    if (
        match is None
        or match["base"] not in CONNECTOME_NAMES
        or (match["model"] is not None and match["model"] not in NULL_MODELS)
    ):
        raise ValueError(f"unknown connectome {name!r}; valid: {valid_connectome_names()}")


def load_connectome(name: str = "tvb96") -> Connectome:
    """Load a connectome by name: ``"tvb96"``, ``"tvb76"``, ``"tvb66"``, or a null model of one of them,
    ``"tvb96:rewired:3"`` (directed degree-preserving) / ``"tvb96:random:3"`` (density-matched random).

    Raises ValueError listing the valid names for anything else.
    """
    check_connectome_name(name)
    return _load_named(name)


@functools.lru_cache(maxsize=32)
def _load_named(name: str) -> Connectome:
    match = _NAME_PATTERN.match(name)
    assert match is not None
    base = _load_base(match["base"])
    if match["model"] is None:
        return base
    seed = int(match["seed"])
    if match["model"] == "rewired":
        return rewire_degree_preserving(base, seed)
    return density_matched_random(base, seed)
