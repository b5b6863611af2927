"""The information probe: which task variables the brain's populations carry, in which trial period.

Run B brains (one batch, a :class:`~encephagen_gym.agents.policies.ConnectomePolicy` fed by the agent's own
encoder) through B copies of a trial task (:class:`~encephagen_gym.envs.trial_env.TrialEnv` conventions:
``info["period"]``, ``info["new_trial"]``, ``info["trial_outcome"]``), record what every neuron did in each
period of each trial, and decode the task variables from the neurons of each population with cross-validated
logistic regression.

**What is recorded** (:func:`record_trials`), per trial and period:

- ``rate``: each neuron's spike count in the period divided by the period's duration (Hz). For a period of
  fixed length this is the spike count up to a constant (which the decoder's standardisation removes);
  periods of variable length (an ITI, a random delay) then compare without their length leaking into the
  features.
- ``trace_<τ>ms`` (when ``filter_ms`` = τ > 0): a leaky trace of each neuron's spikes,
  x(t) = e^{−dt/τ} x(t − dt) + z(t) (spikes, with z ∈ {0, 1} per brain step of dt), read at the *start* of
  the period: what a slow-filtered readout could know when the period begins — issue 10's reservoir reading
  (at the start of the response window it holds the CS seen before the trace interval).

Actions: ``act="withhold"`` (default) gives every env its withhold action, so each trial runs its full course
and the brain is probed, not judged; ``act="model"`` samples the policy's own actions (a trained agent), and
a trial that ends early (an abort) lacks its later periods, which are then left out of their decoding. At the
end of every episode the brain restarts as :class:`~encephagen_gym.agents.BrainAgent` restarts it
(``policy.reset_state``: fresh state, noise stream continued), and so do the traces.

**Decoding** (:func:`~encephagen_gym.agents.probe_decoding.decode`): standardised features, multinomial
logistic regression with a fixed L2 penalty (:data:`DEFAULT_C`; fitted in the span of the training trials
when neurons outnumber them, which is the same model), stratified k-fold cross-validation (default 5 folds,
shuffled with the seed).
Reported: the accuracy of the pooled out-of-fold predictions, its 95 % Wilson interval (binomial, on those n
predictions), the chance level (the majority-class rate) and a *shuffle control*: the same cross-validation
with the labels permuted across trials, whose accuracy must sit at chance (if it does not, the pipeline leaks).
Several brain seeds are summarised as mean ± Student-t interval over seeds
(:func:`~encephagen_gym.agents.probe_report.summarise`, via :mod:`encephagen_gym.stats`).

**Populations** (:func:`default_populations`): the excitatory neurons of each region role, the readout's
input neurons (``"readout"``: where the policy's decision is read), the ALIF neurons of each role when the
brain has adaptive neurons (``network.is_adaptive``), and ``"all"`` neurons; any mapping name → neuron ids
can be passed instead.

**Task variables** (:func:`task_variables`): Conditioning — ``stimulus`` (CS identity) and ``cs_plus``;
PatternRecognition — ``label`` (stimulus class); WorkingMemory — ``sample``, ``match`` (match mode) and
``delay_bin``; every task — ``gt`` (the upcoming correct action). Variables that split the trials exactly
as an earlier one does (e.g. ``gt`` = ``label`` + 1) are decoded once and reported under both names.

Quick start::

    from encephagen_gym.agents.probe import run_probe
    from encephagen_gym.agents.probe_report import summarise, markdown_tables
    rows = run_probe("Encephagen-PatternRecognition-v0", seeds=(0, 1, 2), n_trials=200,
                     brain=dict(neurons_per_region=20), filter_ms=200.0)
    print(markdown_tables(summarise(rows)))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import encephagen_gym  # noqa: F401  (registers the env ids)
from encephagen_gym.agents.policies import ConnectomePolicy, agent_brain_config
from encephagen_gym.agents.probe_decoding import DEFAULT_C, DEFAULT_FOLDS, Decoding, decode
from encephagen_gym.brain import BrainConfig, Network
from encephagen_gym.envs.conditioning import ConditioningEnv
from encephagen_gym.envs.pattern_recognition import PatternRecognitionEnv
from encephagen_gym.envs.working_memory import WorkingMemoryEnv, delay_bin

__all__ = [
    "ACTS",
    "DEFAULT_C",
    "DEFAULT_FOLDS",
    "Decoding",
    "ProbeRecording",
    "ProbeRow",
    "TaskVariable",
    "decodable_trials",
    "decode",
    "default_populations",
    "make_envs",
    "make_probe_policy",
    "probe_recording",
    "probe_recordings",
    "record_trials",
    "role_populations",
    "run_probe",
    "task_variables",
    "trace_feature",
]

#: How the probed brains act: the env's withhold action (every trial runs its course) or the model's own.
ACTS = ("withhold", "model")

_BRAIN_FIELDS = frozenset(field.name for field in dataclasses.fields(BrainConfig))


# ------------------------------------------------------------------------------------------------ variables


@dataclasses.dataclass(frozen=True)
class TaskVariable:
    """A quantity of a trial to decode: ``extract(outcome)`` gives its value (hashable) from the trial's
    ``info["trial_outcome"]``, or None when the trial has none (it is left out)."""

    name: str
    description: str
    extract: Callable[[Mapping[str, Any]], Hashable | None]


def _key(name: str) -> Callable[[Mapping[str, Any]], Hashable | None]:
    return lambda outcome: outcome.get(name)


def _match(outcome: Mapping[str, Any]) -> Hashable | None:
    test = outcome.get("test", -1)
    return None if test is None or test < 0 else bool(test == outcome["sample"])


def _delay_bin(outcome: Mapping[str, Any]) -> Hashable | None:
    return delay_bin(outcome["delay_ms"]).removeprefix("accuracy_delay_")


def task_variables(env: gym.Env) -> dict[str, TaskVariable]:
    """The variables decoded for ``env``'s task (see the module docstring); ``gt`` for any trial env."""
    base = env.unwrapped
    variables: list[TaskVariable] = []
    if isinstance(base, ConditioningEnv):
        variables += [
            TaskVariable("stimulus", "CS identity (image index)", _key("stimulus")),
            TaskVariable("cs_plus", "CS+ (rewarded) vs CS−", _key("cs_plus")),
        ]
    elif isinstance(base, PatternRecognitionEnv):
        variables.append(TaskVariable("label", "stimulus class", _key("label")))
    elif isinstance(base, WorkingMemoryEnv):
        variables.append(TaskVariable("sample", "sample identity (image index)", _key("sample")))
        if base.mode == "match":
            variables.append(TaskVariable("match", "test matches the sample", _match))
        variables.append(TaskVariable("delay_bin", "delay bin (ms)", _delay_bin))
    variables.append(TaskVariable("gt", "the upcoming correct action", _key("gt")))
    return {variable.name: variable for variable in variables}


# ------------------------------------------------------------------------------------------------ populations


def role_populations(network: Network, roles: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``"<role> E"`` → ids of the excitatory neurons of each role (every role of the connectome by default;
    ``"a+b"`` joins roles), and ``"<role> ALIF"`` → its adaptive neurons where the brain has any."""
    present = sorted(set(network.roles))
    specs = present if roles is None else list(roles)
    adaptive = getattr(network, "is_adaptive", None)
    adaptive = None if adaptive is None else adaptive.detach().cpu().numpy().astype(bool)
    populations: dict[str, np.ndarray] = {}
    for spec in specs:
        parts = spec.split("+")
        unknown = [role for role in parts if role not in present]
        if unknown or not all(parts):
            raise ValueError(f"population {spec!r} names unknown role(s) {unknown}; roles: {present}")
        excitatory = network.neurons_with_role(*parts, excitatory_only=True).cpu().numpy()
        populations[f"{spec} E"] = excitatory
        if adaptive is not None:
            alif = excitatory[adaptive[excitatory]]
            if alif.size:
                populations[f"{spec} ALIF"] = alif
    return populations


def default_populations(policy: ConnectomePolicy, roles: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every role's excitatory (and ALIF) population (:func:`role_populations`), ``"readout"`` (the policy
    readout's input neurons) and ``"all"`` (every neuron, excitatory and inhibitory)."""
    network = policy.network
    populations = role_populations(network, roles)
    populations["readout"] = policy.readout.input_neurons.detach().cpu().numpy()
    populations["all"] = np.arange(network.n_neurons)
    return populations


# ------------------------------------------------------------------------------------------------ policy, envs


def make_envs(env_id: str, n_envs: int, **env_kwargs: Any) -> list[gym.Env]:
    """``n_envs`` copies of ``env_id`` (with ``env_kwargs``)."""
    if not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
    return [gym.make(env_id, **env_kwargs) for _ in range(n_envs)]


def make_probe_policy(
    env: gym.Env, *, seed: int = 0, device: torch.device | str = "auto", **policy_kwargs: Any
) -> ConnectomePolicy:
    """A fresh :class:`ConnectomePolicy` for ``env``, built as :class:`~encephagen_gym.agents.BrainAgent` builds
    it (the env's ``step_ms``, ``observation_layout`` and ``withhold_action``). ``seed`` is the brain seed:
    it seeds the wiring (``BrainConfig.seed``) and the policy. ``policy_kwargs``: any ConnectomePolicy option
    or :class:`~encephagen_gym.brain.BrainConfig` field (``neurons_per_region=20``, ``connectome=...``)."""
    if not (isinstance(seed, int) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if "seed" in policy_kwargs:
        raise ValueError("seed is the brain seed of the probe (make_probe_policy(env, seed=...)); do not pass it twice")
    base = env.unwrapped
    options = dict(policy_kwargs)
    brain = options.pop("brain", None)
    brain_fields = {key: options.pop(key) for key in list(options) if key in _BRAIN_FIELDS and key != "seed"}
    association_inputs = options.pop("association_inputs", None)
    if brain is None:  # the agent's brain (routing pathways, ALIF association neurons), as BrainAgent makes it
        brain = agent_brain_config(association_inputs, **brain_fields, seed=seed)
    elif association_inputs is not None:
        raise ValueError("association_inputs chooses the agent brain's pathways; with a whole brain give its pathways")
    else:
        brain = dataclasses.replace(brain, seed=seed, **brain_fields)
    layout = getattr(base, "observation_layout", None)
    if layout is not None:
        options.setdefault("observation_layout", {name: (s.start, s.stop) for name, s in dict(layout).items()})
    if getattr(base, "withhold_action", None) is not None:
        options.setdefault("withhold_action", int(base.withhold_action))
    step_ms = options.pop("step_ms", getattr(base, "step_ms", None))
    return ConnectomePolicy(env.observation_space, env.action_space, brain=brain, step_ms=step_ms, seed=seed,
                            device=device, **options)  # fmt: skip


# ------------------------------------------------------------------------------------------------ recording


@dataclasses.dataclass(frozen=True)
class ProbeRecording:
    """What :func:`record_trials` recorded, on the host.

    ``periods``: the trial periods in order; ``rates_hz``: ``[T, P, N]`` float32, each neuron's rate in each
    period of each trial (NaN where the trial lacked the period); ``period_ms``: ``[T, P]`` the periods'
    durations (0 where absent); ``traces``: ``[T, P, N]`` the leaky spike trace (τ = ``filter_ms``) at each
    period's start, or None when ``filter_ms`` = 0; ``outcomes``: each trial's ``info["trial_outcome"]``.
    """

    periods: tuple[str, ...]
    rates_hz: np.ndarray
    period_ms: np.ndarray
    traces: np.ndarray | None
    outcomes: tuple[dict[str, Any], ...]
    filter_ms: float
    step_ms: float
    seed: int

    @property
    def n_trials(self) -> int:
        return len(self.outcomes)

    @property
    def features(self) -> tuple[str, ...]:
        """The feature kinds recorded: ``"rate"`` and, with a filter, ``"trace_<τ>ms"``."""
        return ("rate",) if self.traces is None else ("rate", trace_feature(self.filter_ms))

    @property
    def spike_counts(self) -> np.ndarray:
        """``[T, P, N]`` each neuron's spike count in each period of each trial (NaN where absent)."""
        return self.rates_hz * (self.period_ms[:, :, None] * 1e-3)

    def present(self, period: str) -> np.ndarray:
        """``[T]`` bool: the trials that had ``period``."""
        return self.period_ms[:, self.periods.index(period)] > 0

    def feature_matrix(self, feature: str, period: str, neurons: np.ndarray) -> np.ndarray:
        """``[T, len(neurons)]`` features of every trial (NaN rows where the trial lacked the period)."""
        if feature not in self.features:
            raise ValueError(f"feature must be one of {self.features}, got {feature!r}")
        source = self.rates_hz if feature == "rate" else self.traces
        return source[:, self.periods.index(period)][:, neurons]


def trace_feature(filter_ms: float) -> str:
    """Name of the leaky-trace feature with time constant ``filter_ms``: ``"trace_200ms"``."""
    return f"trace_{filter_ms:g}ms"


class _TrialBuilder:
    """One env's trial in progress: spike counts, durations and start traces per period (host side)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.counts: dict[str, np.ndarray] = {}
        self.duration_ms: dict[str, float] = {}
        self.start_trace: dict[str, np.ndarray] = {}
        self.period: str | None = None

    def add_counts(self, period: str, counts: np.ndarray) -> None:
        self.counts[period] = self.counts[period] + counts if period in self.counts else counts


def _merge_order(order: list[str], trial: list[str]) -> None:
    """Insert the periods of ``trial`` missing from ``order`` after their predecessor in the trial."""
    previous = -1
    for name in trial:
        if name not in order:
            order.insert(previous + 1, name)
        previous = order.index(name)


def _check_envs(policy: ConnectomePolicy, envs: Sequence[gym.Env], act: str) -> int | None:
    if not envs:
        raise ValueError("envs must hold at least one env")
    withhold = None
    for env in envs:
        base = env.unwrapped
        step_ms = getattr(base, "step_ms", None)
        if step_ms is None or not math.isclose(float(step_ms), policy.step_ms):
            raise ValueError(f"the env steps {step_ms} ms but the policy runs {policy.step_ms} ms per decision")
        if env.observation_space.shape != (policy.encoder.observation_size,):
            raise ValueError(f"the env's observations have shape {env.observation_space.shape}, the policy "
                             f"expects ({policy.encoder.observation_size},)")  # fmt: skip
        withhold = getattr(base, "withhold_action", None)
    if act == "withhold" and withhold is None:
        raise ValueError("act='withhold' needs an env that names its withhold action (env.unwrapped.withhold_action)")
    return None if withhold is None else int(withhold)


@torch.no_grad()
def record_trials(
    policy: ConnectomePolicy,
    envs: Sequence[gym.Env],
    n_trials: int,
    *,
    act: str = "withhold",
    filter_ms: float = 0.0,
    seed: int = 0,
    update_statistics: bool = False,
    progress: bool = False,
) -> ProbeRecording:
    """Run ``len(envs)`` brains (one batch) through ``n_trials`` trials in all and record them.

    Each env contributes an equal share of the trials (its first ``n_trials // B`` or one more), so that no
    kind of trial is favoured by finishing first. Env i is reset with a seed drawn from ``seed``; the brains
    start from states drawn from a generator seeded with ``seed``. ``update_statistics``: let the encoder
    update its running mean/std of signed observations (as the agent does while learning; no effect on the
    cognitive tasks, whose observations are intensities). ``progress``: a progress bar over trials."""
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if act not in ACTS:
        raise ValueError(f"act must be one of {ACTS}, got {act!r}")
    if not (isinstance(filter_ms, int | float) and math.isfinite(filter_ms) and filter_ms >= 0):
        raise ValueError(f"filter_ms must be a number of ms >= 0 (0: no trace), got {filter_ms!r}")
    withhold = _check_envs(policy, envs, act)
    policy.set_training_mode(False)
    device = policy.brain.device
    batch, n_neurons = len(envs), policy.brain.n_neurons
    quota = [n_trials // batch + (i < n_trials % batch) for i in range(batch)]
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) * 1_000_003 + 11)
    state = policy.initial_state(batch, generator)
    step_counts = torch.zeros((batch, n_neurons), device=device)
    period_counts = torch.zeros_like(step_counts)
    trace = torch.zeros_like(step_counts) if filter_ms > 0 else None
    kappa = math.exp(-policy.brain.dt_ms / filter_ms) if filter_ms > 0 else 0.0

    def on_substep(brain_state) -> None:
        step_counts.add_(brain_state.spikes)
        if trace is not None:
            trace.mul_(kappa).add_(brain_state.spikes)

    env_seeds = np.random.SeedSequence(int(seed)).generate_state(batch)
    observations = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, env_seeds, strict=True)])
    builders = [_TrialBuilder() for _ in range(batch)]
    done_trials = [0] * batch
    kept: list[tuple[_TrialBuilder, dict[str, Any]]] = []
    order: list[str] = []
    bar = _progress_bar(n_trials, progress)
    try:
        while len(kept) < n_trials:
            before = trace.clone() if trace is not None else None
            output = policy.advance(state, policy.observation_tensor(observations), update_statistics, on_substep)
            if act == "model":
                actions = policy.env_actions(policy.sample(output, generator=generator))
            else:
                actions = np.full(batch, withhold)
            steps = [env.step(action) for env, action in zip(envs, actions, strict=True)]
            periods = [info["period"] for _, _, _, _, info in steps]
            starts = [i for i in range(batch) if builders[i].period != periods[i]]
            for i, rows in _take_rows(period_counts, [i for i in starts if builders[i].period is not None]):
                builders[i].add_counts(builders[i].period, rows)
            if before is not None:
                for i, rows in _take_rows(before, starts, clear=False):
                    builders[i].start_trace.setdefault(periods[i], rows)
            for i in starts:
                builders[i].period = periods[i]
                if periods[i] not in builders[i].order:
                    builders[i].order.append(periods[i])
            period_counts.add_(step_counts)
            step_counts.zero_()
            for i in range(batch):
                builders[i].duration_ms[periods[i]] = builders[i].duration_ms.get(periods[i], 0.0) + policy.step_ms
            ended = [i for i in range(batch) if steps[i][4].get("new_trial", False)]
            for i, rows in _take_rows(period_counts, ended):
                builder = builders[i]
                builder.add_counts(builder.period, rows)
                if done_trials[i] < quota[i]:
                    kept.append((builder, dict(steps[i][4]["trial_outcome"])))
                    _merge_order(order, builder.order)
                    bar.update(1)
                done_trials[i] += 1
                builders[i] = _TrialBuilder()
            observations = np.stack([step[0] for step in steps])
            finished = [i for i in range(batch) if steps[i][2] or steps[i][3]]
            if finished:
                mask = torch.zeros(batch, dtype=torch.bool)
                mask[finished] = True
                mask = mask.to(device)
                policy.reset_state(state, mask, generator)
                keep = (~mask).to(step_counts.dtype)[:, None]
                period_counts.mul_(keep)
                if trace is not None:
                    trace.mul_(keep)
                for i in finished:
                    observations[i] = envs[i].reset()[0]
                    builders[i] = _TrialBuilder()  # a trial cut off by truncation is dropped
    finally:
        bar.close()
    return _assemble(kept, tuple(order), n_neurons, filter_ms, policy.step_ms, int(seed))


def _take_rows(tensor: torch.Tensor, rows: list[int], clear: bool = True):
    """``(i, tensor[i] as numpy)`` for the given rows (one device→host copy), zeroing them if ``clear``."""
    if not rows:
        return []
    index = torch.as_tensor(rows, device=tensor.device)
    values = tensor.index_select(0, index).cpu().numpy()
    if clear:
        tensor.index_fill_(0, index, 0.0)
    return list(zip(rows, values, strict=True))


def _assemble(kept, periods, n_neurons, filter_ms, step_ms, seed) -> ProbeRecording:
    n_trials, n_periods = len(kept), len(periods)
    rates = np.full((n_trials, n_periods, n_neurons), np.nan, dtype=np.float32)
    durations = np.zeros((n_trials, n_periods))
    traces = np.full_like(rates, np.nan) if filter_ms > 0 else None
    for t, (builder, _) in enumerate(kept):
        for name, counts in builder.counts.items():
            p = periods.index(name)
            durations[t, p] = builder.duration_ms[name]
            rates[t, p] = counts / (durations[t, p] * 1e-3)
            if traces is not None:
                traces[t, p] = builder.start_trace[name]
    outcomes = tuple(outcome for _, outcome in kept)
    return ProbeRecording(periods, rates, durations, traces, outcomes, float(filter_ms), step_ms, seed)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="trial", desc="probe", leave=False)


# ------------------------------------------------------------------------------------------------ the probe


@dataclasses.dataclass(frozen=True)
class ProbeRow:
    """One decoding: a task variable from one feature kind of one population in one period, for one seed.

    Classes with fewer than two trials in the period are left out (``n_trials`` and ``n_classes`` count what
    was decoded); NaN accuracies (``n_classes`` < 2) mean nothing was left to decode (e.g. a variable constant
    over the trials)."""

    seed: int
    variable: str
    feature: str
    population: str
    n_neurons: int
    period: str
    accuracy: float
    ci_low: float
    ci_high: float
    chance: float
    shuffle_accuracy: float
    n_trials: int
    n_classes: int


def _partition(labels: list) -> tuple:
    """Trials grouped by label, independent of the label names (None: left out)."""
    first: dict = {}
    return tuple(None if label is None else first.setdefault(label, len(first)) for label in labels)


def probe_recording(
    recording: ProbeRecording,
    populations: Mapping[str, np.ndarray],
    variables: Mapping[str, TaskVariable],
    *,
    folds: int = DEFAULT_FOLDS,
    C: float = DEFAULT_C,
    seed: int | None = None,
) -> list[ProbeRow]:
    """Decode every variable from every feature kind × population × period of ``recording`` (one
    :class:`ProbeRow` each). ``seed`` (default: the recording's) fixes the folds and shuffles."""
    seed = recording.seed if seed is None else seed
    if not populations:
        raise ValueError("populations must name at least one population")
    for name, neurons in populations.items():
        ids = np.asarray(neurons)
        if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= recording.rates_hz.shape[2]:
            raise ValueError(f"population {name!r} must be a non-empty list of neuron ids in "
                             f"[0, {recording.rates_hz.shape[2]})")  # fmt: skip
    rows: list[ProbeRow] = []
    decoded: dict[tuple, str] = {}  # partition → the first variable decoded with it
    for variable in variables.values():
        labels = [variable.extract(outcome) for outcome in recording.outcomes]
        partition = _partition(labels)
        if partition in decoded:
            same = decoded[partition]
            rows += [dataclasses.replace(row, variable=variable.name) for row in list(rows) if row.variable == same]
            continue
        decoded[partition] = variable.name
        labelled = np.array([label is not None for label in labels])
        label_array = np.array(labels, dtype=object)
        for feature in recording.features:
            for period in recording.periods:
                use = decodable_trials(label_array, labelled & recording.present(period))
                y = label_array[use]
                for name, neurons in populations.items():
                    ids = np.asarray(neurons, dtype=np.int64)
                    rows.append(_row(recording, feature, period, name, ids, use, y, variable.name, folds, C, seed))
    return rows


def decodable_trials(labels: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``candidates`` without the trials of classes that have fewer than two of them (no fold could both train
    and test on such a class)."""
    keys = labels.astype(str)
    classes, counts = np.unique(keys[candidates], return_counts=True)
    return candidates & np.isin(keys, classes[counts >= 2])


def _row(recording, feature, period, name, ids, use, y, variable, folds, C, seed) -> ProbeRow:
    counts = np.unique(y.astype(str), return_counts=True)[1] if y.size else np.zeros(0, dtype=int)
    common = dict(seed=recording.seed, variable=variable, feature=feature, population=name, n_neurons=int(ids.size),
                  period=period, n_trials=int(y.size), n_classes=int(counts.size))  # fmt: skip
    if counts.size < 2:
        chance = float(counts.max() / y.size) if y.size else float("nan")
        nan = float("nan")
        return ProbeRow(accuracy=nan, ci_low=nan, ci_high=nan, chance=chance, shuffle_accuracy=nan, **common)
    features = recording.feature_matrix(feature, period, ids)[use]
    result = decode(features, y, folds=folds, C=C, seed=seed)
    return ProbeRow(accuracy=result.accuracy, ci_low=result.ci_low, ci_high=result.ci_high, chance=result.chance,
                    shuffle_accuracy=result.shuffle_accuracy, **common)  # fmt: skip


def probe_recordings(
    env_id: str,
    *,
    seeds: Sequence[int] = (0,),
    n_trials: int = 200,
    n_envs: int = 16,
    brain: Mapping[str, Any] | None = None,
    policy: ConnectomePolicy | None = None,
    act: str = "withhold",
    filter_ms: float = 0.0,
    roles: Sequence[str] | None = None,
    populations: Mapping[str, np.ndarray] | Callable[[ConnectomePolicy], Mapping[str, np.ndarray]] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    device: torch.device | str = "auto",
    progress: bool = False,
) -> Iterator[tuple[ProbeRecording, dict[str, np.ndarray]]]:
    """For each seed, record ``n_trials`` trials of ``n_envs`` brains (:func:`record_trials`) and yield the
    recording with its populations (the arguments as for :func:`run_probe`)."""
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if policy is not None and brain:
        raise ValueError("brain options cannot be combined with a trained policy: its brain is the model's")
    envs = make_envs(env_id, min(n_envs, n_trials), **dict(env_kwargs or {}))
    for seed in seeds:
        if policy is not None:
            probed = policy
        else:
            probed = make_probe_policy(envs[0], seed=seed, device=device, **dict(brain or {}))
        if populations is None:
            chosen = default_populations(probed, roles)
        else:
            chosen = dict(populations(probed) if callable(populations) else populations)
        recording = record_trials(probed, envs, n_trials, act=act, filter_ms=filter_ms, seed=seed,
                                  update_statistics=policy is None, progress=progress)  # fmt: skip
        yield recording, chosen


def run_probe(
    env_id: str,
    *,
    seeds: Sequence[int] = (0,),
    n_trials: int = 200,
    n_envs: int = 16,
    brain: Mapping[str, Any] | None = None,
    policy: ConnectomePolicy | None = None,
    act: str = "withhold",
    filter_ms: float = 0.0,
    roles: Sequence[str] | None = None,
    populations: Mapping[str, np.ndarray] | Callable[[ConnectomePolicy], Mapping[str, np.ndarray]] | None = None,
    variables: Mapping[str, TaskVariable] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    folds: int = DEFAULT_FOLDS,
    C: float = DEFAULT_C,
    device: torch.device | str = "auto",
    progress: bool = False,
) -> list[ProbeRow]:
    """The whole probe for a registered task: for each seed, record ``n_trials`` trials of ``n_envs`` brains
    (:func:`record_trials`) and decode (:func:`probe_recording`).

    ``policy``: a trained policy (e.g. ``BrainAgent.load(path).policy``), run as it is for every seed (the
    seeds then vary its initial states, noise and trials); otherwise a fresh brain per seed
    (:func:`make_probe_policy` with ``brain`` = ConnectomePolicy options / BrainConfig fields, the seed
    seeding the wiring). ``roles`` restricts the role populations (``"a+b"`` joins roles); ``populations``
    (a mapping, or a function of the policy that returns one) replaces the defaults
    (:func:`default_populations`); ``variables`` those of :func:`task_variables`."""
    if variables is None:
        variables = task_variables(gym.make(env_id, **dict(env_kwargs or {})))
    rows: list[ProbeRow] = []
    for recording, chosen in probe_recordings(
        env_id, seeds=seeds, n_trials=n_trials, n_envs=n_envs, brain=brain, policy=policy, act=act,
        filter_ms=filter_ms, roles=roles, populations=populations, env_kwargs=env_kwargs, device=device,
        progress=progress,
    ):  # fmt: skip
        rows += probe_recording(recording, chosen, dict(variables), folds=folds, C=C)
    return rows
