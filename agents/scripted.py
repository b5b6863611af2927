"""Non-learning control agents with stable-baselines3's ``predict`` contract.

``random`` (uniform actions), ``zero`` (the no-op action) and ``reference`` (each env's scripted reference
policy) act through ``predict(observation, state=None, episode_start=None, deterministic=False) ->
(actions, state)``, so SB3's ``evaluate_policy`` and every evaluation and output path of ``encephagen-train`` /
``encephagen-compare`` treat them exactly like a trained model. They are built for one VecEnv (the one they
act in): ``Agent(venv, seed=...)``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

__all__ = ["RandomAgent", "ReferenceAgent", "ScriptedAgent", "ZeroAgent"]


class ScriptedAgent:
    """Base of the controls: holds the VecEnv's spaces and implements SB3's ``predict`` over a batch.

    Subclasses implement :meth:`_act` (actions for a batch of observations, given which sub-envs just started an
    episode). ``predict`` accepts a batch ``[n_envs, *obs_shape]`` or a single observation, like SB3's.
    """

    learns = False

    def __init__(self, env: VecEnv, seed: int | None = None) -> None:
        if not isinstance(env, VecEnv):
            raise ValueError(f"env must be a stable-baselines3 VecEnv, got {type(env).__name__}")
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self.n_envs = env.num_envs
        self.seed = seed
        self.num_timesteps = 0

    def _act(self, observations: np.ndarray, starts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Actions for ``observation`` (SB3's contract; ``state`` is passed through, these agents keep their
        own per-sub-env memory where they need one)."""
        observation = np.asarray(observation)
        single = observation.shape == self.observation_space.shape
        batch = observation[None] if single else observation
        n = batch.shape[0]
        starts = np.zeros(n, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        if starts.shape != (n,):
            raise ValueError(f"episode_start must have shape ({n},), got {starts.shape}")
        actions = self._act(batch, starts)
        return (actions[0] if single else actions), state


class RandomAgent(ScriptedAgent):
    """Uniformly random actions from the action space, seeded with ``seed`` (a copy of the space is sampled,
    so the env's own action-space RNG is untouched)."""

    def __init__(self, env: VecEnv, seed: int | None = None) -> None:
        super().__init__(env, seed)
        self._space = copy.deepcopy(env.action_space)
        self._space.seed(seed)

    def _act(self, observations: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(self._space.sample()) for _ in range(observations.shape[0])])


def zero_action(space: spaces.Space) -> np.ndarray:
    """The no-op action: 0 for ``Discrete`` (withhold / fixate in every encephagen task), zeros for a ``Box``
    (zero torque / drive), clipped into the box when 0 lies outside it."""
    if isinstance(space, spaces.Discrete):
        return np.asarray(0 if space.contains(0) else space.start, dtype=np.int64)
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape, dtype=space.dtype), space.low, space.high)
    raise ValueError(f"zero action is defined for Discrete and Box action spaces, got {space}")


class ZeroAgent(ScriptedAgent):
    """Always the no-op action (:func:`zero_action`)."""

    def __init__(self, env: VecEnv, seed: int | None = None) -> None:
        super().__init__(env, seed)
        self._zero = zero_action(env.action_space)

    def _act(self, observations: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return np.repeat(self._zero[None], observations.shape[0], axis=0)


class ReferenceAgent(ScriptedAgent):
    """Each sub-env's scripted reference policy (``env.unwrapped.make_reference_policy()``).

    A reference policy may read its env's internal state (e.g. the current contingency) and keeps memory
    within an episode, so there is one policy per sub-env, reset when ``episode_start`` marks a new episode of
    that sub-env. The envs must live in this process (a ``DummyVecEnv``, possibly inside VecEnv wrappers that
    leave observations unchanged, such as ``VecMonitor``): the policies see raw observations.
    """

    def __init__(self, env: VecEnv, seed: int | None = None) -> None:
        super().__init__(env, seed)
        inner = env.unwrapped
        if not isinstance(inner, DummyVecEnv):
            raise ValueError(
                "reference needs the envs in this process (a DummyVecEnv) to build their reference policies; "
                f"got {type(inner).__name__}"
            )
        self._policies: list[Any] = []
        for sub_env in inner.envs:
            task = sub_env.unwrapped
            if not hasattr(task, "make_reference_policy"):
                raise ValueError(
                    f"reference needs envs with make_reference_policy() (every Encephagen env has one); "
                    f"{type(task).__name__} has none"
                )
            self._policies.append(task.make_reference_policy())
        self._discrete = isinstance(env.action_space, spaces.Discrete)

    def _act(self, observations: np.ndarray, starts: np.ndarray) -> np.ndarray:
        if observations.shape[0] != len(self._policies):
            raise ValueError(
                f"reference holds one policy per sub-env ({len(self._policies)}), got {observations.shape[0]} "
                "observations"
            )
        actions = []
        for policy, obs, start in zip(self._policies, observations, starts, strict=True):
            if start:
                policy.reset()
            actions.append(policy(obs))
        if self._discrete:
            return np.asarray(actions, dtype=np.int64)
        return np.stack([np.asarray(a, dtype=self.action_space.dtype) for a in actions])
