"""The one registration list of encephagen-gym's environments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    """What Gymnasium needs to build one task: its id, a string entry point and default keyword arguments.

    No id is registered with ``max_episode_steps``: every env owns its episode length. The cognitive tasks end
    a block after ``trials_per_episode`` trials (``terminated=True``); the body tasks truncate themselves after
    ``episode_s`` seconds of body time (``truncated=True``, ``env.unwrapped.episode_steps`` steps), so an
    argument such as ``gym.make("Encephagen-Walker2dBalance-v0", episode_s=16)`` sets the length and the last
    step always carries ``info["metrics"]``. (A registered ``TimeLimit`` would cut such an episode at the
    registered step count, before the env's last step, and its metrics would be lost.) Truncation by the env
    is what SB3's VecEnvs and ``Monitor`` expect from a ``TimeLimit``: ``truncated=True`` and
    ``terminated=False``, so value bootstrapping works the same.
    """

    id: str
    entry_point: str
    kwargs: dict[str, Any] = field(default_factory=dict)


ENV_SPECS: tuple[EnvSpec, ...] = (
    # Cognitive tasks: episodes end by themselves after `trials_per_episode` trials (terminated=True).
    EnvSpec("Encephagen-Conditioning-v0", "encephagen_gym.envs.conditioning:ConditioningEnv"),
    EnvSpec(
        "Encephagen-PatternRecognition-v0",
        "encephagen_gym.envs.pattern_recognition:PatternRecognitionEnv",
    ),
    EnvSpec("Encephagen-WorkingMemory-v0", "encephagen_gym.envs.working_memory:WorkingMemoryEnv"),
    # Body tasks (MuJoCo): each env truncates itself after episode_s seconds (default 8 s = 1000 steps of 8 ms
    # for Walker2dBalance, 10 s = 500 steps of 20 ms for the others).
    EnvSpec("Encephagen-Walker2dBalance-v0", "encephagen_gym.envs.walker2d_balance:Walker2dBalanceEnv"),
    EnvSpec("Encephagen-CPGGait-v0", "encephagen_gym.envs.cpg_gait:CPGGaitEnv"),
    EnvSpec("Encephagen-WormCrawl-v0", "encephagen_gym.envs.worm_crawl:WormCrawlEnv"),
)


def register_envs() -> None:
    """Register every id in :data:`ENV_SPECS` with Gymnasium (idempotent)."""
    for spec in ENV_SPECS:
        if spec.id in gym.registry:
            continue
        gym.register(id=spec.id, entry_point=spec.entry_point, kwargs=dict(spec.kwargs))
