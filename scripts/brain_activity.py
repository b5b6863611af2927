"""Run the spiking brain for a few seconds and draw what it does.

Writes a PNG with (top) a spike raster of a sample of excitatory (blue) and inhibitory (red) neurons sorted by
region, with the regions' roles marked, and (bottom) a region × time rate heatmap with its colour bar (``--vmax``
fixes the scale so that figures compare across runs); prints the mean rate per role (all neurons, and its
excitatory and inhibitory neurons apart) and the ISI CV. With ``--stimulus ROLE`` a
current step is injected into the excitatory neurons of that role's regions for a window (shaded in the figure).
The drawing is :func:`encephagen_gym.brain.figures.plot_activity`, shared with ``encephagen-console``'s
``raster``.

Usage::

    python scripts/brain_activity.py --seconds 3 --out brain_activity.png
    python scripts/brain_activity.py --stimulus visual --amplitude 12 --out visual.png
    python scripts/brain_activity.py --agent-brain --neurons-per-region 20 --brain pathway_j_mv=1.0  # BrainAgent's
    encephagen-brain-activity --help

``--agent-brain`` simulates the brain ``BrainAgent`` builds (routing pathways, ALIF association neurons: see
:func:`encephagen_gym.agents.policies.agent_brain_config`) instead of the plain connectome brain; ``--brain
KEY=VALUE`` sets any other :class:`~encephagen_gym.brain.BrainConfig` field (JSON values).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from encephagen_gym.brain import BrainConfig, SpikingBrain
from encephagen_gym.brain.figures import ActivityRecord, plot_activity, raster_sample
from encephagen_gym.brain.readout import RegionActivity
from encephagen_gym.scripts.record_video import parse_kwarg

__all__ = ["main", "record_activity"]


def record_activity(
    brain: SpikingBrain,
    seconds: float,
    stimulus_role: str | None,
    amplitude_mv: float,
    stimulus_window_s: tuple[float, float],
    raster_per_region: int,
    bin_ms: float,
    warmup_ms: float = 200.0,
    whole_run_counts: Sequence[RegionActivity] = (),
) -> ActivityRecord:
    """Simulate one brain; return the raster sample (E and I cells) and the binned region rates.

    Only the sampled raster neurons and per-region counts per bin are copied to the host (once per bin).
    ``whole_run_counts`` (accumulators of the brain, batch 1, e.g. its ``"excitatory"`` and ``"inhibitory"``
    neurons) also count every step's spikes after the warm-up.
    """
    net = brain.network
    state = brain.run(brain.initial_state(1), round(warmup_ms / brain.dt_ms))
    n_steps = round(seconds * 1000 / brain.dt_ms)
    bin_steps = max(1, round(bin_ms / brain.dt_ms))
    sample, sample_excitatory = raster_sample(net, raster_per_region)
    stimulus = None
    if stimulus_role is not None:
        stimulus = brain.input_for_roles(stimulus_role, amplitude_mv, 1)
    start, stop = (round(t * 1000 / brain.dt_ms) for t in stimulus_window_s)

    raster_t, raster_i, bins = [], [], []
    sample_spikes = torch.zeros((bin_steps, sample.numel()), device=brain.device)
    region_counts = brain.activity(1)
    for i in range(n_steps):
        current = stimulus if stimulus is not None and start <= i < stop else None
        state = brain.step(state, current)
        sample_spikes[i % bin_steps] = state.spikes[0].index_select(0, sample)
        region_counts.update(state.spikes)
        for counts in whole_run_counts:
            counts.update(state.spikes)
        if (i + 1) % bin_steps == 0:
            steps, neurons = torch.nonzero(sample_spikes, as_tuple=True)
            raster_t.append((steps.cpu().numpy() + i + 1 - bin_steps) * brain.dt_ms / 1000)
            raster_i.append(neurons.cpu().numpy())
            bins.append(region_counts.rates_hz()[0].cpu().numpy())
            region_counts.reset()
            sample_spikes.zero_()
    return ActivityRecord(
        raster_t_s=np.concatenate(raster_t) if raster_t else np.zeros(0),
        raster_row=np.concatenate(raster_i) if raster_i else np.zeros(0, dtype=np.int64),
        sample_excitatory=sample_excitatory,
        per_region=int(sample.numel()) // net.n_regions,
        region_rates_hz=np.stack(bins, axis=1),  # [R, n_bins] Hz
        bin_ms=bin_steps * brain.dt_ms,
    )


def _sampled_cv_by_region(record: ActivityRecord, n_regions: int) -> list[np.ndarray]:
    """ISI coefficients of variation of the raster's sampled neurons (>= 5 spikes), grouped by region."""
    order = np.lexsort((record.raster_t_s, record.raster_row))
    neurons, times = record.raster_row[order], record.raster_t_s[order]
    cvs: list[list[float]] = [[] for _ in range(n_regions)]
    for neuron in np.unique(neurons):
        spikes = times[neurons == neuron]
        if len(spikes) >= 5:
            isi = np.diff(spikes)
            cvs[int(neuron) // record.per_region].append(float(isi.std() / isi.mean()))
    return [np.array(values) for values in cvs]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Simulate the connectome spiking brain and plot a raster and a region-rate heatmap.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=3.0, help="simulated seconds (after a 200 ms warm-up), > 0")
    add("--neurons-per-region", type=int, default=200, help="neurons per region (>= 2)")
    add("--connectome", default="tvb96", help="connectome name, e.g. tvb96 or tvb96:rewired:3")
    add("--dt", type=float, default=None, help="time step in ms (default: the brain's default)")
    add("--seed", type=int, default=0, help="wiring and noise seed")
    add("--stimulus", default=None, help="role to stimulate (e.g. visual, auditory, prefrontal)")
    add("--amplitude", type=float, default=12.0, help="stimulus current in mV")
    add("--stimulus-start", type=float, default=1.0, help="stimulus onset in s (within the run)")
    add("--stimulus-stop", type=float, default=1.5, help="stimulus offset in s (after the onset, within the run)")
    add("--raster-per-region", type=int, default=10, help="neurons per region shown in the raster (E and I)")
    add("--bin-ms", type=float, default=20.0, help="heatmap bin width in ms")
    add(
        "--vmax",
        type=float,
        default=None,
        help="top of the heatmap colour scale in Hz (fixed, to compare figures across runs; default: the data's max)",
    )
    add("--agent-brain", action="store_true", help="BrainAgent's brain (routing pathways, ALIF association neurons)")
    add("--brain", type=parse_kwarg, nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="other BrainConfig fields, e.g. pathway_j_mv=1.0 adaptation_mv=0.5")  # fmt: skip
    add("--device", default="auto", help="cpu, cuda or auto")
    add("--threads", type=int, default=1, help="torch intra-op CPU threads")
    add("--out", type=Path, default=Path("brain_activity.png"), help="PNG file to write")
    args = parser.parse_args(argv)
    _check_args(parser, args)
    return args


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values that would fail later or draw nonsense (argparse error: message and exit status 2)."""

    def finite(value: float) -> bool:
        return math.isfinite(value)

    if not (finite(args.seconds) and args.seconds > 0):
        parser.error(f"--seconds must be a positive number of seconds, got {args.seconds:g}")
    if args.neurons_per_region < 2:
        parser.error(f"--neurons-per-region must be >= 2, got {args.neurons_per_region}")
    if args.dt is not None and not (finite(args.dt) and 0 < args.dt <= 1.0):
        parser.error(f"--dt must be in (0, 1] ms, got {args.dt:g}")
    if not finite(args.amplitude):
        parser.error(f"--amplitude must be a finite number of mV, got {args.amplitude:g}")
    start, stop = args.stimulus_start, args.stimulus_stop
    if not (finite(start) and finite(stop)):
        parser.error("--stimulus-start and --stimulus-stop must be finite numbers of seconds")
    if start >= stop:
        parser.error(f"--stimulus-start ({start:g} s) must be before --stimulus-stop ({stop:g} s)")
    if args.stimulus is not None and not (start >= 0 and stop <= args.seconds):
        parser.error(f"the stimulus window {start:g}-{stop:g} s must lie within the run (0-{args.seconds:g} s)")
    if args.raster_per_region < 1:
        parser.error(f"--raster-per-region must be >= 1, got {args.raster_per_region}")
    if not (finite(args.bin_ms) and args.bin_ms > 0) or args.bin_ms > args.seconds * 1000:
        parser.error(f"--bin-ms must be a positive number of ms no longer than the run, got {args.bin_ms:g}")
    if args.vmax is not None and not (finite(args.vmax) and args.vmax > 0):
        parser.error(f"--vmax must be a positive number of Hz, got {args.vmax:g}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must name a .png file, got {str(args.out)!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``encephagen-brain-activity``."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    fields = dict(connectome=args.connectome, neurons_per_region=args.neurons_per_region, seed=args.seed,
                  device=args.device)  # fmt: skip
    if args.dt is not None:
        fields["dt_ms"] = args.dt
    given_twice = sorted(set(fields) & set(dict(args.brain)))
    if given_twice:
        raise SystemExit(f"brain_activity.py: {given_twice} given both as an option and in --brain")
    fields.update(dict(args.brain))
    try:
        if args.agent_brain:
            from encephagen_gym.agents.policies import agent_brain_config

            config = agent_brain_config(**fields)
        else:
            config = BrainConfig(**fields)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"brain_activity.py: bad brain option: {error}") from None
    brain = SpikingBrain(config)
    roles = brain.network.roles
    if args.stimulus is not None and args.stimulus not in roles:
        raise SystemExit(f"unknown role {args.stimulus!r}; roles of {args.connectome}: {sorted(set(roles))}")
    window_s = (args.stimulus_start, args.stimulus_stop)
    by_type = (brain.activity(1, "excitatory"), brain.activity(1, "inhibitory"))
    record = record_activity(brain, args.seconds, args.stimulus, args.amplitude, window_s, args.raster_per_region,
                             args.bin_ms, whole_run_counts=by_type)  # fmt: skip
    window = f"{args.stimulus_start:g}-{args.stimulus_stop:g} s"
    stim = f", {args.amplitude:g} mV into {args.stimulus} E cells {window}" if args.stimulus else ""
    kind = "the agent's brain, " if args.agent_brain else ""
    title = (f"{config.connectome}: {kind}{brain.n_neurons} LIF neurons ({config.neurons_per_region}/region), "
             f"dt {config.dt_ms:g} ms{stim or ', spontaneous'}; one brain")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_activity(record, roles, args.out, title, stimulus_window_s=window_s if args.stimulus else None,
                  stimulus_label=f"{args.stimulus} stimulus", vmax=args.vmax, time_label="time after warm-up (s)",
                  heatmap_label=f"region rate in {record.bin_ms:g} ms bins (Hz)")  # fmt: skip

    rates = record.region_rates_hz  # [R, bins]
    bin_times = (np.arange(rates.shape[1]) + 0.5) * record.bin_ms / 1000
    in_stimulus = (bin_times >= args.stimulus_start) & (bin_times < args.stimulus_stop)
    print(f"{title}\nwrote {args.out}")
    cv_by_region = _sampled_cv_by_region(record, len(roles))
    exc_rates, inh_rates = (counts.rates_hz()[0].cpu().numpy() for counts in by_type)  # [R] Hz, whole run
    header = f"{'role':15s} {'regions':>7s} {'rate Hz':>8s} {'E Hz':>7s} {'I Hz':>7s} {'ISI CV':>7s}"
    if args.stimulus:
        header += f" {'outside stim':>12s} {'during stim':>11s}"
    print(header)
    for role in sorted(set(roles)):
        index = [r for r, name in enumerate(roles) if name == role]
        role_cvs = np.concatenate([cv_by_region[r] for r in index])
        cv = f"{np.median(role_cvs):7.2f}" if len(role_cvs) else f"{'n/a':>7s}"
        line = (f"{role:15s} {len(index):7d} {rates[index].mean():8.2f} {exc_rates[index].mean():7.2f} "
                f"{inh_rates[index].mean():7.2f} {cv}")  # fmt: skip
        if args.stimulus:
            outside, during = rates[index][:, ~in_stimulus].mean(), rates[index][:, in_stimulus].mean()
            line += f" {outside:12.2f} {during:11.2f}"
        print(line)
    all_cvs = np.concatenate(cv_by_region)
    median_cv = np.median(all_cvs) if len(all_cvs) else float("nan")
    print(f"{'all':15s} {len(roles):7d} {rates.mean():8.2f} {exc_rates.mean():7.2f} {inh_rates.mean():7.2f} "
          f"{median_cv:7.2f}")  # fmt: skip
    print(
        "rates: all neurons of each region (E Hz, I Hz: its excitatory and inhibitory neurons over the whole run); "
        "ISI CV: median over the raster's sampled neurons (E and I) with >= 5 spikes"
        + (" (whole run, stimulus included)" if args.stimulus else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
