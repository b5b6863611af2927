"""Steps per second of every registered encephagen env under random actions (single process).

Raw Gymnasium ``Walker2d-v5`` is measured in the same run as the yardstick for the body tasks: the last column
is each env's cost per step in units of a raw ``Walker2d-v5`` step (the goal for Walker2dBalance is ≤ 1.3×).

    python scripts/benchmark_envs.py [--steps 20000] [--repeats 3] [--ids ID ...]
    encephagen-benchmark-envs [--steps 20000] [--repeats 3] [--ids ID ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym

import encephagen_gym
from encephagen_gym.scripts.argtypes import int_at_least

WALKER = "Walker2d-v5"
BALANCE = "Encephagen-Walker2dBalance-v0"
REFERENCE_IDS = (WALKER,)


def steps_per_second(env_id: str, n_steps: int, seed: int = 0) -> float:
    """Env steps per wall second under pre-drawn random actions (resets included; action sampling excluded)."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:  # (a step after the end raises)
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return n_steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int_at_least(1), default=20_000, help="env steps per measurement (>= 1)")
    parser.add_argument(
        "--repeats", type=int_at_least(1), default=3, help="measurements per env, >= 1; the best is reported"
    )
    parser.add_argument("--ids", nargs="*", default=None, help="env ids (default: all registered + Walker2d-v5)")
    args = parser.parse_args(argv)
    unknown = [env_id for env_id in args.ids or [] if env_id not in gym.registry]
    if unknown:
        parser.error(f"unknown env id(s) {unknown}; e.g. {[spec.id for spec in encephagen_gym.ENV_SPECS]}")
    ids = args.ids or [spec.id for spec in encephagen_gym.ENV_SPECS] + list(REFERENCE_IDS)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# best of {args.repeats} runs of {args.steps} steps, random actions, gymnasium.make wrappers on")
    # Repeats are interleaved across envs so that a slow spell of a shared machine hits all of them alike.
    best = dict.fromkeys(ids, 0.0)
    for r in range(args.repeats):
        for env_id in ids:
            best[env_id] = max(best[env_id], steps_per_second(env_id, args.steps, seed=r))
    print(f"| {'env':<36} | {'steps/s':>10} | {'µs/step':>8} | {'× Walker2d-v5':>13} |")
    print(f"|{'-' * 38}|{'-' * 12}|{'-' * 10}|{'-' * 15}|")
    yardstick = best.get(WALKER)
    for env_id in ids:
        ratio = f"{yardstick / best[env_id]:>13.2f}" if yardstick else f"{'':>13}"
        print(f"| {env_id:<36} | {best[env_id]:>10,.0f} | {1e6 / best[env_id]:>8.1f} | {ratio} |")
    if yardstick and BALANCE in best:
        ratio = yardstick / best[BALANCE]
        verdict = "meets" if ratio <= 1.3 else "misses"
        print(f"\n{BALANCE} costs {ratio:.2f}× a raw {WALKER} step ({verdict} the goal of ≤ 1.3×).")


if __name__ == "__main__":
    main()
