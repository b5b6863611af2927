"""What the whole ``BrainAgent`` loop costs beside the brain and its learning rule alone (issue 9's speed goals).

For each brain size and batch (numba backend, the CPU default) three timings, each the wall seconds per
simulated second (median over ``--repeats`` windows after a warm-up; the three take turns window by window):

- ``brain``: the brain's step alone (``brain_step``, ``step_ms / dt`` steps per decision);
- ``brain + rule``: the brain and reward-based e-prop as the agent runs it — trace updates every step; once
  per decision the readout, the TD update of the recurrent and readout weights, and the decision's learning
  signals — with a synthetic TD error and no environment;
- ``agent loop``: ``BrainAgent.learn`` on ``Encephagen-Conditioning-v0`` with ``batch`` envs (the env, the
  encoder, the brain, the rules, the readout, the action, the logging).

With ``--breakdown``, e-prop's part is split in three: ``.step`` (every step: the per-neuron traces),
``eligibility ē`` (once per decision, the numba path's pass that brings every synapse's ē through the decision's
steps: the exact rule's irreducible P × steps work) and ``.record_decision`` (the learning signals and ẽ).

and the ratios: ``learning/brain`` = (brain + rule − brain) / brain (goal at batch 1: ≤ 1), ``loop/(brain +
rule)`` (goal ≤ 1.3). Run it on a quiet machine.

Usage::

    python scripts/benchmark_agent.py                         # 96×20 and 96×200, batch 1 and 16
    python scripts/benchmark_agent.py --sizes 20 --batches 1 --seconds 2
    python scripts/benchmark_agent.py --sizes 20 --batches 1 --breakdown   # and where the time goes
    python scripts/benchmark_agent.py --batches 1 --eligibility exact midpoint   # the approximate ē beside it
    python scripts/benchmark_agent.py --batches 1 --brain 'pathways=[]'   # no pathways: the default plastic pairs
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numba
import torch
from stable_baselines3.common.env_util import make_vec_env

from encephagen_gym.agents import BrainAgent
from encephagen_gym.brain import brain_step
from encephagen_gym.brain.config import set_compute_threads
from encephagen_gym.plasticity import ELIGIBILITY_MODES, Decision, LearningSignal, TDErrorScaler, td_error
from encephagen_gym.scripts.argtypes import int_at_least, positive_float
from encephagen_gym.scripts.record_video import parse_kwarg

__all__ = ["main", "time_rows"]

ENV_ID = "Encephagen-Conditioning-v0"


def _median_rates(runs: Sequence[Callable[[int], None]], decisions: int, step_ms: float, repeats: int) -> list[float]:
    """Median wall seconds per simulated second of each ``run(decisions)`` over ``repeats`` windows, the runs
    taking turns window by window (so that a machine whose speed drifts slows them alike)."""
    for run in runs:
        run(max(1, decisions // 4))  # warm-up (compilation, caches)
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, run_times in zip(runs, times, strict=True):
            start = time.perf_counter()
            run(decisions)
            run_times.append(time.perf_counter() - start)
    return [statistics.median(run_times) / (decisions * step_ms * 1e-3) for run_times in times]


class _Marks:
    """``mark(part)`` adds the wall time since the previous mark to ``parts[part]``; ``mark()`` only starts."""

    def __init__(self, parts: dict[str, float]) -> None:
        self.parts, self.last = parts, time.perf_counter()

    def __call__(self, part: str | None = None) -> None:
        now = time.perf_counter()
        if part is not None:
            self.parts[part] = self.parts.get(part, 0.0) + now - self.last
        self.last = now


def _no_mark(part: str | None = None) -> None:
    """The timed runs' stand-in for :class:`_Marks`."""


def time_rows(
    size: int,
    batch: int,
    seconds: float,
    repeats: int,
    breakdown: bool = False,
    eligibility: str = "exact",
    brain: dict | None = None,
) -> dict:
    """The three timings and two ratios for one brain size and batch and reward e-prop's ``eligibility`` mode;
    ``brain``: other policy keyword arguments (BrainConfig fields) of the agent; with ``breakdown``, ``parts_ms``:
    ms per decision of each part of ``brain + rule`` (one more window, timed part by part)."""
    env = make_vec_env(ENV_ID, n_envs=batch, seed=0)
    model = BrainAgent("ConnectomePolicy", env, seed=0, device="cpu", eligibility=eligibility,
                       policy_kwargs=dict(neurons_per_region=size, **(brain or {})))  # fmt: skip
    policy = model.policy
    step_ms = policy.step_ms
    decisions = max(1, round(seconds * 1000.0 / step_ms))
    network, weights = policy.network, policy.brain.weights
    state = policy.initial_state(batch)
    current = policy.encoder(policy.observation_tensor(env.reset()))
    rules = model.rules
    traces = [rule.init_traces(batch) for rule in rules]
    scaler = TDErrorScaler()
    zeros = torch.zeros(batch)
    generator = torch.Generator().manual_seed(0)

    def brain_only(n: int) -> None:
        brain = state.brain
        for _ in range(n * policy.substeps):
            brain = brain_step(network, weights, brain, current)
        state.brain = brain

    previous: list = []
    names = [type(rule).__name__ for rule in rules]

    def brain_and_rule(n: int, parts: dict[str, float] | None = None) -> None:
        """``n`` decisions; with ``parts``, the wall seconds of each part are added to it (one clock read per
        part). The timed runs pass None: their marks are empty calls, about 40 per decision (~2 µs, under 0.2 %
        of a decision at 96×20, batch 1)."""
        mark = _Marks(parts) if parts is not None else _no_mark
        brain, trace = state.brain, state.readout_trace
        mark()
        for _ in range(n):
            for _ in range(policy.substeps):
                brain = brain_step(network, weights, brain, current)
                mark("brain step")
                policy.readout.filter_spikes(trace, brain.spikes)
                mark("readout filter")
                for rule, rule_traces, name in zip(rules, traces, names, strict=True):
                    rule.step(rule_traces, brain)
                    mark(f"{name}.step")
            output = policy.readout(trace)
            mark("readout")
            if previous:
                delta = td_error(torch.rand(batch, generator=generator), zeros, previous[0].value, output.value, 0.99)
                signal = LearningSignal(td_error=delta, modulator=scaler.scale(delta))
                mark("TD error")
                for rule, rule_traces, name in zip(rules, traces, names, strict=True):
                    rule.apply(weights, rule_traces, signal)
                    mark(f"{name}.apply")
            decision = Decision(output, policy.sample(output, generator=generator), policy.readout.features(trace))
            mark("action and features")
            for rule, rule_traces, name in zip(rules, traces, names, strict=True):
                if parts is not None and hasattr(rule_traces, "eprop"):
                    rule_traces.eprop.eligibility  # noqa: B018 (reading it brings e-prop's ē up to date)
                    mark(f"{name} eligibility ē")
                rule.record_decision(rule_traces, decision)
                mark(f"{name}.record_decision")
            previous[:] = [output]
        state.brain = brain

    learned = [False]

    def agent_loop(n: int) -> None:
        model.learn(n * batch, reset_num_timesteps=not learned[0], log_interval=100)
        learned[0] = True

    with torch.no_grad():
        brain, rule, loop = _median_rates([brain_only, brain_and_rule, agent_loop], decisions, step_ms, repeats)
        parts: dict[str, float] = {}
        if breakdown:
            brain_and_rule(decisions, parts)
    projection = next(r.projection for r in rules if r.projection is not None)
    return {
        "brain": brain,
        "brain_rule": rule,
        "loop": loop,
        "learning_over_brain": (rule - brain) / brain,
        "loop_over_brain_rule": loop / rule,
        "plastic": projection.n_synapses,
        "parts_ms": {name: 1e3 * seconds / decisions for name, seconds in parts.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cost of the BrainAgent loop beside the brain and its rule alone.")
    parser.add_argument("--sizes", type=int_at_least(2), nargs="+", default=[20, 200], help="neurons per region")
    parser.add_argument("--batches", type=int_at_least(1), nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=positive_float, default=2.0, help="simulated seconds per window")
    parser.add_argument("--repeats", type=int_at_least(1), default=5)
    parser.add_argument("--numba-threads", type=int_at_least(1), default=None)
    parser.add_argument(
        "--eligibility",
        nargs="+",
        choices=ELIGIBILITY_MODES,
        default=["exact"],
        help="reward e-prop's eligibility mode(s): exact, or the cheaper midpoint approximation",
    )
    parser.add_argument("--brain", type=parse_kwarg, nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="other BrainConfig fields of the agent's brain, e.g. 'pathways=[]'")  # fmt: skip
    parser.add_argument("--breakdown", action="store_true",
                        help="also time each part of brain + rule (ms per decision), in one more window")  # fmt: skip
    args = parser.parse_args(argv)
    set_compute_threads(1)
    if args.numba_threads is not None:
        numba.set_num_threads(min(args.numba_threads, numba.config.NUMBA_NUM_THREADS))
    brain = dict(args.brain)
    print(f"wall s per simulated s, median of {args.repeats} windows of {args.seconds} s; numba threads "
          f"{numba.get_num_threads()}; env {ENV_ID} (10 ms per decision)"
          + (f"; brain {brain}" if brain else "") + "\n")  # fmt: skip
    print("| neurons | batch | eligibility | plastic synapses | brain | brain + rule | agent loop | learning/brain | "
          "loop/(brain + rule) |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    breakdowns = {}
    for size in args.sizes:
        for batch in args.batches:
            for mode in args.eligibility:
                row = time_rows(size, batch, args.seconds, args.repeats, args.breakdown, mode, brain)
                print(f"| 96×{size} | {batch} | {mode} | {row['plastic']:,} | {row['brain']:.3f} | "
                      f"{row['brain_rule']:.3f} | {row['loop']:.3f} | {row['learning_over_brain']:.2f} | "
                      f"{row['loop_over_brain_rule']:.2f} |", flush=True)  # fmt: skip
                breakdowns[f"96×{size}, batch {batch}, {mode}"] = row["parts_ms"]
    if args.breakdown:
        print(_breakdown_table(breakdowns))
    return 0


def _breakdown_table(breakdowns: dict[str, dict[str, float]]) -> str:
    """Markdown: ms per decision of each part (rows) for each size and batch (columns), and their total."""
    columns = list(breakdowns)
    parts = list(dict.fromkeys(part for column in columns for part in breakdowns[column]))
    lines = ["\nms per decision, part by part (brain + rule, one window each)\n",
             "| part | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]  # fmt: skip
    for part in [*parts, "total"]:
        cells = [breakdowns[c].get(part, 0.0) if part != "total" else sum(breakdowns[c].values()) for c in columns]
        lines.append(f"| {part} | " + " | ".join(f"{value:.3f}" for value in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
