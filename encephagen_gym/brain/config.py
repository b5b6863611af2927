"""The brain's configuration record: every number that defines a network, with units and checks."""

from __future__ import annotations

import dataclasses
import math

import torch

from encephagen_gym.connectome import ROLE_TABLES, check_connectome_name

__all__ = [
    "BACKENDS",
    "DEFAULT_DT_MS",
    "DT_RANGE_MS",
    "BrainConfig",
    "resolve_backend",
    "resolve_device",
    "substeps_per_env_step",
]

#: Simulator backends: ``"auto"`` picks ``"numba"`` on CPU (when numba imports) and ``"torch"`` elsewhere.
BACKENDS = ("auto", "torch", "numba")

#: Range of the integration step in ms (exact integration is accurate to 1 ms; below 0.1 ms the delay lines
#: and noise bank grow without a gain in accuracy).
DT_RANGE_MS = (0.1, 1.0)

#: Default integration step in ms, chosen by measurement (``encephagen-benchmark-brain --dt-check --seeds 0 1 2
#: 3 4``): with exact integration the spontaneous rates of the 96×200 brain at 0.25, 0.5 and 1 ms differ from
#: dt = 0.1 ms by −0.16 ± 0.65 %, −0.34 ± 0.33 % and −1.00 ± 0.77 % (mean ± 95 % t-interval over 5 wiring and
#: noise seeds, 2 s each), and visually evoked rates by less than 3 %.
DEFAULT_DT_MS = 1.0


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; otherwise ``torch.device(device)`` (ValueError if bad)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return resolved


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` → ``"numba"`` on CPU when numba can be imported, else ``"torch"``; ValueError for numba off
    the CPU or without numba installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return backend
    if device.type != "cpu":
        if backend == "numba":
            raise ValueError(f"backend 'numba' runs on the CPU only, the network is on {device}; use 'torch'")
        return "torch"
    try:
        import numba  # noqa: F401
    except ImportError as err:
        if backend == "numba":
            raise ValueError("backend 'numba' needs the numba package (pip install numba)") from err
        return "torch"
    return "numba"


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-6 * max(1.0, ratio)


def substeps_per_env_step(env_dt_ms: float, brain_dt_ms: float) -> int:
    """Number of brain steps per environment step; ValueError unless ``env_dt_ms`` is a whole multiple."""
    if not (math.isfinite(env_dt_ms) and env_dt_ms > 0):
        raise ValueError(f"env dt must be a positive number of ms, got {env_dt_ms!r}")
    if not _is_multiple(env_dt_ms, brain_dt_ms) or round(env_dt_ms / brain_dt_ms) < 1:
        raise ValueError(
            f"env dt {env_dt_ms} ms is not a whole multiple of the brain dt {brain_dt_ms} ms; "
            "choose a brain dt that divides the env step (e.g. 0.1, 0.25, 0.5 or 1 ms)"
        )
    return round(env_dt_ms / brain_dt_ms)


@dataclasses.dataclass(frozen=True)
class BrainConfig:
    """Everything that defines a spiking brain. Same config (incl. ``seed``) → the identical network.

    Units: times in ms, voltages and synaptic strengths in mV (a strength J is the charge of one
    postsynaptic current expressed as the voltage jump it would cause through a delta synapse; for
    τ_syn ≪ τ_m the PSP peak is close to J), rates in Hz, lengths in mm, velocity in mm/ms (= m/s).

    Network: each region has ``neurons_per_region`` LIF neurons, the first ``excitatory_fraction`` of them
    excitatory (Dale's law: all outgoing synapses of a neuron share its sign). Local synapses connect any
    two distinct neurons of the same region with probability ``local_connection_prob``; strength
    ``j_exc_mv`` from excitatory and ``inhibition_ratio × j_exc_mv`` (inhibitory) from inhibitory neurons.
    Long-range synapses run only from excitatory neurons of region s to any neuron of region t ≠ s, with
    probability ``long_range_connection_prob × w_norm`` and strength ``global_coupling × j_exc_mv × w_norm``
    (``× feedforward_inhibition`` onto inhibitory targets), where ``w_norm = w[s, t] / max(w)`` over the
    off-diagonal entries.
    Long-range delays are ``tract_length / conduction_velocity`` (the centre distance where the data have no
    tract length), local delays ``local_delay_ms``; all rounded to whole steps of ``dt_ms`` (at least one).

    Synapses are current-based exponentials: AMPA (``tau_ampa_ms``) from excitatory, GABA (``tau_gaba_ms``)
    from inhibitory neurons. Onto neurons of the regions whose role is in ``nmda_roles``, a fraction
    ``nmda_ratio / (1 + nmda_ratio)`` of every excitatory synapse's charge is carried by a slow NMDA-like
    current (``tau_nmda_ms``) instead of AMPA (``nmda_ratio`` = NMDA:AMPA charge ratio), so NMDA changes the
    time course of excitation there, not its total charge. ``nmda_ratio=0`` switches it off.

    Adaptive neurons (ALIF, Bellec et al. 2018/2020): in the regions whose role is in ``alif_roles``, a share
    ``alif_fraction`` of the excitatory neurons (the same number in every such region, chosen from ``seed``
    on a random stream of their own, so switching ALIF on leaves the wiring unchanged) have a
    spike-triggered adaptive threshold θ_j(t) = θ + β a_j(t): the dimensionless adaptation a_j ≥ 0 jumps by 1
    at each spike of j and decays with ``tau_adaptation_ms``; β = ``adaptation_mv``, so each spike raises the
    threshold by β mV (see :mod:`~encephagen_gym.brain.simulator` for the exact discrete form). Off by
    default (``alif_roles=()``); ``adaptation_mv=0`` also switches it off.

    Background: every neuron receives independent Poisson excitation through AMPA synapses of strength
    ``background_j_mv`` at rate ``background_eta × θ / (background_j_mv × τ_m)``, i.e. a mean drive of
    ``background_eta × θ`` (Brunel 2000's η = ν_ext/ν_thr with ν_thr = θ/(J C_ext τ_m), here written per
    neuron as C_ext ν_ext) and voltage fluctuations of about ``sqrt(background_j_mv × mean / 2)``.

    Pathways (off by default): ``pathways`` lists ``(source_role, target_role)`` pairs. Every excitatory neuron of
    every region t of a listed target role receives ``pathway_in_degree`` more excitatory synapses of strength
    ``pathway_j_mv`` in all, from excitatory neurons of the regions s ≠ t of the source roles paired with that
    target role that project to t in the connectome, s drawn with probability ∝ w[s, t] (a target region no such
    region reaches gets none), delays as for long-range synapses. Their number per neuron does not depend on
    ``neurons_per_region``, so a small brain has the same pathway capacity as the full one; they follow the
    connectome's edges, so a null model changes them as it changes everything else. They are what a learning rule
    can strengthen to carry information from where it enters to where decisions are read (issue 10); the plain brain
    has none. ``pathway_inhibition`` f > 0 adds feedforward inhibition: every inhibitory neuron of a target region
    receives ``pathway_in_degree`` synapses of strength ``f × pathway_j_mv`` from the same sources (fixed; not
    pathway synapses), so that strong pathways excite the targets' interneurons too (default 0: none; measured in
    :mod:`~encephagen_gym.brain.routing`).

    Simulation: ``device`` (``"auto"``: CUDA when available) and ``backend``: ``"torch"`` (tensor ops, any
    device), ``"numba"`` (a compiled fused CPU step with presynaptic spike queues, several times faster on
    CPU; see :mod:`~encephagen_gym.brain.cpu_kernel`) or ``"auto"`` (numba on CPU, torch on CUDA). Both
    integrate the same model with the same noise; they agree to float32 rounding.
    """

    connectome: str = "tvb96"
    neurons_per_region: int = 200
    excitatory_fraction: float = 0.8
    local_connection_prob: float = 0.1
    long_range_connection_prob: float = 0.02
    global_coupling: float = 0.2
    j_exc_mv: float = 1.0
    inhibition_ratio: float = 8.0
    feedforward_inhibition: float = 2.0
    tau_m_ms: float = 20.0
    v_threshold_mv: float = 20.0
    v_reset_mv: float = 0.0
    v_rest_mv: float = 0.0
    refractory_ms: float = 2.0
    tau_ampa_ms: float = 5.0
    tau_gaba_ms: float = 8.0
    tau_nmda_ms: float = 100.0
    nmda_roles: tuple[str, ...] = ("prefrontal",)
    nmda_ratio: float = 1.0
    background_eta: float = 0.8
    background_j_mv: float = 3.0
    conduction_velocity_mm_per_ms: float = 3.5
    local_delay_ms: float = 1.0
    pathways: tuple[tuple[str, str], ...] = ()
    pathway_in_degree: int = 20
    pathway_j_mv: float = 0.2
    pathway_inhibition: float = 0.0
    alif_roles: tuple[str, ...] = ()
    alif_fraction: float = 0.4
    tau_adaptation_ms: float = 1000.0
    adaptation_mv: float = 2.0
    dt_ms: float = DEFAULT_DT_MS
    seed: int = 0
    device: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_connectome_name(self.connectome)
        for name in ("nmda_roles", "alif_roles"):  # lists (e.g. from JSON-saved settings) become tuples
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.pathways, list | tuple) and all(isinstance(pair, list | tuple) for pair in self.pathways):
            object.__setattr__(self, "pathways", tuple(tuple(pair) for pair in self.pathways))
        errors = []

        def positive(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                errors.append(f"{name} must be a positive finite number, got {value!r}")

        def non_negative(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                errors.append(f"{name} must be a finite number >= 0, got {value!r}")

        def probability(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                errors.append(f"{name} must be a probability in [0, 1], got {value!r}")

        if not isinstance(self.neurons_per_region, int) or self.neurons_per_region < 2:
            errors.append(f"neurons_per_region must be an integer >= 2, got {self.neurons_per_region!r}")
        probability("excitatory_fraction")
        probability("local_connection_prob")
        probability("long_range_connection_prob")
        for name in ("tau_m_ms", "tau_ampa_ms", "tau_gaba_ms", "tau_nmda_ms", "dt_ms", "v_threshold_mv",
                     "conduction_velocity_mm_per_ms", "local_delay_ms", "tau_adaptation_ms"):  # fmt: skip
            positive(name)
        for name in ("global_coupling", "j_exc_mv", "inhibition_ratio", "feedforward_inhibition",
                     "refractory_ms", "nmda_ratio", "background_eta", "background_j_mv",
                     "adaptation_mv"):  # fmt: skip
            non_negative(name)
        probability("alif_fraction")
        if isinstance(self.neurons_per_region, int) and self.neurons_per_region >= 2:
            n_exc = round(self.excitatory_fraction * self.neurons_per_region)
            if isinstance(self.excitatory_fraction, float | int) and not 1 <= n_exc < self.neurons_per_region:
                errors.append("excitatory_fraction must leave at least one excitatory and one inhibitory neuron")
        if not errors and self.v_reset_mv >= self.v_threshold_mv:
            errors.append("v_reset_mv must be below v_threshold_mv")
        low, high = DT_RANGE_MS
        if not errors and not low - 1e-9 <= self.dt_ms <= high:
            errors.append(f"dt_ms must lie in [{low}, {high}] ms (exactly integrated LIF), got {self.dt_ms}")
        if not errors:
            for name in ("refractory_ms", "local_delay_ms"):
                if not _is_multiple(getattr(self, name), self.dt_ms):
                    errors.append(f"{name} ({getattr(self, name)}) must be a whole multiple of dt_ms ({self.dt_ms})")
        if not isinstance(self.seed, int) or self.seed < 0:
            errors.append(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.backend not in BACKENDS:
            errors.append(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not isinstance(self.nmda_roles, tuple):
            errors.append("nmda_roles must be a tuple of role names")
        if not isinstance(self.pathways, tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(role, str) for role in pair)
            for pair in self.pathways
        ):
            errors.append(f"pathways must be a tuple of (source_role, target_role) pairs, got {self.pathways!r}")
        if (
            isinstance(self.pathway_in_degree, bool)
            or not isinstance(self.pathway_in_degree, int)
            or not (0 <= self.pathway_in_degree <= 10_000)
        ):
            errors.append(f"pathway_in_degree must be an integer in [0, 10000], got {self.pathway_in_degree!r}")
        non_negative("pathway_j_mv")
        non_negative("pathway_inhibition")
        errors.extend(self._alif_role_errors())
        if errors:
            raise ValueError("invalid BrainConfig: " + "; ".join(errors))

    def _alif_role_errors(self) -> list[str]:
        roles = self.alif_roles
        if not isinstance(roles, tuple) or not all(isinstance(role, str) for role in roles):
            return [f"alif_roles must be a tuple of role names, got {roles!r}"]
        valid = sorted(set(ROLE_TABLES[self.connectome.split(":")[0]].values()))
        unknown = [role for role in roles if role not in valid]
        if unknown:
            return [f"alif_roles {unknown} are not roles of {self.connectome}; valid roles: {valid}"]
        return []

    @property
    def alif_active(self) -> bool:
        """Whether any neuron has an adaptive threshold (roles given, a non-zero share and β > 0)."""
        return bool(self.alif_roles) and self.alif_fraction > 0 and self.adaptation_mv > 0

    @property
    def n_adaptive_per_region(self) -> int:
        """ALIF neurons in each region of an ``alif_roles`` role (0 when ALIF is off)."""
        return round(self.alif_fraction * self.n_excitatory_per_region) if self.alif_active else 0

    @property
    def n_excitatory_per_region(self) -> int:
        """Excitatory neurons per region (the first ones of each region's block)."""
        return round(self.excitatory_fraction * self.neurons_per_region)

    @property
    def background_rate_hz(self) -> float:
        """Poisson background event rate per neuron in Hz (Brunel calibration, see class docstring)."""
        if self.background_j_mv == 0:
            return 0.0
        return self.background_eta * self.v_threshold_mv / (self.background_j_mv * self.tau_m_ms * 1e-3)

    def substeps(self, env_dt_ms: float) -> int:
        """Brain steps per environment step of ``env_dt_ms`` (ValueError if not a whole multiple of dt)."""
        return substeps_per_env_step(env_dt_ms, self.dt_ms)


def set_compute_threads(threads: int) -> None:
    """Use ``threads`` threads for torch's intra-op work and numba's parallel passes (the brain step over a
    batch, e-prop's per-synapse passes at batch 1; as many as numba has, at most). On a small or busy CPU one is
    fastest: numba's OpenMP threads spin while they wait."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
