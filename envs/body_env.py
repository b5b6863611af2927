"""Shared machinery of the MuJoCo body tasks (Walker2d balance, CPG gait, worm crawling).

Kept deliberately small: what all three tasks must do identically lives here, the physics lives in each task.

* :class:`BodyTaskMixin` — action checks (``ValueError`` naming the action), the episode clock (each env
  counts its own steps, ends an episode with ``truncated=True`` after ``episode_s`` seconds of body time and so knows
  its last step), reward terms that sum to the reward, ``info["metrics"]`` on the final step whether the
  episode terminated or was truncated, ``render()`` that returns None without a ``render_mode``, and pickling
  mid-episode (the MuJoCo model and data pickle; the OpenGL renderer does not and is rebuilt).
* :class:`MujocoBodyEnv` — a MuJoCo env built from an MJCF string (generated or read from package data),
  stepping ``frame_skip`` physics steps per env step and rendering through Gymnasium's ``MujocoRenderer``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

from encephagen_gym.envs import layout_from_sizes

DEFAULT_SIZE = 480
"""Default width and height of rendered frames (pixels)."""


def available_render_modes() -> list[str]:
    """``["rgb_array"]``, plus ``"human"`` (a MuJoCo/GLFW window) when a window can be opened: MuJoCo's GL
    backend is GLFW (``MUJOCO_GL`` unset or ``glfw``) and, on Linux, a display is set. Headless machines
    (``MUJOCO_GL=egl`` or ``osmesa``) render ``rgb_array`` only, so Gymnasium's render checks pass there."""
    if os.environ.get("MUJOCO_GL", "glfw").lower() != "glfw":
        return ["rgb_array"]
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not display:
        return ["rgb_array"]
    return ["human", "rgb_array"]


def check_range(name: str, value: Any, *, low: float = -np.inf, positive: bool = False) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair of finite numbers, ``low <= high``; raise ``ValueError`` naming it."""
    try:
        pair = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
    if len(pair) != 2 or not all(np.isfinite(pair)) or pair[0] > pair[1]:
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {value!r}")
    if pair[0] < low or (positive and pair[0] <= 0):
        bound = "> 0" if positive else f">= {low}"
        raise ValueError(f"{name} must have both ends {bound}, got {value!r}")
    return pair  # type: ignore[return-value]


def check_number(
    name: str, value: Any, *, low: float = -np.inf, high: float = np.inf, strict_low: bool = False
) -> float:
    """Validate a finite number in ``[low, high]`` (``(low, high]`` if ``strict_low``); return it as float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if number < low or (strict_low and number == low) or number > high:
        left = "(" if strict_low else "["
        raise ValueError(f"{name} must lie in {left}{low}, {high}], got {value!r}")
    return number


def check_render_mode(render_mode: str | None, modes: list[str]) -> None:
    """Raise ``ValueError`` unless ``render_mode`` is None or one of ``modes``."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be one of {modes} or None, got {render_mode!r}")


class BodyTaskMixin:
    """Bookkeeping shared by the body tasks; mixed in before a MuJoCo ``gym.Env`` class.

    A task calls :meth:`_init_task` in its constructor, :meth:`_start_episode` in ``reset`` and
    :meth:`_check_action` then :meth:`_finish_step` in ``step``, and implements :meth:`_episode_metrics`.
    """

    observation_layout: dict[str, slice]
    action_space: gym.spaces.Box
    render_mode: str | None
    mujoco_renderer: MujocoRenderer | None
    model: mujoco.MjModel
    data: mujoco.MjData

    def _init_task(self, episode_s: float, dt: float) -> None:
        episode_s = check_number("episode_s", episode_s, low=0.0, strict_low=True)
        self.episode_s = episode_s
        self.episode_steps = max(1, round(episode_s / dt))
        self._steps: int | None = None  # None until reset(); then env steps taken in this episode
        self._episode_over = False

    @property
    def elapsed_steps(self) -> int:
        """Env steps taken in the current episode."""
        return 0 if self._steps is None else self._steps

    def _start_episode(self) -> None:
        """Call at the end of ``reset``, once the body is in its starting state."""
        self._steps = 0
        self._episode_over = False
        if self.render_mode == "human":
            self.render()

    def _check_action(self, action: Any) -> np.ndarray:
        """Return ``action`` as a float64 array, or raise ``ValueError`` (shape, NaN/inf, out of bounds)."""
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        space = self.action_space
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"action must be a numeric array of shape {space.shape}, got {action!r}") from None
        if a.shape != space.shape:
            raise ValueError(f"action must have shape {space.shape}, got shape {a.shape}: {action!r}")
        low, high = space.low, space.high
        if not ((a >= low - 1e-6).all() and (a <= high + 1e-6).all()):  # NaN fails both comparisons
            if not np.isfinite(a).all():
                raise ValueError(f"action must be finite, got {action!r}")
            raise ValueError(f"action must lie in [{low.min()}, {high.max()}], got {action!r}")
        return np.minimum(np.maximum(a, low), high)

    def _finish_step(
        self, obs: np.ndarray, terms: dict[str, float], terminated: bool, info: dict[str, Any]
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Count the step, sum the reward terms, decide truncation and attach metrics on the final step."""
        assert self._steps is not None
        self._steps += 1
        truncated = not terminated and self._steps >= self.episode_steps
        info["reward_terms"] = terms
        if (terminated or truncated) and not self._episode_over:  # stepping on after the end: no new metrics
            self._episode_over = True
            info["metrics"] = {k: float(v) for k, v in self._episode_metrics(terminated).items()}
        if self.render_mode == "human":
            self.render()
        return obs, float(sum(terms.values())), bool(terminated), bool(truncated), info

    def _episode_metrics(self, terminated: bool) -> dict[str, float]:
        """Per-episode task metrics (floats), computed on the episode's final step."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ rendering, pickling
    def render(self) -> np.ndarray | None:
        """An RGB frame (``render_mode="rgb_array"``), a window update (``"human"``), or None."""
        if self.render_mode is None or self.mujoco_renderer is None:
            return None
        return self.mujoco_renderer.render(self.render_mode)

    def close(self) -> None:
        if self.mujoco_renderer is not None:
            self.mujoco_renderer.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        renderer = state.pop("mujoco_renderer", None)
        if renderer is not None:
            state["_renderer_config"] = {
                "default_cam_config": renderer.default_cam_config,
                "width": renderer.width,
                "height": renderer.height,
                "max_geom": renderer.max_geom,
                "camera_id": renderer.camera_id,
                "visual_options": renderer._vopt,
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        config = state.pop("_renderer_config", None)
        self.__dict__.update(state)
        self.mujoco_renderer = None if config is None else MujocoRenderer(self.model, self.data, **config)


class MujocoBodyEnv(BodyTaskMixin, gym.Env[np.ndarray, np.ndarray]):
    """A MuJoCo body built from an MJCF string; ``frame_skip`` physics steps (of the model's timestep) per env
    step, so ``dt = timestep * frame_skip`` seconds of body time. Frames come from the model's camera ``camera``
    (a tracking camera defined in the MJCF)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": available_render_modes(), "render_fps": 50}

    def __init__(
        self,
        xml: str,
        *,
        frame_skip: int,
        render_mode: str | None,
        width: int,
        height: int,
        camera: str,
    ) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        if isinstance(frame_skip, bool) or int(frame_skip) != frame_skip or frame_skip < 1:
            raise ValueError(f"frame_skip must be a positive integer, got {frame_skip!r}")
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or int(value) != value or value < 16:
                raise ValueError(f"{name} must be an integer number of pixels >= 16, got {value!r}")
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, int(width))
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, int(height))
        self.data = mujoco.MjData(self.model)
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "render_fps": round(1.0 / self.dt)}
        self.mujoco_renderer = MujocoRenderer(self.model, self.data, None, int(width), int(height), camera_name=camera)

    def _set_spaces(self, modality_sizes: Mapping[str, int], n_actions: int) -> None:
        """``observation_layout`` and an unbounded float32 observation Box from the modalities' sizes (in
        order), and a ``Box(-1, 1, (n_actions,))`` action space."""
        self.observation_layout = layout_from_sizes(modality_sizes)
        n_obs = sum(modality_sizes.values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n_actions,), dtype=np.float32)

    @property
    def dt(self) -> float:
        """Body time per env step (s)."""
        return float(self.model.opt.timestep) * self.frame_skip
