"""Run the spiking brain for a few seconds and draw what it does.

Writes a PNG with (top) a spike raster of a sample of neurons sorted by region, with the regions' roles
marked, and (bottom) a region × time rate heatmap; prints the mean rate per role. With ``--stimulus ROLE``
a current step is injected into the excitatory neurons of that role's regions for a window in the middle.

Usage::

    python scripts/brain_activity.py --seconds 3 --out brain_activity.png
    python scripts/brain_activity.py --stimulus visual --amplitude 12 --out visual.png
    encephagen-brain-activity --help
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from encephagen_gym.brain import BrainConfig, SpikingBrain

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
) -> dict[str, np.ndarray]:
    """Simulate one brain; return raster samples, binned region rates and per-role rates.

    Only the sampled raster neurons and per-region counts per bin are copied to the host (once per bin).
    """
    net = brain.network
    state = brain.run(brain.initial_state(1), round(warmup_ms / brain.dt_ms))
    n_steps = round(seconds * 1000 / brain.dt_ms)
    bin_steps = max(1, round(bin_ms / brain.dt_ms))
    per_region = min(raster_per_region, net.neurons_per_region)
    sample = torch.cat([net.neurons_of_regions([r])[:per_region] for r in range(net.n_regions)])
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
        if (i + 1) % bin_steps == 0:
            steps, neurons = torch.nonzero(sample_spikes, as_tuple=True)
            raster_t.append((steps.cpu().numpy() + i + 1 - bin_steps) * brain.dt_ms / 1000)
            raster_i.append(neurons.cpu().numpy())
            bins.append(region_counts.rates_hz()[0].cpu().numpy())
            region_counts.reset()
            sample_spikes.zero_()
    return {
        "raster_t": np.concatenate(raster_t) if raster_t else np.zeros(0),
        "raster_i": np.concatenate(raster_i) if raster_i else np.zeros(0, dtype=int),
        "region_rates": np.stack(bins, axis=1),  # [R, n_bins] Hz
        "per_region": np.array(per_region),
    }


def _sampled_cv_by_region(activity: dict[str, np.ndarray], n_regions: int) -> list[np.ndarray]:
    """ISI coefficients of variation of the raster's sampled neurons (>= 5 spikes), grouped by region."""
    per_region = int(activity["per_region"])
    order = np.lexsort((activity["raster_t"], activity["raster_i"]))
    neurons, times = activity["raster_i"][order], activity["raster_t"][order]
    cvs: list[list[float]] = [[] for _ in range(n_regions)]
    for neuron in np.unique(neurons):
        spikes = times[neurons == neuron]
        if len(spikes) >= 5:
            isi = np.diff(spikes)
            cvs[int(neuron) // per_region].append(float(isi.std() / isi.mean()))
    return [np.array(values) for values in cvs]


def _role_order(roles: Sequence[str]) -> np.ndarray:
    """Region order for plotting: grouped by role (alphabetical), file order within a role."""
    return np.array(sorted(range(len(roles)), key=lambda r: (roles[r], r)))


def plot_activity(
    activity: dict[str, np.ndarray], roles: Sequence[str], seconds: float, title: str, path: Path
) -> None:
    """Draw the raster and heatmap into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = _role_order(roles)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    per_region = int(activity["per_region"])
    region_of_sample = activity["raster_i"] // per_region
    y = rank[region_of_sample] * per_region + activity["raster_i"] % per_region

    fig, (ax_raster, ax_heat) = plt.subplots(
        2, 1, figsize=(12, 10), sharex=True, height_ratios=[1.2, 1.0], layout="constrained"
    )
    ax_raster.scatter(activity["raster_t"], y, s=0.6, c="black", marker="|", linewidths=0.4)
    ax_raster.set_ylim(len(roles) * per_region - 0.5, -0.5)  # top to bottom, like the heatmap
    ax_raster.set_ylabel(f"neurons ({per_region} per region, sorted by role)")
    rates = activity["region_rates"][order]
    extent = (0.0, seconds, len(roles) - 0.5, -0.5)
    image = ax_heat.imshow(rates, aspect="auto", cmap="magma", extent=extent, interpolation="nearest")
    fig.colorbar(image, ax=[ax_raster, ax_heat], label="region rate (Hz)", pad=0.01, fraction=0.03)
    ax_heat.set_ylabel("region (sorted by role)")
    ax_heat.set_xlabel("time (s)")
    # role bands and labels on both panels
    sorted_roles = [roles[r] for r in order]
    boundaries = [i for i in range(1, len(sorted_roles)) if sorted_roles[i] != sorted_roles[i - 1]]
    starts = [0, *boundaries]
    ends = [*boundaries, len(sorted_roles)]
    for axis, scale, offset in ((ax_raster, per_region, 0.5), (ax_heat, 1, 0.0)):
        for b in boundaries:
            axis.axhline(b * scale - offset, color="tab:cyan", lw=0.6)
        axis.set_yticks([(s + e) / 2 * scale - offset for s, e in zip(starts, ends, strict=True)])
        axis.set_yticklabels([sorted_roles[s] for s in starts], fontsize=7)
    ax_raster.set_title(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Simulate the connectome spiking brain and plot a raster and a region-rate heatmap.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--seconds", type=float, default=3.0, help="simulated seconds (after a 200 ms warm-up)")
    add("--neurons-per-region", type=int, default=200, help="neurons per region")
    add("--connectome", default="tvb96", help="connectome name, e.g. tvb96 or tvb96:rewired:3")
    add("--dt", type=float, default=None, help="time step in ms (default: the brain's default)")
    add("--seed", type=int, default=0, help="wiring and noise seed")
    add("--stimulus", default=None, help="role to stimulate (e.g. visual, auditory, prefrontal)")
    add("--amplitude", type=float, default=12.0, help="stimulus current in mV")
    add("--stimulus-start", type=float, default=1.0, help="stimulus onset in s")
    add("--stimulus-stop", type=float, default=1.5, help="stimulus offset in s")
    add("--raster-per-region", type=int, default=10, help="neurons per region shown in the raster")
    add("--bin-ms", type=float, default=20.0, help="heatmap bin width in ms")
    add("--device", default="auto", help="cpu, cuda or auto")
    add("--threads", type=int, default=1, help="torch intra-op CPU threads")
    add("--out", type=Path, default=Path("brain_activity.png"), help="PNG file to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``encephagen-brain-activity``."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    overrides = {} if args.dt is None else {"dt_ms": args.dt}
    config = BrainConfig(
        connectome=args.connectome,
        neurons_per_region=args.neurons_per_region,
        seed=args.seed,
        device=args.device,
        **overrides,
    )
    brain = SpikingBrain(config)
    roles = brain.network.roles
    if args.stimulus is not None and args.stimulus not in roles:
        raise SystemExit(f"unknown role {args.stimulus!r}; roles of {args.connectome}: {sorted(set(roles))}")
    activity = record_activity(
        brain, args.seconds, args.stimulus, args.amplitude, (args.stimulus_start, args.stimulus_stop),
        args.raster_per_region, args.bin_ms,
    )  # fmt: skip
    window = f"{args.stimulus_start:g}-{args.stimulus_stop:g} s"
    stim = f", {args.amplitude:g} mV into {args.stimulus} E cells {window}" if args.stimulus else ""
    title = (f"{config.connectome}: {brain.n_neurons} LIF neurons ({config.neurons_per_region}/region), "
             f"dt {config.dt_ms:g} ms{stim or ', spontaneous'}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_activity(activity, roles, args.seconds, title, args.out)

    rates = activity["region_rates"]  # [R, bins]
    bin_times = (np.arange(rates.shape[1]) + 0.5) * args.bin_ms / 1000
    in_stimulus = (bin_times >= args.stimulus_start) & (bin_times < args.stimulus_stop)
    print(f"{title}\nwrote {args.out}")
    cv_by_region = _sampled_cv_by_region(activity, len(roles))
    header = f"{'role':15s} {'regions':>7s} {'rate Hz':>8s} {'ISI CV':>7s}"
    if args.stimulus:
        header += f" {'outside stim':>12s} {'during stim':>11s}"
    print(header)
    for role in sorted(set(roles)):
        index = [r for r, name in enumerate(roles) if name == role]
        role_cvs = np.concatenate([cv_by_region[r] for r in index])
        cv = f"{np.median(role_cvs):7.2f}" if len(role_cvs) else f"{'n/a':>7s}"
        line = f"{role:15s} {len(index):7d} {rates[index].mean():8.2f} {cv}"
        if args.stimulus:
            outside, during = rates[index][:, ~in_stimulus].mean(), rates[index][:, in_stimulus].mean()
            line += f" {outside:12.2f} {during:11.2f}"
        print(line)
    all_cvs = np.concatenate(cv_by_region)
    median_cv = np.median(all_cvs) if len(all_cvs) else float("nan")
    print(f"{'all':15s} {len(roles):7d} {rates.mean():8.2f} {median_cv:7.2f}")
    print(
        "rates: all neurons of each region; ISI CV: median over the raster's sampled neurons with >= 5 spikes"
        + (" (whole run, stimulus included)" if args.stimulus else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
