"""Score the scripted reference policy against random and zero actions on every registered env.

Prints, per env and policy, the mean episode return with a 95 % Student-t confidence interval
(``encephagen_gym.stats``) and the mean of each per-episode metric in ``info["metrics"]`` (NaN values, e.g. a
rate over a block without the trials it needs, are left out of a metric's mean): a task is well posed when the
reference scores high and random low. Fixate-then-choose tasks get a chance-level "guess" row too: fixate,
then choose at random at the go cue.

    python scripts/score_references.py [--episodes 20] [--ids ID ...]
    encephagen-score-references [--episodes 20] [--ids ID ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import encephagen_gym
from encephagen_gym.envs.trial_env import ChoiceTrialEnv
from encephagen_gym.scripts.argtypes import int_at_least
from encephagen_gym.stats import format_mean_ci, mean_ci


def zero_action(space: gym.Space) -> Any:
    """The "do nothing" action: 0 for a discrete space (withhold / fixate), zeros for a box."""
    if isinstance(space, gym.spaces.Discrete):
        return 0
    return np.zeros(space.shape, dtype=space.dtype)


def run_episode(env: gym.Env, policy: Callable[[np.ndarray], Any], seed: int) -> tuple[float, dict[str, float]]:
    obs, _ = env.reset(seed=seed)
    total, done, info = 0.0, False, {}
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += float(reward)
        done = terminated or truncated
    return total, info.get("metrics", {})


def _nanmean(values: list[float]) -> float:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def score(env_id: str, episodes: int) -> list[tuple[str, tuple[float, float], dict[str, float]]]:
    env = gym.make(env_id)
    reference = env.unwrapped.make_reference_policy()
    zero = zero_action(env.action_space)
    policies: dict[str, Callable[[np.ndarray], Any]] = {
        "reference": reference,
        "random": lambda obs: env.action_space.sample(),
        "zero": lambda obs: zero,
    }
    task = env.unwrapped
    if isinstance(task, ChoiceTrialEnv):  # chance level: fixate, then a uniformly random choice at the go cue
        guesses = np.random.default_rng(0)
        policies["guess"] = lambda obs: (
            int(guesses.integers(1, task.action_space.n)) if task.period == task.decision_period else 0
        )
    rows = []
    for name, policy in policies.items():
        returns, metrics = [], []
        for episode in range(episodes):
            env.action_space.seed(episode)
            if hasattr(policy, "reset"):
                policy.reset()
            ret, met = run_episode(env, policy, seed=10_000 + episode)
            returns.append(ret)
            metrics.append(met)
        keys = metrics[0].keys() if metrics else []
        rows.append((name, mean_ci(returns), {k: _nanmean([m[k] for m in metrics]) for k in keys}))
    env.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    registered = [spec.id for spec in encephagen_gym.ENV_SPECS]
    parser.add_argument(
        "--episodes", type=int_at_least(2), default=20, help="episodes per env and policy, >= 2 (held-out seeds)"
    )
    parser.add_argument("--ids", nargs="*", default=None, help="env ids (default: every registered env)")
    args = parser.parse_args(argv)
    unknown = [env_id for env_id in args.ids or [] if env_id not in registered]
    if unknown:
        parser.error(f"unknown env id(s) {unknown}; choose from {registered}")
    for env_id in args.ids or registered:
        print(f"\n### {env_id} ({args.episodes} episodes per policy)\n")
        rows = score(env_id, args.episodes)
        keys = list(rows[0][2])
        print("| policy | return (mean ± 95% CI) | " + " | ".join(keys) + " |")
        print("|---|---|" + "---|" * len(keys))
        for name, (mean, half), metrics in rows:
            cells = " | ".join("n/a" if not np.isfinite(metrics[k]) else f"{metrics[k]:.3f}" for k in keys)
            print(f"| {name} | {format_mean_ci(mean, half)} | {cells} |")


if __name__ == "__main__":
    main()
