"""The one registration list of encephagen-gym's environments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    """What Gymnasium needs to build one task: its id, a string entry point and a step limit."""

    id: str
    entry_point: str
    max_episode_steps: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


ENV_SPECS: tuple[EnvSpec, ...] = (
    # Cognitive tasks: episodes end by themselves after `trials_per_episode` trials (terminated=True).
    EnvSpec("Encephagen-Conditioning-v0", "encephagen_gym.envs.conditioning:ConditioningEnv"),
    EnvSpec(
        "Encephagen-PatternRecognition-v0",
        "encephagen_gym.envs.pattern_recognition:PatternRecognitionEnv",
    ),
    EnvSpec("Encephagen-WorkingMemory-v0", "encephagen_gym.envs.working_memory:WorkingMemoryEnv"),
    # Body tasks (MuJoCo): each env also counts its own steps and truncates at the same limit, so that it
    # knows its last step (info["metrics"]); max_episode_steps = episode_s / dt.
    EnvSpec(
        "Encephagen-Walker2dBalance-v0",
        "encephagen_gym.envs.walker2d_balance:Walker2dBalanceEnv",
        max_episode_steps=1000,  # 8 s at 8 ms per step
    ),
    EnvSpec(
        "Encephagen-CPGGait-v0",
        "encephagen_gym.envs.cpg_gait:CPGGaitEnv",
        max_episode_steps=500,  # 10 s at 20 ms per step
    ),
    EnvSpec(
        "Encephagen-WormCrawl-v0",
        "encephagen_gym.envs.worm_crawl:WormCrawlEnv",
        max_episode_steps=500,  # 10 s at 20 ms per step
    ),
)


def register_envs() -> None:
    """Register every id in :data:`ENV_SPECS` with Gymnasium (idempotent)."""
    for spec in ENV_SPECS:
        if spec.id in gym.registry:
            continue
        gym.register(
            id=spec.id,
            entry_point=spec.entry_point,
            max_episode_steps=spec.max_episode_steps,
            kwargs=dict(spec.kwargs),
        )
