"""Vectorised envs for training and held-out evaluation, and the seed ranges that keep them apart.

Seeds. A training run with seed ``s`` resets its ``n_envs`` sub-envs once, with seeds
``s·1000 + 100·segment + rank`` (``segment`` counts resumptions), all below ``10⁹``; the envs then run on
their own RNG streams. Evaluation episode ``i`` is reset with seed ``EVAL_SEED_BASE + i`` (``2·10⁹ + i``), a
range no training episode uses, the same episodes for every algorithm and seed (paired comparisons).
Validation episode ``i`` (model selection, ``encephagen-train --select-model best``) is reset with seed
``VALIDATION_SEED_BASE + i`` (``1.5·10⁹ + i``), disjoint from both, so that choosing a checkpoint never sees the
held-out episodes on which it is then scored.

Wrappers, in rl-zoo3's order: ``DummyVecEnv`` → ``VecMonitor`` (raw returns and lengths, ``monitor.csv``) →
``VecNormalize`` (if the preset asks; frozen and with raw rewards for evaluation) → ``VecFrameStack`` (if the
preset asks).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecFrameStack,
    VecMonitor,
    VecNormalize,
    sync_envs_normalization,
)

import encephagen_gym  # noqa: F401  (registers the Encephagen-*-v0 ids)
from encephagen_gym.agents.callbacks import EpisodeResult

__all__ = [
    "EVAL_SEED_BASE",
    "MAX_RUN_SEED",
    "VALIDATION_SEED_BASE",
    "evaluate_episodes",
    "evaluation_seeds",
    "make_vec_env",
    "training_env_seeds",
]

EVAL_SEED_BASE = 2_000_000_000
"""Evaluation episode ``i`` is reset with seed ``EVAL_SEED_BASE + i``."""
VALIDATION_SEED_BASE = 1_500_000_000
"""Validation episode ``i`` (model selection) is reset with seed ``VALIDATION_SEED_BASE + i``."""
MAX_RUN_SEED = 1_000_000
"""Run seeds lie in ``[0, MAX_RUN_SEED)``, so training env seeds stay below 10⁹."""
MAX_N_ENVS = 100
MAX_SEGMENTS = 10


def training_env_seeds(seed: int, n_envs: int, segment: int = 0) -> list[int]:
    """Reset seeds of a training run's sub-envs (see the module docstring); ``ValueError`` out of range."""
    if isinstance(seed, bool) or int(seed) != seed or not 0 <= seed < MAX_RUN_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_RUN_SEED}), got {seed!r}")
    if not 1 <= n_envs <= MAX_N_ENVS:
        raise ValueError(f"n_envs must be an integer in [1, {MAX_N_ENVS}], got {n_envs!r}")
    if not 0 <= segment < MAX_SEGMENTS:
        raise ValueError(f"a run can be resumed at most {MAX_SEGMENTS - 1} times, got segment {segment!r}")
    return [int(seed) * 1000 + 100 * segment + rank for rank in range(n_envs)]


def evaluation_seeds(n_episodes: int) -> list[int]:
    """Reset seeds of the ``n_episodes`` held-out evaluation episodes."""
    if n_episodes < 1:
        raise ValueError(f"the number of evaluation episodes must be positive, got {n_episodes!r}")
    return [EVAL_SEED_BASE + i for i in range(n_episodes)]


def make_vec_env(
    env_id: str,
    n_envs: int,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    monitor_path: str | None = None,
    normalize_kwargs: Mapping[str, Any] | None = None,
    frame_stack: int | None = None,
    evaluation: bool = False,
) -> VecEnv:
    """``n_envs`` copies of ``env_id`` in this process, wrapped as the module docstring says.

    ``evaluation=True`` freezes the normalisation statistics and reports raw rewards (copy the training env's
    statistics in with ``sync_envs_normalization`` before evaluating).
    """
    factory = functools.partial(gym.make, env_id, **dict(env_kwargs or {}))
    venv: VecEnv = VecMonitor(DummyVecEnv([factory] * n_envs), filename=monitor_path)
    if normalize_kwargs is not None:
        kwargs = dict(normalize_kwargs)
        if evaluation:
            kwargs.update(training=False, norm_reward=False)
        venv = VecNormalize(venv, **kwargs)
    if frame_stack:
        venv = VecFrameStack(venv, int(frame_stack))
    return venv


def evaluate_episodes(
    model: Any,
    venv: VecEnv,
    *,
    deterministic: bool = True,
    training_env: VecEnv | None = None,
    seed_base: int = EVAL_SEED_BASE,
) -> list[EpisodeResult]:
    """Run one episode in each sub-env of ``venv``, sub-env ``i`` reset with seed ``seed_base + i`` (the
    held-out range by default; ``VALIDATION_SEED_BASE`` for model selection).

    ``model`` is anything with SB3's ``predict(obs, state, episode_start, deterministic)`` (a trained
    algorithm or a control agent); the episodes go through SB3's ``evaluate_policy``. With ``training_env`` its
    ``VecNormalize`` statistics are copied into ``venv`` first. Returns the episodes in sub-env order.
    """
    if training_env is not None:
        sync_envs_normalization(training_env, venv)
    n = venv.num_envs
    if seed_base not in (EVAL_SEED_BASE, VALIDATION_SEED_BASE):
        raise ValueError(f"seed_base must be EVAL_SEED_BASE or VALIDATION_SEED_BASE, got {seed_base!r}")
    venv.seed(seed_base)
    finished: dict[int, EpisodeResult] = {}

    def collect(local_vars: dict[str, Any], _globals: dict[str, Any]) -> None:
        info = local_vars["info"]
        if local_vars["done"] and "episode" in info:
            i = int(local_vars["i"])
            finished.setdefault(
                i,
                EpisodeResult(
                    seed=seed_base + i,
                    ret=float(info["episode"]["r"]),
                    length=int(info["episode"]["l"]),
                    metrics={k: float(v) for k, v in info.get("metrics", {}).items()},
                ),
            )

    returns, _ = evaluate_policy(
        model, venv, n_eval_episodes=n, deterministic=deterministic, callback=collect, return_episode_rewards=True
    )
    if len(finished) != n or not np.allclose(sorted(returns), sorted(r.ret for r in finished.values()), atol=1e-4):
        raise RuntimeError(f"evaluation collected {len(finished)} of {n} episodes")  # cannot happen with VecMonitor
    return [finished[i] for i in range(n)]
