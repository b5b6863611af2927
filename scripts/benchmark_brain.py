"""Speed of the spiking brain simulator, and the choice of the default dt.

Prints a table of wall-clock seconds per simulated second (plus steps/s, synaptic events/s and memory) for
each combination of brain size, batch size, dt, device and learning (off / on); CUDA rows (up to batch 256)
are added when a GPU is present. ``--dt-check`` instead compares spontaneous rates and ISI CVs across dt
values against dt = 0.1 ms (the criterion for the default dt: mean rates within 15 %).

Learning on (``eprop``) is the online reward-based e-prop workload of a BrainAgent: every simulation step
the e-prop eligibility traces of the default plastic projections
(:data:`~encephagen_gym.plasticity.DEFAULT_PLASTIC_PAIRS`) and the readout trace of a 2-action
actor-critic readout (motor + premotor excitatory neurons) are updated; every 10 ms (an environment step)
the readout is evaluated, an action sampled, the decision recorded and a TD update applied to the weights.
The learning-off and learning-on windows of one configuration are timed alternately on the same brain, and
``vs off`` is the ratio of their wall times; ``trace MB/elem`` is the learning state per batch element.

Usage::

    python scripts/benchmark_brain.py                     # the full table (a few minutes on 2 cores)
    python scripts/benchmark_brain.py --sizes 20 --batches 1
    python scripts/benchmark_brain.py --sizes 200 --dts 1 --backends numba --numba-threads 1 2
    python scripts/benchmark_brain.py --sizes 200 --learning off eprop --repeats 5   # learning cost
    python scripts/benchmark_brain.py --dt-check          # default-dt evidence
    encephagen-benchmark-brain --help
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

from encephagen_gym.brain import DEFAULT_DT_MS, BrainConfig, SpikingBrain
from encephagen_gym.brain.decoders import ActorCriticReadout
from encephagen_gym.plasticity import (
    DEFAULT_PLASTIC_PAIRS,
    Decision,
    LearningSignal,
    ReadoutActorCritic,
    RewardEProp,
    TDErrorScaler,
    select_projection,
    td_error,
)

__all__ = ["benchmark_row", "benchmark_rows", "dt_check", "main", "trace_bytes_per_element"]

LEARNING_MODES = ("off", "eprop")
ENV_STEP_MS = 10.0


def _tensor_bytes(*objects: object) -> int:
    total = 0
    for obj in objects:
        values = obj._asdict().values() if hasattr(obj, "_asdict") else [obj]
        for value in values:
            if isinstance(value, torch.Tensor) and value.is_contiguous() and value._base is None:
                total += value.nbytes
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trace_bytes_per_element(rule: RewardEProp) -> int:
    """Bytes of learning state that grow with the batch, per batch element (traces at B=2 minus B=1)."""

    def nbytes(obj: object) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.nbytes
        if isinstance(obj, tuple | list):
            return sum(nbytes(item) for item in obj)
        if dataclasses.is_dataclass(obj):
            return sum(nbytes(getattr(obj, field.name)) for field in dataclasses.fields(obj))
        return 0

    return nbytes(rule.init_traces(2)) - nbytes(rule.init_traces(1))


class _Learner:
    """The per-step work of online reward-based e-prop with a learning readout (see the module docstring)."""

    def __init__(self, brain: SpikingBrain, batch: int) -> None:
        net = brain.network
        projection = select_projection(net, brain.weights, DEFAULT_PLASTIC_PAIRS, skip_empty=True)
        self.readout = ActorCriticReadout(net, 2)
        self.rule = RewardEProp(net, projection, self.readout, learning_rate=1e-3)
        self.rules = (ReadoutActorCritic(self.readout), self.rule)
        self.traces = [rule.init_traces(batch) for rule in self.rules]
        self.z_bar = self.readout.init_trace(batch)
        self.scaler = TDErrorScaler(device=brain.device)
        self.brain = brain
        self.env_steps = brain.substeps(ENV_STEP_MS)
        self.previous = None
        self.zeros = torch.zeros(batch, device=brain.device)

    def on_step(self, i: int, state) -> None:
        self.readout.filter_spikes(self.z_bar, state.spikes)
        for rule, trace in zip(self.rules, self.traces, strict=True):
            rule.step(trace, state)
        if (i + 1) % self.env_steps:
            return
        out = self.readout(self.z_bar)
        if self.previous is not None:
            delta = td_error(self.zeros, self.zeros, self.previous.value, out.value, 0.99)
            signal = LearningSignal(td_error=delta, modulator=self.scaler.scale(delta), done=self.zeros)
            for rule, trace in zip(self.rules, self.traces, strict=True):
                rule.apply(self.brain.weights, trace, signal)
        decision = Decision(out, self.readout.sample(out), self.z_bar)
        for rule, trace in zip(self.rules, self.traces, strict=True):
            rule.record_decision(trace, decision)
        self.previous = out


def benchmark_rows(
    neurons_per_region: int,
    batch: int,
    dt_ms: float,
    device: str,
    sim_ms: float,
    warmup_ms: float,
    repeats: int,
    learning: Sequence[str] = ("off",),
    statistic: str = "median",
    backend: str = "auto",
) -> list[dict[str, float | int | str]]:
    """Time one configuration with each learning mode (timed windows alternate between the modes); one
    row per mode with the ``statistic`` ("median" or "min") of ``repeats`` windows. ``backend``: the
    simulator backend (``BrainConfig.backend``)."""
    unknown = [mode for mode in learning if mode not in LEARNING_MODES]
    if unknown or not learning:
        raise ValueError(f"learning modes must be among {LEARNING_MODES}, got {list(learning)}")
    config = BrainConfig(neurons_per_region=neurons_per_region, dt_ms=dt_ms, device=device, backend=backend)
    brain = SpikingBrain(config)
    dev = brain.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    state = brain.initial_state(batch)
    state = brain.run(state, round(warmup_ms / dt_ms))
    n_steps = max(1, round(sim_ms / dt_ms))
    n_steps = max(n_steps - n_steps % brain.substeps(ENV_STEP_MS), brain.substeps(ENV_STEP_MS))
    learner = _Learner(brain, batch) if "eprop" in learning else None
    counts = torch.zeros((batch, brain.n_neurons), device=dev)
    walls: dict[str, list[float]] = {mode: [] for mode in learning}
    spikes: dict[str, float] = dict.fromkeys(learning, 0.0)
    events: dict[str, float] = dict.fromkeys(learning, 0.0)
    out_degree = brain.network.out_degree.to(counts.dtype)
    for _ in range(repeats):
        for mode in learning:
            counts.zero_()

            def on_step(i: int, s, counts=counts, mode=mode) -> None:
                counts.add_(s.spikes)
                if mode == "eprop":
                    learner.on_step(i, s)

            _sync(dev)
            start = time.perf_counter()
            state = brain.run(state, n_steps, on_step=on_step)
            _sync(dev)
            walls[mode].append(time.perf_counter() - start)
            spikes[mode] += float(counts.sum())
            events[mode] += float((counts.sum(0) * out_degree).sum())
    sim_s = n_steps * dt_ms * 1e-3
    pick = np.median if statistic == "median" else np.min
    memory = (
        torch.cuda.max_memory_allocated(dev) / 2**20
        if dev.type == "cuda"
        else _tensor_bytes(brain.network, state, brain.weights) / 2**20
    )
    rows = []
    for mode in learning:
        wall = float(pick(walls[mode]))
        trace_mb = trace_bytes_per_element(learner.rule) / 2**20 if mode == "eprop" else 0.0
        rows.append({
            "device": dev.type,
            "backend": state.backend,
            "threads": _threads(state.backend),
            "neurons": f"96x{neurons_per_region}",
            "N": brain.n_neurons,
            "synapses": brain.network.n_synapses,
            "batch": batch,
            "dt_ms": dt_ms,
            "learning": mode,
            "plastic": learner.rule.projection.n_synapses if mode == "eprop" else 0,
            "wall_per_sim_s": wall / sim_s,
            "steps_per_s": n_steps / wall,
            "events_per_s": events[mode] / repeats / float(np.mean(walls[mode])),
            "rate_hz": spikes[mode] / repeats / (batch * brain.n_neurons * sim_s),
            "memory_mb": memory,
            "trace_mb": trace_mb,
        })  # fmt: skip
    off = next((row for row in rows if row["learning"] == "off"), None)
    for row in rows:
        row["vs_off"] = row["wall_per_sim_s"] / off["wall_per_sim_s"] if off else float("nan")
    return rows


def _threads(backend: str) -> int:
    torch_threads = torch.get_num_threads()
    if backend == "numba":
        import numba

        threads = numba.get_num_threads()  # may start numba's OpenMP pool, which resets torch's count
        torch.set_num_threads(torch_threads)
        return threads
    return torch_threads


def benchmark_row(
    neurons_per_region: int,
    batch: int,
    dt_ms: float,
    device: str,
    sim_ms: float,
    warmup_ms: float,
    repeats: int,
    learning: str = "off",
) -> dict[str, float | int | str]:
    """Time one configuration with one learning mode (see :func:`benchmark_rows`)."""
    rows = benchmark_rows(neurons_per_region, batch, dt_ms, device, sim_ms, warmup_ms, repeats, (learning,))
    return rows[0]


def dt_check(
    neurons_per_region: int, dts: Sequence[float], sim_ms: float, warmup_ms: float, batch: int, device: str
) -> list[dict[str, float]]:
    """Spontaneous rate and ISI CV of the same brain (same seed) at each dt."""
    rows = []
    for dt in dts:
        brain = SpikingBrain(BrainConfig(neurons_per_region=neurons_per_region, dt_ms=dt, device=device))
        state = brain.run(brain.initial_state(batch), round(warmup_ms / dt))
        n_steps = round(sim_ms / dt)
        last = torch.full((batch, brain.n_neurons), float("nan"), device=brain.device)
        isi_sum = torch.zeros_like(last)
        isi_sq = torch.zeros_like(last)
        isi_n = torch.zeros_like(last)

        def accumulate(i: int, s, last=last, isi_sum=isi_sum, isi_sq=isi_sq, isi_n=isi_n) -> None:
            spiking = s.spikes > 0
            isi = i - last  # in steps
            valid = spiking & ~torch.isnan(last)
            isi_sum.add_(torch.where(valid, isi, 0.0))
            isi_sq.add_(torch.where(valid, isi * isi, 0.0))
            isi_n.add_(valid.float())
            last.copy_(torch.where(spiking, float(i), last))

        state = brain.run(state, n_steps, on_step=accumulate)
        visual = brain.activity(batch)
        stimulus = brain.input_for_roles("visual", 12.0, batch)
        brain.run(state, round(200.0 / dt), stimulus, readout=visual)
        visual_regions = torch.as_tensor(brain.network.connectome.regions_with_role("visual"))
        rates = (isi_n + (~torch.isnan(last)).float()) / (sim_ms * 1e-3)
        ok = isi_n >= 4
        mean = isi_sum[ok] / isi_n[ok]
        cv = torch.sqrt(torch.clamp(isi_sq[ok] / isi_n[ok] - mean**2, min=0.0)) / mean
        exc = brain.network.is_excitatory
        rows.append({
            "dt_ms": dt,
            "rate_hz": rates.mean().item(),
            "rate_exc_hz": rates[:, exc].mean().item(),
            "rate_inh_hz": rates[:, ~exc].mean().item(),
            "cv_median": cv.median().item() if cv.numel() else float("nan"),
            "evoked_visual_hz": visual.rates_hz()[:, visual_regions.to(brain.device)].mean().item(),
            "evoked_all_hz": visual.rates_hz().mean().item(),
        })  # fmt: skip
    return rows


def _print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned table; ``columns`` are (title, key, format spec)."""
    cells = [[format(row[key], fmt) for _, key, fmt in columns] for row in rows]
    widths = [max([len(title)] + [len(line[i]) for line in cells]) for i, (title, _, _) in enumerate(columns)]
    print(" | ".join(title.rjust(width) for (title, _, _), width in zip(columns, widths, strict=True)))
    print("-+-".join("-" * width for width in widths))
    for line in cells:
        print(" | ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def _backends(requested: Sequence[str] | None, device: str) -> list[str]:
    if device.startswith("cuda"):
        return ["torch"]
    return list(requested) if requested else ["numba", "torch"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the connectome spiking brain (wall s per simulated s) or compare dt values.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--sizes", type=int, nargs="+", default=[20, 50, 200], help="neurons per region")
    add("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes (CPU)")
    add("--cuda-batches", type=int, nargs="+", default=[1, 16, 64, 256], help="batches (CUDA)")
    add("--dts", type=float, nargs="+", default=[0.1, DEFAULT_DT_MS], help="time steps in ms")
    add("--devices", nargs="+", default=None, help="devices (default: cpu, and cuda if present)")
    add("--sim-ms", type=float, default=500.0, help="simulated ms per timed window")
    add("--warmup-ms", type=float, default=100.0, help="simulated ms before timing")
    add("--repeats", type=int, default=2, help="timed windows per row")
    add("--stat", choices=["median", "min"], default="median", help="statistic over the timed windows")
    add(
        "--learning",
        nargs="+",
        choices=LEARNING_MODES,
        default=list(LEARNING_MODES),
        help="learning off and/or on (online reward-based e-prop on the default plastic projections)",
    )
    add(
        "--backends",
        nargs="+",
        choices=["torch", "numba"],
        default=None,
        help="simulator backends (default: numba and torch on CPU, torch on CUDA)",
    )
    add("--threads", type=int, default=1, help="torch intra-op CPU threads")
    add("--numba-threads", type=int, default=None, help="numba threads (default: all cores)")
    add("--dt-check", action="store_true", help="compare rates across dt instead of timing")
    add("--check-dts", type=float, nargs="+", default=[0.1, 0.25, 0.5, 1.0], help="dts compared")
    add("--check-size", type=int, default=200, help="neurons per region for --dt-check")
    add("--check-ms", type=float, default=2000.0, help="simulated ms per dt for --dt-check")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``encephagen-benchmark-brain``."""
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    if args.numba_threads is not None:
        import numba

        numba.set_num_threads(args.numba_threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, torch CPU threads {torch.get_num_threads()}, devices {devices}")
    if args.dt_check:
        rows = dt_check(args.check_size, args.check_dts, args.check_ms, 200.0, 1, devices[0])
        reference = rows[0]["rate_hz"]
        for row in rows:
            row["rate_vs_ref_pct"] = 100.0 * (row["rate_hz"] - reference) / reference
        print(f"Spontaneous activity of the 96x{args.check_size} brain, {args.check_ms:.0f} ms, same seed; "
              f"reference dt = {rows[0]['dt_ms']} ms; then 200 ms of 12 mV into visual excitatory neurons "
              "(evoked rates)")  # fmt: skip
        columns = [("dt ms", "dt_ms", ".2f"), ("rate Hz", "rate_hz", ".2f"), ("E Hz", "rate_exc_hz", ".2f"),
                   ("I Hz", "rate_inh_hz", ".2f"), ("vs ref %", "rate_vs_ref_pct", "+.1f"),
                   ("ISI CV", "cv_median", ".2f"), ("evoked visual Hz", "evoked_visual_hz", ".2f"),
                   ("evoked all Hz", "evoked_all_hz", ".2f")]  # fmt: skip
        _print_table(rows, columns)
        return 0
    rows = []
    for device in devices:
        batches = args.cuda_batches if device.startswith("cuda") else args.batches
        for size in args.sizes:
            for batch in batches:
                for dt in args.dts:
                    for backend in _backends(args.backends, device):
                        measured = benchmark_rows(size, batch, dt, device, args.sim_ms, args.warmup_ms,
                                                  args.repeats, args.learning, args.stat, backend)  # fmt: skip
                        rows.extend(measured)
                        for row in measured:
                            print(f"  measured {row['device']} {row['backend']} {row['neurons']} B={batch} "
                                  f"dt={dt} learning {row['learning']}: {row['wall_per_sim_s']:.2f} s/s",
                                  file=sys.stderr, flush=True)  # fmt: skip
    columns = [("device", "device", ""), ("backend", "backend", ""), ("threads", "threads", ""),
               ("neurons", "neurons", ""), ("synapses", "synapses", ""),
               ("batch", "batch", ""), ("dt ms", "dt_ms", ".2f"), ("learning", "learning", ""),
               ("plastic", "plastic", ""), ("wall s/sim s", "wall_per_sim_s", ".3f"),
               ("vs off", "vs_off", ".2f"), ("steps/s", "steps_per_s", ".0f"),
               ("syn events/s", "events_per_s", ".3g"), ("rate Hz", "rate_hz", ".1f"),
               ("state+net MB", "memory_mb", ".0f"), ("trace MB/elem", "trace_mb", ".2f")]  # fmt: skip
    _print_table(rows, columns)
    print(
        f"wall: {args.stat} of {args.repeats} timed windows of {args.sim_ms:.0f} ms; learning windows "
        "alternate with learning-off windows on the same brain"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {peak:.0f} MB")
    print("memory column: CPU = network + state tensors, CUDA = peak allocated")
    print("synaptic events = spikes x out-degree, per wall second, summed over the batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
