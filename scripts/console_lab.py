"""The console's experiments on one brain, as plain functions of a :class:`Lab` that return JSON-ready dicts.

**Presentations.** The lab simulates ``repeats`` copies of the brain in one batch (shared weights; each copy has
its own initial state and its own background noise, so every presentation sees fresh noise). A presentation is a
sequence of phases: ``rest`` (no input, so that the previous stimulus has died away; skipped when the brain has
already been quiet long enough), ``baseline`` (no input, measured), ``stimulus`` (the input, measured), and for
``memory`` a ``delay`` (no input, measured). Spikes are counted per region at every step on the device.

**Responses.** For each copy, a role's response is its mean rate per neuron in the stimulus window minus its rate
in the preceding baseline window (Hz); the table gives the mean over the copies with a 95 % Student-t interval
(:mod:`encephagen_gym.stats`). A role's **latency** is the onset of the rise of its copy-averaged rate after
stimulus onset (:func:`onset_latencies`: detected by a cumulative sum against the baseline's noise in bins of
``latency_bin_ms``, placed by the maximum-likelihood change point of a step in the mean), with a 95 % bootstrap
interval over the copies (a latency is not a mean, so no t-interval); none when the rate does not rise detectably
within the stimulus window. Next to it the table gives the shortest synaptic delay from the driven neurons into each
role: the earliest a response could arrive through the wiring.

**Teaching** is reward-modulated STDP (Izhikevich 2007; Frémaux & Gerstner 2016) from the plasticity package's
functional layer on the visual → amygdala synapses onto excitatory cells: the pattern (CS) is shown for the
stimulus window, the US (a current into the amygdala's excitatory cells) is added during its last ``us_ms``, and
at US offset a dopamine pulse M = 1 turns the synaptic tags into weight changes, Δw = η · mean over copies of
M · e. **Test** measures the amygdala response
to every taught and untaught pattern twice from the same state and the same noise: with the current weights and
with the weights the brain was built with; the change (now − naive) of the taught patterns against that of the
untaught ones is judged with a two-sided permutation test over presentations.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from encephagen_gym.brain import BrainConfig, SpikingBrain, brain_step, clone_state, init_state
from encephagen_gym.brain.figures import ActivityRecord, plot_activity, raster_sample
from encephagen_gym.plasticity import apply_weight_update, projection_from_synapses, select_projection
from encephagen_gym.plasticity.stdp import (
    StdpConfig,
    init_stdp_traces,
    make_stdp_params,
    modulated_update,
    stdp_trace_step,
)
from encephagen_gym.scripts.console_stimuli import (
    DIGIT_NAMES,
    PROTOTYPE_NAMES,
    image_current,
    pattern_image,
    role_current,
    tone_current,
    touch_current,
)
from encephagen_gym.stats import mean_ci

__all__ = ["FILE_FORMAT", "ConsoleError", "Lab", "Protocol", "onset_latencies"]

FILE_FORMAT = "encephagen-console/1"
US_ROLE = "amygdala"
PLASTIC_PAIRS = (("visual", US_ROLE),)
MEMORY_ROLE = "prefrontal"
LATENCY_SD = 3.0
ALPHA = 0.05
MAX_PAIRINGS = 1000
MAX_DELAY_MS = 10_000.0
BOOTSTRAP_RESAMPLES = 1000

Progress = Callable[[float], None]


class ConsoleError(ValueError):
    """A bad command or argument: the console prints the message on one line and goes on."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Timing (ms), amplitudes (mV) and learning constants of the console's experiments.

    ``amplitude_mv`` (30 mV) makes the driven cells fire at about 90 Hz on the 96×200 brain, a strong sensory
    response; at 12 mV (about 35 Hz) the response of roles beyond the stimulated one was too small (≈ 0.6 Hz in
    prefrontal cortex, 3 copies) for a stable latency. ``us_amplitude_mv`` (20 mV) drives the amygdala's excitatory
    cells during the US. ``learning_rate`` η of reward-modulated STDP (see ``teach``); measured on the 96×200 brain
    (6 copies, pattern A): 15 pairings at η = 20 raised the weights of the synapses from the pattern's cells by 55 %
    and of the others by 8 %; 20 pairings at η = 100 drove both towards the bound (+355 %, +231 %), so that
    teaching sensitised the amygdala to every pattern. At η = 50 (10 copies, ``teach A 20``): +417 % and +231 %;
    the amygdala response to A rose by 2.36 ± 0.24 Hz and to the untaught prototypes by 1.75 ± 0.15 Hz
    (permutation p = 0.0004 for the difference): mostly generalisation, with a pattern-specific part."""

    rest_ms: float = 300.0
    baseline_ms: float = 200.0
    stimulus_ms: float = 200.0
    amplitude_mv: float = 30.0
    us_amplitude_mv: float = 20.0
    us_ms: float = 50.0
    latency_bin_ms: float = 5.0
    memory_bin_ms: float = 100.0
    status_ms: float = 500.0
    learning_rate: float = 50.0
    raster_per_region: int = 10
    raster_bin_ms: float = 10.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "rest_ms":
                ok = math.isfinite(value) and value >= 0
            elif field.name == "raster_per_region":
                ok = isinstance(value, int) and value >= 1
            else:
                ok = math.isfinite(value) and value > 0
            if not ok:
                raise ValueError(f"{field.name} must be a positive number, got {value!r}")
        if self.us_ms > self.stimulus_ms:
            raise ValueError(f"us_ms ({self.us_ms:g}) must not exceed stimulus_ms ({self.stimulus_ms:g})")


class Phase(NamedTuple):
    """``n_steps`` steps with one input current (``[B, N]`` mV, or None for no input)."""

    name: str
    n_steps: int
    current: torch.Tensor | None


class Recording(NamedTuple):
    """Spike counts of one presentation on the host: ``counts`` ``[T, B, R]`` per step, copy and region;
    ``raster_steps``/``raster_rows`` the spikes of copy 0's raster sample; ``phases`` (name, first step, end
    step); ``label`` what was shown."""

    counts: np.ndarray
    raster_steps: np.ndarray
    raster_rows: np.ndarray
    phases: tuple[tuple[str, int, int], ...]
    label: str

    def window(self, name: str) -> tuple[int, int]:
        """(first step, end step) of the phases called ``name`` (contiguous)."""
        spans = [(start, stop) for phase, start, stop in self.phases if phase == name]
        if not spans:
            raise KeyError(name)
        return spans[0][0], spans[-1][1]


def _ci(values: np.ndarray) -> list[float | None]:
    mean, half = mean_ci(values)
    return [_finite(mean), _finite(half)]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class Lab:
    """One brain (``config``) simulated as ``repeats`` copies, with what has been taught to it."""

    def __init__(self, config: BrainConfig, protocol: Protocol | None = None, repeats: int = 10,
                 progress: Progress | None = None) -> None:  # fmt: skip
        if not isinstance(repeats, int) or repeats < 2:
            raise ValueError(f"repeats must be an integer >= 2 (a confidence interval needs two), got {repeats!r}")
        self.protocol = protocol or Protocol()
        self.repeats = repeats
        self.progress = progress
        self.brain = SpikingBrain(config)
        self.config = self.brain.config
        self.network = self.brain.network
        self.dt_ms = self.config.dt_ms
        for name in ("latency_bin_ms", "memory_bin_ms", "raster_bin_ms"):
            value = getattr(self.protocol, name)
            if abs(value / self.dt_ms - round(value / self.dt_ms)) > 1e-6:
                raise ValueError(f"{name} ({value:g}) must be a whole multiple of dt ({self.dt_ms:g} ms)")
        self.naive_weights = self.brain.weights.clone()
        self.roles = tuple(sorted(set(self.network.roles)))
        membership = np.zeros((self.network.n_regions, len(self.roles)), dtype=np.float32)
        for region, role in enumerate(self.network.roles):
            membership[region, self.roles.index(role)] = 1.0
        self._role_weights = membership / membership.sum(axis=0, keepdims=True)  # role rate = mean of regions
        self._raster_ids, self._raster_excitatory = raster_sample(self.network, self.protocol.raster_per_region)
        self.taught: dict[str, int] = {}
        self.last: Recording | None = None
        self.noise_seed = self.config.seed
        self._projection = None
        self._projection_error: str | None = None
        try:
            self._projection = _plastic_projection(self.network, self.brain.weights)
        except ValueError as err:
            self._projection_error = str(err)
        self._new_state(self.noise_seed)

    # ------------------------------------------------------------------------------------------ simulation

    def _steps(self, ms: float) -> int:
        return max(1, round(ms / self.dt_ms))

    def _new_state(self, seed: int) -> None:
        generator = torch.Generator(device=self.network.device)
        generator.manual_seed(seed)
        self.state = init_state(self.network, self.repeats, generator=generator)
        self._quiet_ms = 0.0
        self._run([Phase("warm-up", self._steps(self.protocol.rest_ms or 100.0), None)], "warm-up")
        self._quiet_ms = self.protocol.rest_ms

    def _batch(self, current: torch.Tensor) -> torch.Tensor:
        return current.expand(self.repeats, -1).contiguous()

    def _rest_phase(self) -> list[Phase]:
        missing = self.protocol.rest_ms - self._quiet_ms
        return [Phase("rest", self._steps(missing), None)] if missing >= self.dt_ms else []

    def _run(self, phases: Sequence[Phase], label: str, weights: torch.Tensor | None = None,
             state=None, on_step: Callable[[Any], None] | None = None) -> Recording:  # fmt: skip
        """Simulate ``phases`` on the lab's state (or on ``state``, a clone, which is then not kept) with the
        brain's weights (or ``weights``); return the recording. Updates the lab's state and quiet time."""
        own_state = state is None
        state = self.state if own_state else state
        weights = self.brain.weights if weights is None else weights
        net = self.network
        total = sum(phase.n_steps for phase in phases)
        batch, n_regions, per_region = self.repeats, net.n_regions, net.neurons_per_region
        counts = torch.zeros((total, batch, n_regions), device=net.device)
        raster = torch.zeros((total, self._raster_ids.numel()), device=net.device)
        spans, t = [], 0
        report_every = max(1, total // 50)
        for phase in phases:
            spans.append((phase.name, t, t + phase.n_steps))
            if own_state and phase.current is not None:
                self._quiet_ms = 0.0
            for _ in range(phase.n_steps):
                state = brain_step(net, weights, state, phase.current)
                if own_state:  # kept current at every step, so that an interrupted run leaves a usable state
                    self.state = state
                    if phase.current is None:
                        self._quiet_ms += self.dt_ms
                torch.sum(state.spikes.view(batch, n_regions, per_region), dim=2, out=counts[t])
                raster[t] = state.spikes[0].index_select(0, self._raster_ids)
                if on_step is not None:
                    on_step(state)
                t += 1
                if self.progress is not None and t % report_every == 0:
                    self.progress(t / total)
        steps, rows = torch.nonzero(raster, as_tuple=True)
        return Recording(counts.cpu().numpy(), steps.cpu().numpy(), rows.cpu().numpy(), tuple(spans), label)

    def _role_rates(self, recording: Recording, start: int, stop: int) -> np.ndarray:
        """``[B, roles]`` mean rate per neuron (Hz) of each role over steps [start, stop)."""
        spikes = recording.counts[start:stop].sum(axis=0) @ self._role_weights  # [B, roles]
        return spikes / (self.network.neurons_per_region * (stop - start) * self.dt_ms * 1e-3)

    def _copy_step_rates(self, recording: Recording, start: int, stop: int) -> np.ndarray:
        """``[roles, B, steps]`` rate (Hz) of each role in each copy at every step of [start, stop)."""
        counts = np.tensordot(recording.counts[start:stop], self._role_weights, axes=([2], [0]))  # [T, B, roles]
        return np.transpose(counts, (2, 1, 0)) / (self.network.neurons_per_region * self.dt_ms * 1e-3)

    def _latencies(self, recording: Recording) -> dict[str, dict[str, Any]]:
        """Onset latency (ms after stimulus onset) of each role's copy-averaged rate (:func:`onset_latencies`),
        with a 95 % bootstrap interval over the copies and the fraction of resamples in which a rise is found."""
        bin_steps = self._steps(self.protocol.latency_bin_ms)
        base = self._copy_step_rates(recording, *recording.window("baseline"))
        evoked = self._copy_step_rates(recording, *recording.window("stimulus"))
        rng = np.random.default_rng([self.noise_seed, recording.counts.shape[0]])
        resample = rng.integers(0, self.repeats, size=(BOOTSTRAP_RESAMPLES, self.repeats))
        out = {}
        for j, role in enumerate(self.roles):
            point = onset_latencies(base[j].mean(0)[None], evoked[j].mean(0)[None], bin_steps)[0]
            boots = onset_latencies(base[j][resample].mean(1), evoked[j][resample].mean(1), bin_steps)
            found = boots[np.isfinite(boots)]
            interval = None
            if math.isfinite(point) and found.size >= 0.5 * boots.size:  # whole steps: no interpolation
                low, high = np.quantile(found, 0.025, method="lower"), np.quantile(found, 0.975, method="higher")
                interval = [float(low * self.dt_ms), float(high * self.dt_ms)]
            out[role] = {
                "latency_ms": float(point * self.dt_ms) if math.isfinite(point) else None,
                "latency_interval_ms": interval,
                "latency_found_fraction": float(found.size / boots.size),
            }
        return out

    def _min_delays(self, current: torch.Tensor) -> dict[str, float | None]:
        """Shortest synaptic delay (ms) from the driven neurons into each role's regions; 0 for roles with driven
        neurons (they respond to the input directly); None where no synapse leads."""
        net = self.network
        driven = current > 0
        from_driven = driven.index_select(0, net.pre) & ~driven.index_select(0, net.post)
        delays = {}
        for role in self.roles:
            regions = torch.as_tensor(net.connectome.regions_with_role(role), device=net.device)
            if bool(driven[net.neurons_of_regions(regions)].any()):
                delays[role] = 0.0
                continue
            reach = from_driven & torch.isin(net.post_region, regions)
            delays[role] = float(net.delay_steps[reach].min()) * self.dt_ms if bool(reach.any()) else None
        return delays

    def _responses(self, recording: Recording) -> tuple[dict[str, dict[str, Any]], np.ndarray]:
        """Per role: baseline, stimulus and response rates (mean, 95 % CI) and latency; and the ``[B, roles]``
        responses."""
        base = self._role_rates(recording, *recording.window("baseline"))
        stim = self._role_rates(recording, *recording.window("stimulus"))
        response = stim - base
        latencies = self._latencies(recording)
        table = {
            role: {
                "baseline_hz": _ci(base[:, j]),
                "stimulus_hz": _ci(stim[:, j]),
                "response_hz": _ci(response[:, j]),
                **latencies[role],
            }
            for j, role in enumerate(self.roles)
        }
        return table, response

    def _presentation(self, label: str, current: torch.Tensor, weights: torch.Tensor | None = None,
                      state=None, rest: bool = True) -> Recording:  # fmt: skip
        p = self.protocol
        phases = [*(self._rest_phase() if rest else []), Phase("baseline", self._steps(p.baseline_ms), None),
                  Phase("stimulus", self._steps(p.stimulus_ms), self._batch(current))]  # fmt: skip
        return self._run(phases, label, weights=weights, state=state)

    def _present(self, kind: str, label: str, current: torch.Tensor, **extra: Any) -> dict[str, Any]:
        started = time.perf_counter()
        recording = self._presentation(label, current)
        self.last = recording
        table, _ = self._responses(recording)
        for role, delay in self._min_delays(current).items():
            latency = table[role]["latency_ms"]
            table[role]["min_delay_ms"] = delay
            # a rise before any synaptic path could deliver the stimulus is not caused by it
            table[role]["latency_before_arrival"] = latency is not None and (delay is None or latency < delay)
        driven = int((current > 0).sum())
        return {"command": kind, **extra, "stimulus": label, "driven_neurons": driven, **self._window_info(),
                "roles": table, "wall_s": time.perf_counter() - started}  # fmt: skip

    def _window_info(self) -> dict[str, Any]:
        p = self.protocol
        return {"repeats": self.repeats, "baseline_ms": p.baseline_ms, "stimulus_ms": p.stimulus_ms,
                "amplitude_mv": p.amplitude_mv,
                "latency_rule": f"change point of the rate, when its cumulative excess over baseline exceeds "
                f"{LATENCY_SD:g} SD (noise from {p.latency_bin_ms:g} ms baseline bins)"}  # fmt: skip

    # ------------------------------------------------------------------------------------------ commands

    def look(self, pattern: str) -> dict[str, Any]:
        """Show an 8×8 pattern to the visual regions; per-role responses and latencies."""
        image = self._image(pattern)
        current = image_current(self.network, image, self.protocol.amplitude_mv)
        return self._present("look", f"pattern {pattern.upper()}", current, pattern=pattern.upper())

    def sound(self, hz: float) -> dict[str, Any]:
        """A tone of ``hz`` Hz into the auditory regions."""
        try:
            current = tone_current(self.network, hz, self.protocol.amplitude_mv)
        except ValueError as err:
            raise ConsoleError(str(err)) from None
        return self._present("sound", f"tone {hz:g} Hz", current, hz=hz)

    def touch(self, side: str) -> dict[str, Any]:
        """A touch on the ``left``/``right``/``both`` sides into the contralateral somatosensory regions."""
        try:
            current = touch_current(self.network, side, self.protocol.amplitude_mv)
        except ValueError as err:
            raise ConsoleError(str(err)) from None
        return self._present("touch", f"touch {side}", current, side=side)

    def _image(self, pattern: str) -> np.ndarray:
        try:
            return pattern_image(pattern)
        except ValueError as err:
            raise ConsoleError(str(err)) from None

    def _us_current(self) -> torch.Tensor:
        if US_ROLE not in self.network.roles:
            raise ConsoleError(f"the {self.config.connectome} connectome has no {US_ROLE} region for the US; "
                               "use tvb96 or tvb76")  # fmt: skip
        return role_current(self.network, US_ROLE, self.protocol.us_amplitude_mv)

    def rule_description(self) -> str:
        """The three-factor rule ``teach`` uses, in words."""
        pairs = ", ".join(f"{a} -> {b}" for a, b in PLASTIC_PAIRS)
        n = self._projection.n_synapses if self._projection is not None else 0
        return (f"reward-modulated STDP (three-factor: STDP tags x dopamine; Izhikevich 2007) on the {n} {pairs} "
                "synapses onto excitatory cells; dopamine pulse M = 1 at each US offset")  # fmt: skip

    def teach(self, pattern: str, pairings: int) -> dict[str, Any]:
        """Pair ``pattern`` (CS) with the US (amygdala input) ``pairings`` times under reward-modulated STDP."""
        image = self._image(pattern)
        if not isinstance(pairings, int) or not 1 <= pairings <= MAX_PAIRINGS:
            raise ConsoleError(f"N (pairings) must be between 1 and {MAX_PAIRINGS}, got {pairings!r}")
        us = self._us_current()
        projection = self._projection
        if projection is None:
            raise ConsoleError(f"no plastic synapses: {self._projection_error}")
        started = time.perf_counter()
        p, name = self.protocol, pattern.upper()
        cs = image_current(self.network, image, p.amplitude_mv)
        stdp = make_stdp_params(projection, self.dt_ms, StdpConfig(learning_rate=p.learning_rate))
        traces = init_stdp_traces(stdp, self.repeats)
        weights = self.brain.weights
        before = weights.index_select(0, projection.synapses).clone()
        dopamine = torch.ones(self.repeats, device=self.network.device)
        holder = {"traces": traces}

        def on_step(state) -> None:
            stdp_trace_step(stdp, holder["traces"], state.spikes)

        cs_steps, us_steps = self._steps(p.stimulus_ms), self._steps(p.us_ms)
        for _ in range(pairings):
            phases = [*self._rest_phase(), Phase("baseline", self._steps(p.baseline_ms), None),
                      Phase("stimulus", cs_steps - us_steps, self._batch(cs)),
                      Phase("stimulus", us_steps, self._batch(cs + us))]  # fmt: skip
            self.last = self._run(phases, f"pattern {name} + US (teach)", on_step=on_step)
            delta = modulated_update(stdp, holder["traces"], dopamine)
            apply_weight_update(weights, projection, delta)
            self.taught[name] = self.taught.get(name, 0) + 1
        after = weights.index_select(0, projection.synapses)
        change = (after - before).cpu().numpy()
        driven = (cs.index_select(0, projection.pre) > 0.5 * p.amplitude_mv).cpu().numpy()
        before_np = before.cpu().numpy()

        def group(mask: np.ndarray) -> dict[str, Any]:
            return {"synapses": int(mask.sum()), "mean_dw_mv": _finite(change[mask].mean()) if mask.any() else None,
                    "relative_change_pct": _finite(100 * change[mask].sum() / before_np[mask].sum())
                    if mask.any() else None}  # fmt: skip

        return {
            "command": "teach", "pattern": name, "pairings": pairings, "total_pairings": self.taught[name],
            "rule": self.rule_description(), "us": f"{p.us_amplitude_mv:g} mV into {US_ROLE} E cells for the last "
            f"{p.us_ms:g} ms of the {p.stimulus_ms:g} ms pattern", "learning_rate": p.learning_rate,
            "projection": {"pairs": [list(pair) for pair in projection.pairs], "synapses": projection.n_synapses,
                           "weight_before_mv": float(before_np.sum()), "weight_after_mv": float(after.sum())},
            "change": {"all": group(np.ones_like(driven)), "from_pattern_neurons": group(driven),
                       "from_other_neurons": group(~driven), "max_abs_dw_mv": float(np.abs(change).max())},
            "wall_s": time.perf_counter() - started,
        }  # fmt: skip

    def test(self) -> dict[str, Any]:
        """Amygdala responses to taught and untaught patterns, now and with the naive weights (paired)."""
        if not self.taught:
            raise ConsoleError("nothing taught yet: use teach PATTERN [N] first")
        started = time.perf_counter()
        taught = sorted(self.taught)
        untaught = [name for name in PROTOTYPE_NAMES if name not in taught]
        if not untaught:
            untaught = [name for name in DIGIT_NAMES if name not in taught][:2]
        us_index = self.roles.index(US_ROLE)
        rows, changes = [], {"taught": [], "untaught": []}
        for name in taught + untaught:
            current = image_current(self.network, pattern_image(name), self.protocol.amplitude_mv)
            rest = self._rest_phase()
            if rest:
                self._run(rest, "rest")
            snapshot = clone_state(self.state)
            now_rec = self._presentation(f"pattern {name} (test)", current, rest=False)
            naive_rec = self._presentation(f"pattern {name} (naive weights)", current, weights=self.naive_weights,
                                           state=snapshot, rest=False)  # fmt: skip
            self.last = now_rec
            now_table, now = self._responses(now_rec)
            naive_table, naive = self._responses(naive_rec)
            change = now[:, us_index] - naive[:, us_index]
            group = "taught" if name in self.taught else "untaught"
            changes[group].append(change)
            rows.append({"pattern": name, "taught_pairings": self.taught.get(name, 0),
                         "now_hz": now_table[US_ROLE]["response_hz"], "naive_hz": naive_table[US_ROLE]["response_hz"],
                         "change_hz": _ci(change), "visual_now_hz": now_table["visual"]["response_hz"]})  # fmt: skip
        taught_changes, untaught_changes = np.concatenate(changes["taught"]), np.concatenate(changes["untaught"])
        difference = float(taught_changes.mean() - untaught_changes.mean())
        p_value = _permutation_p(taught_changes, untaught_changes, seed=self.noise_seed)
        beyond = p_value < ALPHA
        direction = "more" if difference > 0 else "less"
        if beyond:
            verdict = (f"beyond the noise: the {US_ROLE} response to the taught pattern(s) changed by "
                       f"{abs(difference):.2f} Hz {direction} than to the untaught ones (permutation p = {p_value:.3g} "
                       f"< {ALPHA})")  # fmt: skip
        else:
            verdict = (f"NOT beyond the noise: teaching did not change the {US_ROLE} response to the taught "
                       f"pattern(s) measurably more than to the untaught ones (difference {difference:+.2f} Hz, "
                       f"permutation p = {p_value:.3g} >= {ALPHA})")  # fmt: skip
        return {"command": "test", "role": US_ROLE, "taught_change_hz": _ci(taught_changes),
                "untaught_change_hz": _ci(untaught_changes), "rule": self.rule_description(), **self._window_info(),
                "patterns": rows, "taught": taught, "untaught": untaught,
                "difference_hz": difference, "n_taught": int(taught_changes.size),
                "n_untaught": int(untaught_changes.size), "permutation_p": p_value, "beyond_noise": beyond,
                "verdict": verdict, "wall_s": time.perf_counter() - started}  # fmt: skip

    def memory(self, pattern: str, delay_ms: float) -> dict[str, Any]:
        """Show ``pattern``, remove it, and follow every role's rate in bins through ``delay_ms`` of delay."""
        image = self._image(pattern)
        bin_ms = self.protocol.memory_bin_ms
        if not (math.isfinite(delay_ms) and bin_ms <= delay_ms <= MAX_DELAY_MS):
            raise ConsoleError(f"DELAY_MS must be between {bin_ms:g} and {MAX_DELAY_MS:g} ms, got {delay_ms:g}")
        started = time.perf_counter()
        p, name = self.protocol, pattern.upper()
        current = image_current(self.network, image, p.amplitude_mv)
        bin_steps = self._steps(bin_ms)
        n_bins = math.ceil(round(delay_ms / self.dt_ms) / bin_steps)
        phases = [*self._rest_phase(), Phase("baseline", self._steps(p.baseline_ms), None),
                  Phase("stimulus", self._steps(p.stimulus_ms), self._batch(current)),
                  Phase("delay", self._steps(delay_ms), None)]  # fmt: skip
        recording = self._run(phases, f"pattern {name} then {delay_ms:g} ms delay (memory)")
        self.last = recording
        base = self._role_rates(recording, *recording.window("baseline"))
        stim = self._role_rates(recording, *recording.window("stimulus"))
        start, stop = recording.window("delay")
        bins = []
        for k in range(n_bins):
            lo, hi = start + k * bin_steps, min(stop, start + (k + 1) * bin_steps)
            rates = self._role_rates(recording, lo, hi) - base
            bins.append({"start_ms": (lo - start) * self.dt_ms, "stop_ms": (hi - start) * self.dt_ms,
                         "roles": {role: _ci(rates[:, j]) for j, role in enumerate(self.roles)}})  # fmt: skip
        nmda = ", ".join(self.config.nmda_roles) or "none"
        return {"command": "memory", "pattern": name, "delay_ms": delay_ms, "bin_ms": bin_ms, "role": MEMORY_ROLE,
                **self._window_info(), "nmda_roles": nmda, "tau_nmda_ms": self.config.tau_nmda_ms,
                "baseline_hz": {role: _ci(base[:, j]) for j, role in enumerate(self.roles)},
                "stimulus_response_hz": {role: _ci(stim[:, j] - base[:, j]) for j, role in enumerate(self.roles)},
                "bins": bins, "wall_s": time.perf_counter() - started}  # fmt: skip

    def status(self, window_ms: float | None = None) -> dict[str, Any]:
        """Run spontaneously (no input) for ``window_ms`` and return each role's rate (mean, CI over copies)."""
        window_ms = self.protocol.status_ms if window_ms is None else window_ms
        started = time.perf_counter()
        recording = self._run([Phase("spontaneous", self._steps(window_ms), None)], "spontaneous")
        wall = time.perf_counter() - started
        rates = self._role_rates(recording, 0, recording.counts.shape[0])
        overall = recording.counts.sum(axis=(0, 2)) / (self.network.n_neurons * window_ms * 1e-3)
        return {"command": "status", "window_ms": window_ms, "repeats": self.repeats,
                "roles": {role: _ci(rates[:, j]) for j, role in enumerate(self.roles)}, "all_hz": _ci(overall),
                "taught": dict(self.taught), "brain_time_s": self.state.step * self.dt_ms / 1000,
                "wall_s": wall, "speed_x_real_time": window_ms / 1000 / wall if wall > 0 else None}  # fmt: skip

    def raster(self, path: str | Path, vmax: float | None = None) -> dict[str, Any]:
        """Draw the last presentation's raster (copy 1) and region × time heatmap (mean of the copies)."""
        if self.last is None:
            raise ConsoleError("nothing presented yet: look, sound, touch, teach, test or memory first")
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ConsoleError(f"the raster file must end in .png, got {str(path)!r}")
        if not path.parent.exists():
            raise ConsoleError(f"folder {str(path.parent)!r} does not exist")
        recording = self.last
        onset, offset = recording.window("stimulus")
        bin_steps = self._steps(self.protocol.raster_bin_ms)
        n_bins = recording.counts.shape[0] // bin_steps
        counts = recording.counts[: n_bins * bin_steps].mean(axis=1)  # [T, R], mean of the copies
        binned = counts.reshape(n_bins, bin_steps, -1).sum(axis=1).T
        rates = binned / (self.network.neurons_per_region * bin_steps * self.dt_ms * 1e-3)
        dt_s = self.dt_ms / 1000
        record = ActivityRecord(
            raster_t_s=(recording.raster_steps + 1 - onset) * dt_s,
            raster_row=recording.raster_rows,
            sample_excitatory=self._raster_excitatory,
            per_region=int(self._raster_ids.numel()) // self.network.n_regions,
            region_rates_hz=rates,
            bin_ms=bin_steps * self.dt_ms,
            t0_s=-onset * dt_s,
        )
        title = (f"{recording.label}: {self.config.connectome}, {self.network.n_neurons} LIF neurons "
                 f"({self.config.neurons_per_region}/region), seed {self.config.seed}; raster: copy 1 of "
                 f"{self.repeats}; heatmap: mean of the {self.repeats} copies")  # fmt: skip
        tmp = path.with_name(f".{path.stem}.tmp.png")
        top = plot_activity(record, self.network.roles, tmp, title, stimulus_window_s=(0.0, (offset - onset) * dt_s),
                            vmax=vmax, time_label="time from stimulus onset (s)",
                            heatmap_label=f"region rate, {record.bin_ms:g} ms bins (Hz)")  # fmt: skip
        os.replace(tmp, path)
        return {"command": "raster", "path": str(path), "stimulus": recording.label, "vmax_hz": top,
                "raster_neurons": int(self._raster_ids.numel()), "bins_ms": record.bin_ms}  # fmt: skip

    # ------------------------------------------------------------------------------------------ bookkeeping

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this brain's network (a saved file must match it)."""
        config = dataclasses.asdict(self.config)
        for key in ("device", "backend"):
            config.pop(key)
        config["nmda_roles"] = list(config["nmda_roles"])
        return {**config, "n_neurons": self.network.n_neurons, "n_synapses": self.network.n_synapses}

    def save(self, path: str | Path) -> dict[str, Any]:
        """Write the weights and what was taught to ``path`` atomically (temp file + rename)."""
        path = Path(path)
        if not path.parent.exists():
            raise ConsoleError(f"folder {str(path.parent)!r} does not exist")
        if path.is_dir():
            raise ConsoleError(f"{str(path)!r} is a folder")
        payload = {"format": FILE_FORMAT, "fingerprint": self.fingerprint(), "weights": self.brain.weights.cpu(),
                   "taught": dict(self.taught), "noise_seed": self.noise_seed}  # fmt: skip
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(payload, stream)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return {"command": "save", "path": str(path), "taught": dict(self.taught), "bytes": path.stat().st_size}

    def load(self, path: str | Path) -> dict[str, Any]:
        """Replace the weights and what was taught by those saved in ``path`` (checked before anything changes)."""
        path = Path(path)
        if not path.is_file():
            raise ConsoleError(f"no such file: {str(path)!r}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # any unreadable file: a clear one-line refusal
            raise ConsoleError(f"{str(path)!r} is not a console save file ({type(err).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise ConsoleError(f"{str(path)!r} is not a console save file (format {FILE_FORMAT})")
        saved, ours = payload.get("fingerprint", {}), self.fingerprint()
        differences = [f"{key}={saved.get(key)!r} (this brain: {ours[key]!r})" for key in ours
                       if saved.get(key) != ours[key]]  # fmt: skip
        if differences:
            raise ConsoleError(f"refused: {str(path)!r} was saved from another brain: " + ", ".join(differences))
        weights = payload["weights"]
        if not isinstance(weights, torch.Tensor) or weights.shape != self.brain.weights.shape:
            raise ConsoleError(f"{str(path)!r} holds weights of the wrong shape")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ConsoleError(f"{str(path)!r} holds non-finite or negative weights")
        taught = payload.get("taught", {})
        self.brain.weights.copy_(weights.to(self.brain.weights.device))
        self.taught = {str(k): int(v) for k, v in taught.items()}
        return {"command": "load", "path": str(path), "taught": dict(self.taught)}

    def reset(self) -> dict[str, Any]:
        """Forget everything taught (weights back to the naive ones) and restart the activity."""
        self.brain.weights.copy_(self.naive_weights)
        self.taught = {}
        self.last = None
        self._new_state(self.noise_seed)
        return {"command": "reset", "noise_seed": self.noise_seed}

    def reseed(self, seed: int) -> dict[str, Any]:
        """New noise (initial state, background) from ``seed``; the wiring and what was taught stay."""
        self.noise_seed = seed
        self._new_state(seed)
        return {"command": "seed", "noise_seed": seed, "wiring_seed": self.config.seed}


def _plastic_projection(network, weights: torch.Tensor):
    """The synapses ``teach`` changes: those of :data:`PLASTIC_PAIRS` onto *excitatory* cells (the CS → principal
    cell synapses of conditioning; potentiating the feedforward synapses onto inhibitory cells would work against
    the response)."""
    pairs = select_projection(network, weights, PLASTIC_PAIRS, skip_empty=True)
    onto_excitatory = network.is_excitatory.index_select(0, pairs.post)
    if not bool(onto_excitatory.any()):
        raise ValueError(f"no {PLASTIC_PAIRS} synapses onto excitatory cells in this network")
    return projection_from_synapses(network, weights, pairs.synapses[onto_excitatory], pairs=pairs.pairs)


def onset_latencies(baseline: np.ndarray, evoked: np.ndarray, bin_steps: int) -> np.ndarray:
    """Onset (in steps after stimulus onset; NaN when no rise is found) of a rise of the rate ``evoked``
    ``[K, Te]`` (Hz per step from stimulus onset) above ``baseline`` ``[K, Tb]`` (Hz per step before it), for K
    series at once.

    Detection, by the cumulative sum (Ellaway 1978): C(t) = Σ_{s<t} (evoked(s) − mean baseline) is a random walk
    until a response starts and then climbs. Its noise comes from the baseline: bins of ``bin_steps`` steps have
    a rate SD σ, so C(t) has SD about σ · √(t · bin_steps). A rise is found when C(t) exceeds ``LATENCY_SD``
    times that SD at some t ≥ one bin. Onset, for a found rise: the change point L of a step in the mean from the
    baseline level, by maximum likelihood under Gaussian noise: L maximises S_L² / (Te − L) with
    S_L = Σ_{t≥L} (evoked(t) − mean baseline) > 0."""
    baseline, evoked = np.atleast_2d(baseline), np.atleast_2d(evoked)
    n_bins = baseline.shape[1] // bin_steps
    if n_bins < 2:
        raise ValueError("the baseline window must hold at least two latency bins")
    bins = baseline[:, : n_bins * bin_steps].reshape(baseline.shape[0], n_bins, bin_steps).mean(axis=2)
    sigma = np.maximum(bins.std(axis=1, ddof=1), 1e-9)
    excess = evoked - baseline.mean(axis=1, keepdims=True)
    t = np.arange(1, evoked.shape[1] + 1)
    crossed = (np.cumsum(excess, axis=1) > LATENCY_SD * sigma[:, None] * np.sqrt(t * bin_steps)) & (t >= bin_steps)
    after = np.cumsum(excess[:, ::-1], axis=1)[:, ::-1]  # S_L
    score = np.where(after > 0, after**2 / (evoked.shape[1] - np.arange(evoked.shape[1])), 0.0)
    return np.where(crossed.any(axis=1), np.argmax(score, axis=1).astype(float), np.nan)


def _permutation_p(x: np.ndarray, y: np.ndarray, seed: int, n_resamples: int = 9999) -> float:
    """Two-sided permutation p-value of mean(x) − mean(y) (scipy; exact when the sets are small)."""
    from scipy import stats

    def statistic(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    result = stats.permutation_test((x, y), statistic, permutation_type="independent", alternative="two-sided",
                                    n_resamples=n_resamples, vectorized=True, random_state=seed)  # fmt: skip
    return float(result.pvalue)
