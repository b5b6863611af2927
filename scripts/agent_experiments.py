"""Learning experiments of ``BrainAgent`` with their controls, over seeds (issue 9's evidence).

- ``bandit``: a contextual bandit in which the observation shows which action pays (:class:`CueBanditEnv`:
  one of two cues is on for the whole step; action = cue pays 1). The information is present in the brain
  (the cue drives prefrontal cortex and thalamus, which project to the action regions the readout reads), so
  this asks whether the learning machinery works end to end: reward-based e-prop against ``frozen`` (nothing
  learns), the zero-TD control (the same code path with the third factor set to 0) and ``readout_only`` (the
  readout learns, the brain does not: whether the cue reaches the action regions without learning).

Usage::

    python scripts/agent_experiments.py bandit --seeds 0 1 2 3 4 --timesteps 20000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from encephagen_gym.agents import BrainAgent
from encephagen_gym.scripts.argtypes import int_at_least
from encephagen_gym.stats import format_mean_ci, mean_ci

__all__ = ["CONDITIONS", "CueBanditEnv", "bandit_run", "main"]


class CueBanditEnv(gym.Env[np.ndarray, np.int64]):
    """A two-armed contextual bandit with a visible cue, in brain time.

    Each step lasts ``step_ms`` ms (default 100: long enough for the cue to reach the action regions through
    conduction delays and membranes; at 20 ms nothing was learned, the decision came before the cue arrived); a cue
    (one of ``n_cues``, one-hot on the ``cue`` channels, in [0, 1]) is on for the whole step and the action chosen
    at its end is rewarded 1 if it equals the cue, else 0. The cue of the next step is drawn uniformly. Episodes
    last ``episode_steps`` steps (terminated).
    ``info["metrics"]["accuracy"]`` at the end. Chance: 1 / ``n_cues``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, n_cues: int = 2, step_ms: float = 100.0, episode_steps: int = 20) -> None:
        self.n_cues = int(n_cues)
        self.step_ms = float(step_ms)
        self.episode_steps = int(episode_steps)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_cues,), np.float32)
        self.action_space = spaces.Discrete(self.n_cues)
        self.observation_layout = {"cue": slice(0, self.n_cues)}
        self._cue = 0
        self._steps = 0
        self._correct = 0

    @property
    def dt(self) -> float:
        return self.step_ms / 1000.0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.n_cues, dtype=np.float32)
        obs[self._cue] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.n_cues))
        self._steps = self._correct = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}")
        reward = float(int(action) == self._cue)
        self._correct += int(reward)
        self._steps += 1
        self._cue = int(self.np_random.integers(self.n_cues))
        terminated = self._steps >= self.episode_steps
        info: dict[str, Any] = {"reward_terms": {"correct": reward}}
        if terminated:
            info["metrics"] = {"accuracy": self._correct / self.episode_steps}
        return self._observation(), reward, terminated, False, info


#: The conditions compared: the rule, and the gain on the TD error (0: the zero-TD control).
CONDITIONS: dict[str, dict[str, Any]] = {
    "reward_eprop": {"rule": "reward_eprop"},
    "zero_td": {"rule": "reward_eprop", "td_gain": 0.0},
    "readout_only": {"rule": "readout_only"},
    "frozen": {"rule": "frozen"},
}


def bandit_run(
    condition: str,
    seed: int,
    timesteps: int,
    n_envs: int = 8,
    neurons_per_region: int = 20,
    eval_episodes: int = 16,
    **agent_kwargs: Any,
) -> dict[str, float]:
    """Train on :class:`CueBanditEnv` under ``condition`` and return the held-out accuracy of the greedy
    policy (the action the readout prefers: what was learned) and of the sampled policy (how the agent acts),
    on evaluation episodes seeded apart from training, and the training-time accuracy of the last episodes."""
    env = make_vec_env(CueBanditEnv, n_envs=n_envs, seed=seed)
    kwargs = {**CONDITIONS[condition], **agent_kwargs}
    model = BrainAgent("ConnectomePolicy", env, seed=seed,
                       policy_kwargs=dict(neurons_per_region=neurons_per_region), **kwargs)  # fmt: skip
    model.learn(timesteps)
    result = {"train_accuracy_recent": model._metrics.means().get("accuracy", float("nan"))}
    for name, deterministic in (("greedy", True), ("sampled", False)):
        eval_env = make_vec_env(CueBanditEnv, n_envs=n_envs, seed=10_000 + seed)
        rewards, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=eval_episodes, return_episode_rewards=True, deterministic=deterministic
        )
        result[f"{name}_accuracy"] = float(np.mean(rewards)) / CueBanditEnv().episode_steps
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="BrainAgent learning experiments with controls.")
    parser.add_argument("experiment", choices=["bandit"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--timesteps", type=int_at_least(1), default=20_000)
    parser.add_argument("--neurons-per-region", type=int_at_least(2), default=20)
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| condition | seed | greedy accuracy | sampled accuracy | train accuracy (last episodes) | s |")
    print("|---|---|---|---|---|---|")
    summary: dict[str, dict[str, list[float]]] = {}
    for condition in args.conditions:
        for seed in args.seeds:
            start = time.perf_counter()
            result = bandit_run(condition, seed, args.timesteps, neurons_per_region=args.neurons_per_region)
            for key in ("greedy_accuracy", "sampled_accuracy"):
                summary.setdefault(condition, {}).setdefault(key, []).append(result[key])
            cells = [result[key] for key in ("greedy_accuracy", "sampled_accuracy", "train_accuracy_recent")]
            figures = " | ".join(f"{value:.3f}" for value in cells)
            print(f"| {condition} | {seed} | {figures} | {time.perf_counter() - start:.0f} |", flush=True)
    print("\n| condition | n seeds | greedy accuracy (mean ± 95 % CI) | sampled accuracy (mean ± 95 % CI) |")
    print("|---|---|---|---|")
    for condition, values in summary.items():
        greedy, sampled = values["greedy_accuracy"], values["sampled_accuracy"]
        print(f"| {condition} | {len(greedy)} | {format_mean_ci(*mean_ci(greedy), digits=3)} "
              f"| {format_mean_ci(*mean_ci(sampled), digits=3)} |")  # fmt: skip
    print("chance: 0.5")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
