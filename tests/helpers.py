"""Helpers shared by the tests: the registry's env ids and rollouts under a policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import encephagen_gym

ENV_IDS = [spec.id for spec in encephagen_gym.ENV_SPECS]


def rollout(
    env: gym.Env, policy: Callable[[np.ndarray], Any] | None, *, seed: int, max_steps: int | None = None
) -> dict[str, Any]:
    """Run one episode (or ``max_steps`` steps) and collect observations, rewards, infos.

    ``policy=None`` samples actions from ``env.action_space`` seeded with ``seed``; a policy with a
    ``reset()`` method is reset first.
    """
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    if hasattr(policy, "reset"):
        policy.reset()
    observations, rewards, infos = [obs], [], [info]
    done = False
    while not done and (max_steps is None or len(rewards) < max_steps):
        action = env.action_space.sample() if policy is None else policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        done = terminated or truncated
    return {"observations": np.array(observations), "rewards": np.array(rewards), "infos": infos, "done": done}
