"""Shared machinery of the MuJoCo body tasks (Walker2d balance, CPG gait, worm crawling).

Kept deliberately small: what all three tasks must do identically lives here, the physics lives in each task.

* :class:`BodyTaskMixin` — action checks (``ValueError`` naming the action), the episode clock (each env
  counts its own steps and ends an episode with ``truncated=True`` after ``episode_s`` seconds of body time: the
  env alone owns the episode length, the ids are registered without a ``TimeLimit``, so ``episode_s`` is always
  obeyed and the last step is always known), reward terms that sum to the reward, ``info["metrics"]`` on the
  final step whether the episode terminated or was truncated, a ``RuntimeError`` for a step after the end,
  detection of unstable physics (below), ``render()`` that returns None without a ``render_mode`` and labels
  ``rgb_array`` frames (body time, distance travelled, a scale bar), and pickling mid-episode (the MuJoCo model
  and data pickle; the OpenGL renderer does not and is rebuilt).
* Unstable physics: when MuJoCo meets a non-finite or huge (> 1e10) position, velocity or acceleration it
  warns (``mjWARN_BADQPOS``, ``mjWARN_BADQVEL``, ``mjWARN_BADQACC`` in ``data.warning``) and silently resets the
  simulation to its initial state. A body env checks those warning counters after every step; if any rose,
  the step ends the episode with ``terminated=True``, ``info["physics_unstable"] = True`` (False on every other
  step), every reward term 0, and ``info["metrics"]`` holding NaN for every task metric (the state they would be
  computed from is MuJoCo's reset, not the body's) and ``physics_unstable = 1.0`` (0.0 in a normal episode).
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
from encephagen_gym.envs.checks import check_integer, check_number
from encephagen_gym.envs.drawing import draw_text, fill_rect, text_panel

DEFAULT_SIZE = 480
"""Default width and height of rendered frames (pixels)."""

MAX_SIZE = 4096
"""Largest accepted width or height of rendered frames (pixels)."""

MAX_EPISODE_S = 3600.0
"""Longest accepted episode (s of body time)."""

_BAD_STATE_WARNINGS = sorted(
    int(w)
    for w in (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)
)
_BAD_STATE = (
    slice(_BAD_STATE_WARNINGS[0], _BAD_STATE_WARNINGS[-1] + 1)
    if list(range(_BAD_STATE_WARNINGS[0], _BAD_STATE_WARNINGS[-1] + 1)) == _BAD_STATE_WARNINGS
    else np.array(_BAD_STATE_WARNINGS)
)


BODY_RENDER_MODES = ["human", "rgb_array"]
"""Render modes of the body tasks' classes. Each instance's ``metadata["render_modes"]`` lists those available
on this machine (:func:`available_render_modes`), so Gymnasium's checks test only those; the class lists both,
so that ``gym.make(..., render_mode="human")`` reaches the env, which explains what a window needs, instead of
Gymnasium wrapping an offscreen env in its pygame ``HumanRendering``."""


def body_metadata(class_metadata: dict[str, Any], dt: float) -> dict[str, Any]:
    """An instance's metadata: the render modes available here and ``render_fps`` = 1 / ``dt`` (real time)."""
    return {**class_metadata, "render_modes": available_render_modes(), "render_fps": round(1.0 / dt)}


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


def check_render_mode(render_mode: str | None, modes: list[str]) -> None:
    """Raise ``ValueError`` unless ``render_mode`` is None or one of ``modes``; for ``"human"`` without a
    window, say why (``MUJOCO_GL``, ``DISPLAY``) and how to get one."""
    if render_mode is None or render_mode in modes:
        return
    if render_mode == "human":
        raise ValueError(
            "render_mode='human' opens a MuJoCo window, which needs MuJoCo's GLFW backend and a display, but here "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}, DISPLAY={os.environ.get('DISPLAY')!r}, "
            f"WAYLAND_DISPLAY={os.environ.get('WAYLAND_DISPLAY')!r}. Run with a display (DISPLAY set) and MUJOCO_GL "
            "unset or 'glfw', or use render_mode='rgb_array' (offscreen; MUJOCO_GL=egl on a headless machine)"
        )
    raise ValueError(f"render_mode must be one of {modes} or None, got {render_mode!r}")


def check_frame_size(name: str, value: Any) -> int:
    """Validate a rendered frame's width or height (an integer number of pixels in [16, MAX_SIZE])."""
    return check_integer(name, value, low=16, high=MAX_SIZE)


class BodyTaskMixin:
    """Bookkeeping shared by the body tasks; mixed in before a MuJoCo ``gym.Env`` class.

    A task calls :meth:`_init_task` in its constructor, :meth:`_start_episode` in ``reset`` and
    :meth:`_check_action` then :meth:`_finish_step` in ``step``, and implements :meth:`_episode_metrics`
    and :meth:`_frame_status` (the figures written on rendered frames).
    """

    observation_layout: dict[str, slice]
    action_space: gym.spaces.Box
    render_mode: str | None
    mujoco_renderer: MujocoRenderer | None
    model: mujoco.MjModel
    data: mujoco.MjData
    dt: float
    scale_bar_body: int = 1
    """Body whose centre of mass sets the depth of the scale bar drawn on frames (1 = the root body)."""

    def _init_task(self, episode_s: float, dt: float) -> None:
        self.episode_s = check_number("episode_s", episode_s, low=0.0, high=MAX_EPISODE_S, strict_low=True)
        self.episode_steps = max(1, round(self.episode_s / dt))  # the env truncates itself after this many
        self._steps: int | None = None  # None until reset(); then env steps taken in this episode
        self._episode_over = False
        self._warning_counts = self.data.warning.number  # a live view of MuJoCo's warning counters

    @property
    def step_ms(self) -> float:
        """Body time per env step (ms): ``1000 * dt``, the name an agent reads to run its clock with the env's."""
        return 1000.0 * self.dt

    @property
    def elapsed_steps(self) -> int:
        """Env steps taken in the current episode."""
        return 0 if self._steps is None else self._steps

    def _start_episode(self) -> None:
        """Call at the end of ``reset``, once the body is in its starting state."""
        self._steps = 0
        self._episode_over = False
        self._warning_counts[:] = 0
        if self.render_mode == "human":
            self.render()

    def _check_action(self, action: Any) -> np.ndarray:
        """Return ``action`` as a float64 array, or raise ``ValueError`` (shape, NaN/inf, out of bounds);
        ``RuntimeError`` before the first reset or after the episode's end."""
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        if self._episode_over:
            raise RuntimeError("the episode has ended (terminated or truncated); call reset() before stepping again")
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

    @property
    def physics_unstable(self) -> bool:
        """Whether MuJoCo has flagged a bad position, velocity or acceleration since the episode started (it
        then resets the simulation: see the module docstring)."""
        return bool(self._warning_counts[_BAD_STATE].any())

    def _finish_step(
        self, obs: np.ndarray, terms: dict[str, float], terminated: bool, info: dict[str, Any]
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Count the step, check the physics, sum the reward terms, decide truncation and attach metrics on the
        final step."""
        assert self._steps is not None
        self._steps += 1
        unstable = self.physics_unstable
        if unstable:
            terms = dict.fromkeys(terms, 0.0)
            terminated = True
        truncated = not terminated and self._steps >= self.episode_steps
        info["reward_terms"] = terms
        info["physics_unstable"] = unstable
        if terminated or truncated:
            self._episode_over = True
            metrics = {k: float("nan") if unstable else float(v) for k, v in self._episode_metrics(terminated).items()}
            metrics["physics_unstable"] = float(unstable)
            info["metrics"] = metrics
        if self.render_mode == "human":
            self.render()
        return obs, float(sum(terms.values())), bool(terminated), bool(truncated), info

    def _episode_metrics(self, terminated: bool) -> dict[str, float]:
        """Per-episode task metrics (floats), computed on the episode's final step."""
        raise NotImplementedError

    def _frame_status(self) -> list[str]:
        """Lines of text written on rendered frames (body time, distance travelled, …)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ rendering, pickling
    def render(self) -> np.ndarray | None:
        """An RGB frame (``render_mode="rgb_array"``), a window update (``"human"``), or None.

        ``rgb_array`` frames carry, top left, the env's status (body time in s, distance travelled in m, …)
        and, bottom left, a scale bar whose length is measured in the plane of the body's motion."""
        if self.render_mode is None or self.mujoco_renderer is None:
            return None
        if self.render_mode != "rgb_array":
            return self.mujoco_renderer.render(self.render_mode)
        frame = np.ascontiguousarray(self.mujoco_renderer.render("rgb_array"))
        lines = self._frame_status() if self._steps is not None else ["(before reset)"]
        if self.physics_unstable:
            lines.append("PHYSICS UNSTABLE: episode ended")
        text_panel(frame, lines, 8, 8)
        self._draw_scale_bar(frame)
        return frame

    def _pixels_per_metre(self, frame_height: int) -> float | None:
        """Pixels per metre, in the rendered image, of a horizontal distance at the depth of the tracked body's
        centre of mass (None for a free camera)."""
        camera = -1 if self.mujoco_renderer is None else self.mujoco_renderer.camera_id
        if camera is None or camera < 0:
            return None
        position, axes = self.data.cam_xpos[camera], self.data.cam_xmat[camera].reshape(3, 3)
        depth = -float((self.data.subtree_com[self.scale_bar_body] - position) @ axes[:, 2])  # along the view axis
        if depth <= 1e-6:
            return None
        focal = 0.5 * frame_height / np.tan(np.radians(float(self.model.cam_fovy[camera])) / 2.0)
        return float(focal / depth)

    def _draw_scale_bar(self, frame: np.ndarray) -> None:
        per_metre = self._pixels_per_metre(frame.shape[0])
        if per_metre is None:
            return
        fits = [m for m in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0) if m * per_metre <= 0.3 * frame.shape[1]]
        if not fits or fits[-1] * per_metre < 8:
            return
        metres = fits[-1]
        length = round(metres * per_metre)
        x0, y0 = 12, frame.shape[0] - 14
        fill_rect(frame, x0 - 6, y0 - 24, x0 + length + 6, y0 + 8, (0, 0, 0), alpha=0.55)
        fill_rect(frame, x0, y0, x0 + length, y0 + 3, (255, 255, 255))
        fill_rect(frame, x0, y0 - 5, x0 + 2, y0 + 3, (255, 255, 255))
        fill_rect(frame, x0 + length - 2, y0 - 5, x0 + length, y0 + 3, (255, 255, 255))
        label = f"{metres * 100:g} cm" if metres < 1 else f"{metres:g} m"
        draw_text(frame, label, x0 + length // 2, y0 - 21, size=12, colour=(255, 255, 255), align="centre")

    def close(self) -> None:
        if self.mujoco_renderer is not None:
            self.mujoco_renderer.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_warning_counts", None)
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
        self._warning_counts = self.data.warning.number
        self.mujoco_renderer = None if config is None else MujocoRenderer(self.model, self.data, **config)


class MujocoBodyEnv(BodyTaskMixin, gym.Env[np.ndarray, np.ndarray]):
    """A MuJoCo body built from an MJCF string; ``frame_skip`` physics steps (of the model's timestep) per env
    step, so ``dt = timestep * frame_skip`` seconds of body time. Frames come from the model's camera ``camera``
    (a tracking camera defined in the MJCF)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": BODY_RENDER_MODES, "render_fps": 50}

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
        check_render_mode(render_mode, available_render_modes())
        frame_skip = check_integer("frame_skip", frame_skip, low=1, high=100)
        width, height = check_frame_size("width", width), check_frame_size("height", height)
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, int(width))
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, int(height))
        self.data = mujoco.MjData(self.model)
        self.frame_skip = int(frame_skip)
        self.render_mode = render_mode
        self.metadata = body_metadata(type(self).metadata, self.dt)
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
        """Body time per env step (s); ``step_ms`` is the same in ms."""
        return float(self.model.opt.timestep) * self.frame_skip
