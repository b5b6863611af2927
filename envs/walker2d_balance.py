"""Encephagen-Walker2dBalance-v0: stand upright on Gymnasium's Walker2d-v5 body while being pushed."""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.walker2d_v5 import DEFAULT_CAMERA_CONFIG, Walker2dEnv

from encephagen_gym.envs.body_env import (
    BODY_RENDER_MODES,
    DEFAULT_SIZE,
    MAX_EPISODE_S,
    BodyTaskMixin,
    available_render_modes,
    body_metadata,
    check_frame_size,
    check_render_mode,
)
from encephagen_gym.envs.checks import check_number, check_range

_JOINTS = slice(3, 9)  # qpos/qvel indices of thigh, leg, foot, thigh_left, leg_left, foot_left

DEFAULT_PUSH_FORCE = (30.0, 60.0)
"""Default range of push magnitudes (N), calibrated with ``scripts/calibrate_bodies.py`` (see the docstring)."""


class Walker2dBalanceEnv(BodyTaskMixin, Walker2dEnv):
    r"""Keep Gymnasium's Walker2d upright for 8 s while random horizontal pushes hit its torso.

    ## Description
    The body, its MJCF file, its actuators and its healthy ranges are Gymnasium's ``Walker2d-v5`` (this class
    subclasses ``gymnasium.envs.mujoco.walker2d_v5.Walker2dEnv`` and loads the XML shipped with Gymnasium): a
    planar biped of seven capsules (torso, two thighs, two shins, two feet; 23.7 kg in all) with six hinge
    joints driven by motors of gear 100 N·m. The task is balance, not locomotion: there is no forward-velocity
    reward. Every ``push_interval_s`` seconds (uniform in the range, first push after one interval) a horizontal
    force of magnitude uniform in ``push_force`` newtons and random sign acts at the torso's centre of mass for
    ``push_duration_s`` seconds (rounded to whole env steps of 8 ms). All randomness comes from ``np_random``.

    ## Action Space
    ``Box(-1, 1, (6,), float32)``: motor commands (torque = 100 N·m × action) for thigh (hip), leg (knee) and
    foot (ankle) of the right leg, then of the left leg — the same order as Walker2d-v5. Actions outside the
    box, NaN or of the wrong shape raise ``ValueError``.

    ## Observation Space
    ``Box(-inf, inf, (17,), float32)``, Walker2d-v5's 17 numbers regrouped by modality (velocities clipped to
    ±10 as in Walker2d-v5):

    | index | modality (``observation_layout`` key) | observation | unit |
    |---|---|---|---|
    | 0 | ``vestibular`` | torso height (rootz) | m |
    | 1 | ``vestibular`` | torso pitch (rooty; positive = leaning forward) | rad |
    | 2 | ``vestibular`` | torso forward velocity | m/s |
    | 3 | ``vestibular`` | torso vertical velocity | m/s |
    | 4 | ``vestibular`` | torso pitch rate | rad/s |
    | 5–10 | ``proprioception`` | joint angles: thigh, leg, foot, thigh_left, leg_left, foot_left | rad |
    | 11–16 | ``proprioception`` | joint angular velocities, same order | rad/s |

    ## Rewards
    ``reward = healthy + ctrl_cost`` (both in ``info["reward_terms"]``): ``healthy`` = ``healthy_reward``
    (default 1) on every step that ends with the walker healthy, else 0; ``ctrl_cost`` =
    −``ctrl_cost_weight`` × ‖action‖² (default weight 10⁻³). The maximum return is 1000.

    ## Starting State
    Walker2d-v5's: standing straight at rest, every qpos and qvel perturbed by uniform noise of
    ±``reset_noise_scale`` (default 0.005).

    ## Episode End
    * Termination: the walker leaves Walker2d-v5's healthy ranges (torso height outside ``(0.8, 2.0)`` m or
      pitch outside ``(−1, 1)`` rad) — it fell.
    * Termination also after unstable physics (``info["physics_unstable"]``; see
      :mod:`encephagen_gym.envs.body_env`).
    * Truncation: after ``episode_s`` seconds of body time (default 8 s = 1000 steps of 8 ms), by the env itself
      (no ``TimeLimit`` wrapper is registered), so ``episode_s=16`` gives 2000 steps and its last step carries
      the metrics. A step after the end raises ``RuntimeError`` until ``reset``.

    ## Info
    ``reward_terms``; ``physics_unstable`` (bool); ``push_force`` (the horizontal force on the torso during
    this step, N); ``time_s`` (body time, s); ``x_position`` (m). On the final step ``metrics``:
    ``time_upright_s`` (body time spent healthy, s), ``fell`` (1.0 if the episode ended by a fall),
    ``n_pushes`` (pushes started) and ``physics_unstable`` (1.0 or 0.0; after unstable physics the other
    metrics are NaN).

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``push_force`` | ``(30, 60)`` | [0, 1000], a number or a (low, high) range | push magnitude (N); 0 = no pushes |
    | ``push_interval_s`` | ``(1.0, 2.0)`` | (0, 3600], low ≤ high | range of the time between push onsets (s) |
    | ``push_duration_s`` | ``0.1`` | [0, 3600] | duration of a push (s) |
    | ``ctrl_cost_weight`` | ``1e-3`` | ≥ 0 | weight of the control cost |
    | ``healthy_reward`` | ``1.0`` | ≥ 0 | reward per healthy step |
    | ``episode_s`` | ``8.0`` | (0, 3600] | episode length in body time (s) |
    | ``reset_noise_scale`` | ``5e-3`` | [0, 0.1] | scale of the initial-state noise |
    | ``render_mode`` | None | None, ``"rgb_array"``, ``"human"`` | side view following the walker |
    | ``width``, ``height`` | 480 | 16–4096 | rendered frame size (pixels) |

    ``dt`` = 4 × 2 ms = 0.008 s per env step (Walker2d-v5's); ``step_ms`` = 8.0 is the same in ms.

    The default push range was calibrated (``python scripts/calibrate_bodies.py walker``) so that the
    reference policy (:class:`Walker2dPostureController`, a scripted PD posture controller; from
    ``env.make_reference_policy()``) stays upright for the full 8 s in at least 80 % of episodes while zero
    action falls within 2 s on average. Measured at the default: the reference stayed up the full 8 s in 171 of
    200 held-out episodes (85.5 %; mean 7.6 s upright); zero action fell after 0.94 s and random actions after
    0.15 s on average (50 episodes each). In the sweep of push ranges (50 episodes each) the reference stayed
    up in 100 % of episodes up to 25–50 N, 82 % at 30–60 N, 66 % at 40–80 N and 30 % at 50–100 N.

    ## Version History
    * v0: initial version (Walker2d-v5 model, balance reward, random torso pushes).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": BODY_RENDER_MODES, "render_fps": 125}
    max_push_force: ClassVar[float] = 1000.0
    """Largest accepted push (N): a 1000 N push fells the walker within 0.2 s and the simulation stays stable;
    far larger ones (10⁸ N) drive MuJoCo's velocities past its limits (``calibrate_bodies.py stability``)."""

    def __init__(
        self,
        *,
        push_force: float | tuple[float, float] = DEFAULT_PUSH_FORCE,
        push_interval_s: tuple[float, float] = (1.0, 2.0),
        push_duration_s: float = 0.1,
        ctrl_cost_weight: float = 1e-3,
        healthy_reward: float = 1.0,
        episode_s: float = 8.0,
        reset_noise_scale: float = 5e-3,
        render_mode: str | None = None,
        width: int = DEFAULT_SIZE,
        height: int = DEFAULT_SIZE,
    ) -> None:
        check_render_mode(render_mode, available_render_modes())
        if np.ndim(push_force) == 0:
            push_force = (push_force, push_force)  # type: ignore[assignment]
        self.push_force = check_range("push_force", push_force, low=0.0, high=self.max_push_force)
        self.push_interval_s = check_range("push_interval_s", push_interval_s, positive=True, high=MAX_EPISODE_S)
        self.push_duration_s = check_number("push_duration_s", push_duration_s, low=0.0, high=MAX_EPISODE_S)
        ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight, low=0.0)
        healthy_reward = check_number("healthy_reward", healthy_reward, low=0.0)
        reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, low=0.0, high=0.1)
        Walker2dEnv.__init__(
            self,
            frame_skip=4,
            default_camera_config=DEFAULT_CAMERA_CONFIG,
            forward_reward_weight=0.0,
            ctrl_cost_weight=ctrl_cost_weight,
            healthy_reward=healthy_reward,
            terminate_when_unhealthy=True,
            reset_noise_scale=reset_noise_scale,
            render_mode=render_mode,
            camera_name="track",  # Walker2d's own camera, following the centre of mass
            width=check_frame_size("width", width),
            height=check_frame_size("height", height),
        )
        self.metadata = body_metadata(type(self).metadata, self.dt)
        self._init_task(episode_s, self.dt)
        self.observation_layout = {"vestibular": slice(0, 5), "proprioception": slice(5, 17)}
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(17,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
        self._torso = self.model.body("torso").id
        self._push_steps = max(1, round(self.push_duration_s / self.dt)) if self.push_duration_s > 0 else 0
        self._next_push_step = 0
        self._push_until_step = 0
        self._push = 0.0
        self._n_pushes = 0
        self._upright_steps = 0
        self._x0 = 0.0

    # -------------------------------------------------------------------------------------------- gym API
    def _get_obs(self) -> np.ndarray:
        qpos, qvel = self.data.qpos, np.clip(self.data.qvel, -10.0, 10.0)
        return np.concatenate((qpos[1:3], qvel[0:3], qpos[_JOINTS], qvel[_JOINTS]), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, _ = super().reset(seed=seed, options=options)
        self._start_episode()
        self._next_push_step = self._draw_interval_steps()
        self._push_until_step = 0
        self._push = 0.0
        self._n_pushes = 0
        self._upright_steps = 0
        self._x0 = float(self.data.qpos[0])
        return obs, {"push_force": 0.0, "time_s": 0.0, "x_position": float(self.data.qpos[0])}

    def _draw_interval_steps(self) -> int:
        return max(1, round(float(self.np_random.uniform(*self.push_interval_s)) / self.dt))

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        step = self.elapsed_steps
        if step >= self._next_push_step and self._push_steps and self.push_force[1] > 0:
            magnitude = float(self.np_random.uniform(*self.push_force))
            self._push = magnitude if self.np_random.random() < 0.5 else -magnitude
            self._push_until_step = step + self._push_steps
            self._next_push_step = step + self._draw_interval_steps()
            self._n_pushes += 1
        force = self._push if step < self._push_until_step else 0.0
        self.data.xfrc_applied[self._torso, 0] = force
        self.do_simulation(a, self.frame_skip)
        healthy = self.is_healthy
        self._upright_steps += healthy
        terms = {
            "healthy": self._healthy_reward if healthy else 0.0,
            "ctrl_cost": -self._ctrl_cost_weight * float(a @ a),
        }
        info = {"push_force": force, "time_s": (step + 1) * self.dt, "x_position": float(self.data.qpos[0])}
        return self._finish_step(self._get_obs(), terms, not healthy, info)

    def _episode_metrics(self, terminated: bool) -> dict[str, float]:
        return {
            "time_upright_s": self._upright_steps * self.dt,
            "fell": float(terminated),
            "n_pushes": float(self._n_pushes),
        }

    def _frame_status(self) -> list[str]:
        push = self._push if self.elapsed_steps - 1 < self._push_until_step and self.elapsed_steps else 0.0
        return [
            f"t = {self.elapsed_steps * self.dt:.2f} s",
            f"distance {float(self.data.qpos[0]) - self._x0:+.2f} m",
            f"push {push:+.0f} N" if push else "push none",
        ]

    def make_reference_policy(self) -> Walker2dPostureController:
        """The scripted PD posture controller used to calibrate the task (see its docstring)."""
        return Walker2dPostureController(self.model)


class Walker2dPostureController:
    """Scripted PD posture controller for :class:`Walker2dBalanceEnv` (the task's reference policy).

    From the observation alone it rebuilds the body's pose with MuJoCo's kinematics (its own ``MjData``), then:

    * ankles (both): PD on the *capture point* ``ξ = (x_com − x_ankles − offset) + v_com / ω`` (m;
      ``x_ankles`` = mean position of the two ankle joints, ``offset`` = where over the feet the centre of mass
      should rest, ``ω`` in 1/s), torque clipped to what the feet can transmit without tipping over heel or
      toe (the feet reach further forward than back, so more toe-down than toe-up authority);
    * hips (both): PD holding the torso at ``pitch_target`` (leaning back 0.1 rad keeps the hips off their
      joint stop at 0, where they could not pitch the torso back), plus a term in ``ξ`` that leans the torso
      against the centre of mass's excursion;
    * knees (both): PD towards slight flexion (``knee_target``), off the knees' stop at 0.

    Gains are in action units (1 = 100 N·m) per m, rad or rad/s. Their values came from a local random search
    on survival under pushes (training seeds), then were checked on held-out seeds (the figures in
    :class:`Walker2dBalanceEnv`'s docstring).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        *,
        ankle_gain: float = 1.95,
        capture_offset: float = 0.06,
        hip_gain: float = 0.74,
        hip_damping: float = 0.18,
        knee_gain: float = 1.28,
        knee_damping: float = 0.02,
        hip_strategy_gain: float = -1.26,
        toe_up_limit: float = 0.085,
        toe_down_limit: float = 0.29,
        omega: float = 4.54,
        pitch_target: float = -0.10,
        knee_target: float = -0.094,
    ) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.gains = (
            ankle_gain,
            capture_offset,
            hip_gain,
            hip_damping,
            knee_gain,
            knee_damping,
            hip_strategy_gain,
            toe_up_limit,
            toe_down_limit,
            omega,
            pitch_target,
            knee_target,
        )
        self._ankles = [model.joint("foot_joint").id, model.joint("foot_left_joint").id]
        self._jac = np.zeros((3, model.nv))

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        ka, offset, kh, dh, kk, dk, khs, up, down, omega, pitch0, knee0 = self.gains
        m, d = self.model, self.data
        obs = np.asarray(obs, dtype=np.float64)
        d.qpos[0] = 0.0
        d.qpos[1:3] = obs[0:2]
        d.qpos[3:9] = obs[5:11]
        d.qvel[0:3] = obs[2:5]
        d.qvel[3:9] = obs[11:17]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_jacSubtreeCom(m, d, self._jac, 1)
        com_x = d.subtree_com[1, 0]
        com_vx = float(self._jac[0] @ d.qvel)
        ankles_x = 0.5 * (d.xanchor[self._ankles[0], 0] + d.xanchor[self._ankles[1], 0])
        xi = com_x - ankles_x - offset + com_vx / omega
        pitch, pitch_rate = obs[1], obs[4]
        knees, knee_rates = obs[[6, 9]], obs[[12, 15]]
        action = np.empty(6)
        action[[0, 3]] = -kh * (pitch - pitch0) - dh * pitch_rate + khs * xi
        action[[1, 4]] = -kk * (knees - knee0) - dk * knee_rates
        action[[2, 5]] = np.clip(-ka * xi, -down, up)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
