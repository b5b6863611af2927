"""Encephagen-CPGGait-v0: walk at a commanded speed through a spinal CPG that runs on the body's clock."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from importlib import resources
from typing import Any, ClassVar

import mujoco
import numpy as np

from encephagen_gym.envs.body_env import BODY_RENDER_MODES, DEFAULT_SIZE, MujocoBodyEnv
from encephagen_gym.envs.checks import check_number, check_range
from encephagen_gym.envs.cpg import MatsuokaParams, MatsuokaState, matsuoka_decay, matsuoka_step

LEGS = ("rear", "front")
"""Leg 0 is the rear leg, leg 1 the front leg (CPG units and actions follow this order)."""


@dataclass(frozen=True)
class SpinalMapping:
    """How descending drive reaches the CPG and how the CPG moves the joints (angles in rad).

    Drive → CPG, per leg: ``u = (drive + 1)/2 ∈ [0, 1]``; tonic input of both units
    ``c = tonic_min + (tonic_max − tonic_min)·u`` (sets the rhythm's amplitude: at ``tonic_min`` the legs step in
    place without progress, above it the stride grows; ``tonic_min = 0`` would let drive −1 silence the CPG);
    rate factor ``r = rate_min + (rate_max − rate_min)·u`` (scales the CPG's time constants, so it sets the
    frequency).

    CPG → joints, per leg (equilibrium-point control: motoneuron activity sets where a spring-like muscle pair
    holds the joint): hip target ``hip_rest + hip_amplitude·(y_flexor − y_extensor)``, knee target
    ``knee_rest − knee_amplitude·y_flexor`` (the knee flexes while the leg swings), joint torque
    ``stiffness·(target − angle) − damping·angular_velocity`` (N·m, clipped to the motor's ±10 N·m).

    Joints → CPG (proprioceptive feedback), per leg: ``s_flexor = −feedback_gain·(hip − hip_rest)``,
    ``s_extensor = +feedback_gain·(hip − hip_rest)``: a leg far forward excites its extensor (stance) and a
    leg far back its flexor (swing), which entrains the rhythm to the body.
    """

    tonic_min: float = 0.25
    tonic_max: float = 0.773
    rate_min: float = 0.765
    rate_max: float = 1.197
    hip_rest: float = 0.299
    knee_rest: float = -0.37
    hip_amplitude: float = 0.588
    knee_amplitude: float = 1.206
    stiffness: float = 41.2
    """Joint stiffness of the equilibrium-point control (N·m/rad)."""
    damping: float = 0.216
    """Joint damping of the equilibrium-point control (N·m·s/rad)."""
    feedback_gain: float = 0.668
    """Proprioceptive feedback gain (per rad of hip angle)."""

    def __post_init__(self) -> None:
        for name in ("tonic_max", "rate_min", "rate_max", "stiffness"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"SpinalMapping.{name} must be a positive number, got {value!r}")
        for name in ("tonic_min", "hip_amplitude", "knee_amplitude", "damping", "feedback_gain"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"SpinalMapping.{name} must be a non-negative number, got {value!r}")
        if self.rate_max < self.rate_min:
            raise ValueError(f"SpinalMapping needs rate_min <= rate_max, got {self.rate_min} > {self.rate_max}")
        if self.tonic_max < self.tonic_min:
            raise ValueError(f"SpinalMapping needs tonic_min <= tonic_max, got {self.tonic_min} > {self.tonic_max}")
        for name in ("hip_rest", "knee_rest"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"SpinalMapping.{name} must be finite")

    @functools.cached_property
    def rest(self) -> np.ndarray:
        """Rest angles (rad) of rear hip, rear knee, front hip, front knee."""
        return np.array([self.hip_rest, self.knee_rest, self.hip_rest, self.knee_rest])

    @functools.cached_property
    def feedback_matrix(self) -> np.ndarray:
        """``F`` with CPG feedback ``s = F·(q − rest)`` (units × joints)."""
        g = self.feedback_gain
        return np.array([[-g, 0, 0, 0], [g, 0, 0, 0], [0, 0, -g, 0], [0, 0, g, 0]], dtype=np.float64)

    @functools.cached_property
    def motor_matrix(self) -> np.ndarray:
        """``M`` with joint targets ``rest + M·y`` for CPG rates ``y`` (joints × units)."""
        h, k = self.hip_amplitude, self.knee_amplitude
        return np.array([[h, -h, 0, 0], [-k, 0, 0, 0], [0, 0, h, -h], [0, 0, -k, 0]], dtype=np.float64)

    def feedback(self, q: np.ndarray) -> np.ndarray:
        """CPG feedback for joint angles ``q`` (rad; rear hip, rear knee, front hip, front knee)."""
        return self.feedback_matrix @ (q - self.rest)

    def torques(self, y: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Joint torques (N·m) pulling the joints towards ``rest + M·y``: equilibrium-point control."""
        return self.stiffness * (self.motor_matrix @ y - (q - self.rest)) - self.damping * qd


def stepping_cycles(angle: np.ndarray, dt: float, *, hysteresis: float = 0.25) -> np.ndarray:
    """Times (s) at which a joint-angle trace (rad, one sample per ``dt`` s) starts a new stepping cycle.

    A cycle starts where the mean-removed trace rises through zero, counted only after it has been below
    ``−hysteresis·std`` since the last start (so jitter around the mean is not a step). Returns an empty
    array for a flat trace.
    """
    x = np.asarray(angle, dtype=np.float64)
    if x.size < 3:
        return np.zeros(0)
    x = x - x.mean()
    band = hysteresis * x.std()
    if band <= 1e-6:
        return np.zeros(0)
    starts, armed = [], False
    for i in range(1, x.size):
        if x[i] < -band:
            armed = True
        elif armed and x[i - 1] < 0 <= x[i]:
            starts.append(i * dt)
            armed = False
    return np.asarray(starts)


def gait_frequency_and_phase(rear: np.ndarray, front: np.ndarray, dt: float) -> tuple[float, float]:
    """Stepping frequency (Hz) of the rear leg and the front leg's phase lag behind it (deg in [0, 360)).

    Both are measured on hip-angle traces sampled every ``dt`` s of body time. Frequency = (cycles − 1) /
    (time between the first and last cycle start); phase = circular mean over rear cycles of
    360°·(front start − rear start)/(rear cycle length). NaN where fewer than two cycles are found.
    """
    r, f = stepping_cycles(rear, dt), stepping_cycles(front, dt)
    if r.size < 2:
        return float("nan"), float("nan")
    frequency = (r.size - 1) / (r[-1] - r[0])
    phases = []
    for t0, t1 in itertools.pairwise(r):
        inside = f[(f >= t0) & (f < t1)]
        if inside.size:
            phases.append(2 * np.pi * (inside[0] - t0) / (t1 - t0))
    if not phases:
        return float(frequency), float("nan")
    phase = np.degrees(np.angle(np.mean(np.exp(1j * np.asarray(phases))))) % 360.0
    return float(frequency), float(phase)


class CPGGaitEnv(MujocoBodyEnv):
    r"""Walk at a commanded forward speed by modulating the descending drive of a spinal CPG.

    ## Description
    A planar legged walker (``envs/assets/cpg_walker.xml``: a 0.3 m capsule torso of 1 kg with a rear and a
    front leg, each a 0.2 m thigh, a 0.2 m shin and a spherical foot; 2.8 kg in all; hip and knee motors of
    10 N·m) is driven by a spinal central pattern generator: two Matsuoka half-centre oscillators, one per
    leg, each a flexor and an extensor unit with mutual inhibition and adaptation, coupled by crossed
    inhibition so that the legs alternate (see :mod:`encephagen_gym.envs.cpg`), and receiving proprioceptive
    feedback from the hip angles. The CPG is integrated **inside the env, once per 5 ms physics step**, so its
    time is the body's time; the agent acts every ``dt`` = 20 ms by setting the descending drive of each leg.
    Each episode commands a target forward speed, drawn uniformly from ``target_speed_range``.

    The mapping is :class:`SpinalMapping`. Drive → CPG: ``u = (drive + 1)/2``; tonic input
    ``c = 0.25 + (0.773 − 0.25)·u`` (amplitude) and rate ``r = 0.765 + (1.197 − 0.765)·u`` (frequency; it scales
    the CPG's time constants τ = 50 ms and τ_a = 546 ms). CPG → joints: equilibrium-point control, the hip
    held at ``0.299 + 0.588·(y_flexor − y_extensor)`` rad and the knee at ``−0.37 − 1.206·y_flexor`` rad by
    joint springs of 41.2 N·m/rad (damping 0.216 N·m·s/rad), so the knee folds while the leg swings forward.
    Joints → CPG: hip-angle feedback of gain 0.668 excites the extensor of a leg that is forward and the flexor
    of a leg that is back. More drive gives a larger and faster rhythm, a longer and quicker stride: with both
    legs at constant drive 0, 0.5 and 1 the walker steps at 1.36, 1.56 and 1.71 Hz of body time in anti-phase
    (180–192°) and walks at 0.17, 0.28 and 0.34 m/s; at drive −1 it steps in place at 0.76 Hz without
    progress (means of 20 episodes, ``python scripts/calibrate_bodies.py cpg``). The walker keeps the layout and
    masses of the original encephagen "SimpleBody" (torso 0.3 m and 1 kg with the legs at its ends, hips ±60°,
    knees −90°…0°, 5 ms steps), with 0.2 m leg segments, 4 cm feet and 10 N·m motors (the original: 5 cm,
    20 N·m). What makes it walk: a CPG that oscillates (the original's inhibition, 2.5 + 1.5 > 1 + β, stops the
    rhythm) on the physics clock, equilibrium-point rather than open-loop torque output, a crouched rest
    posture and implicit integration.

    With ``cpg=False`` the CPG is removed and the agent sets the four motor torques directly (the no-CPG
    control of the same body and task). Reference policies: ``cpg=True``, :class:`SpeedTrackingDrive` (a PI
    controller from speed error to drive); ``cpg=False``, :class:`SpinalTorquePolicy` (the same CPG run inside
    the policy at 50 Hz).

    ## Action Space
    ``cpg=True``: ``Box(-1, 1, (2,), float32)``, the descending drive of the rear and the front leg.
    ``cpg=False``: ``Box(-1, 1, (4,), float32)``, torques of rear hip, rear knee, front hip, front knee
    (torque = 10 N·m × action).

    ## Observation Space
    ``Box(-inf, inf, (25,), float32)`` (``cpg=False``: 17, without ``cpg``):

    | index | modality (``observation_layout`` key) | observation | unit |
    |---|---|---|---|
    | 0 | ``vestibular`` | torso height | m |
    | 1 | ``vestibular`` | torso pitch (positive = nose down) | rad |
    | 2, 3 | ``vestibular`` | torso forward and vertical velocity | m/s |
    | 4 | ``vestibular`` | torso pitch rate | rad/s |
    | 5 | ``vestibular`` | forward speed smoothed over ``speed_tau_s`` (the speed that is rewarded) | m/s |
    | 6–9 | ``proprioception`` | rear hip, rear knee, front hip, front knee angles | rad |
    | 10–13 | ``proprioception`` | the same joints' angular velocities | rad/s |
    | 14, 15 | ``touch`` | rear / front foot touching the ground (1) or not (0), at the last physics step | – |
    | 16–19 | ``cpg`` | membrane states x of rear flexor, rear extensor, front flexor, front extensor | – |
    | 20–23 | ``cpg`` | adaptation states v of the same units | – |
    | 24 | ``command`` | target forward speed | m/s |

    ## Rewards
    ``reward = alive + tracking`` (both in ``info["reward_terms"]``): ``alive`` = ``alive_bonus`` (default
    0.1) per step; ``tracking`` = ``tracking_weight``·exp(−((v̄ − v*)/``tracking_sigma``)²) (default weight 1,
    σ = 0.05 m/s), with v̄ the smoothed forward speed (observation 5; exponential average of the torso's
    forward velocity with time constant ``speed_tau_s`` = 1 s) and v* the target speed.

    ## Starting State
    Standing at rest in the rest posture (hips ``hip_rest``, knees ``knee_rest``, feet on the ground), joint
    angles perturbed by uniform noise of ±``reset_noise_scale`` rad (default 0.02); CPG membrane states
    uniform in [0, 0.1] (which leg steps first), adaptation 0; target speed uniform in
    ``target_speed_range``.

    ## Episode End
    * Termination: a fall — torso below 0.2 m or pitched more than 1 rad; or unstable physics (MuJoCo's
      bad-state warnings, ``info["physics_unstable"]``; see :mod:`encephagen_gym.envs.body_env`).
    * Truncation: after ``episode_s`` seconds of body time (default 10 s = 500 steps), by the env itself
      (no ``TimeLimit`` wrapper is registered). A step after the end raises ``RuntimeError`` until ``reset``.

    ## Info
    ``reward_terms``; ``physics_unstable`` (bool); ``time_s`` (s); ``speed`` (smoothed forward speed, m/s);
    ``target_speed`` (m/s); ``x_position`` (m). On the final step ``metrics`` (all NaN but ``physics_unstable``
    = 1.0 after unstable physics): ``mean_speed`` (torso displacement ÷ episode time,
    m/s), ``speed_error`` (mean |v̄ − v*| after the first 2 s of body time, m/s), ``stepping_frequency_hz``
    (rear-hip cycles per second of body time after the first 2 s; NaN if fewer than two cycles),
    ``interleg_phase_deg`` (front hip's phase lag behind the rear hip, 180 = alternation; NaN if undefined),
    ``target_speed``, ``fell`` and ``physics_unstable`` (1.0 or 0.0).

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``cpg`` | True | bool | drive the legs through the CPG (action = 2 drives) or directly (4 torques) |
    | ``target_speed_range`` | ``(0.05, 0.3)`` | finite, low ≤ high | range of the per-episode target speed (m/s) |
    | ``cpg_params`` | ``MatsuokaParams()`` | a ``MatsuokaParams`` | the oscillators' parameters |
    | ``mapping`` | ``SpinalMapping()`` | a ``SpinalMapping`` | drive → CPG → joints mapping and feedback |
    | ``alive_bonus``, ``tracking_weight`` | 0.1, 1.0 | ≥ 0 | reward terms |
    | ``tracking_sigma`` | 0.05 | > 0 | width of the tracking reward (m/s) |
    | ``speed_tau_s`` | 1.0 | > 0 | time constant of the smoothed speed (s) |
    | ``episode_s`` | 10.0 | (0, 3600] | episode length in body time (s) |
    | ``frame_skip`` | 4 | 1–100 | physics steps (5 ms) per env step |
    | ``reset_noise_scale`` | 0.02 | [0, 0.3] | initial joint-angle noise (rad) |
    | ``render_mode`` | None | None, ``"rgb_array"``, ``"human"`` | side view following the torso |
    | ``width``, ``height`` | 480 | 16–4096 | rendered frame size (pixels) |

    ``dt`` = ``frame_skip`` × 5 ms, in seconds (0.02 by default); ``step_ms`` is the same in ms.

    ## Version History
    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": BODY_RENDER_MODES, "render_fps": 50}
    fall_height = 0.2
    """Torso height (m) below which the walker has fallen."""
    fall_pitch = 1.0
    """Torso pitch (rad) beyond which the walker has fallen."""
    warmup_s = 2.0
    """Body time (s) excluded from the gait metrics (the gait starting up)."""

    def __init__(
        self,
        *,
        cpg: bool = True,
        target_speed_range: tuple[float, float] = (0.05, 0.3),
        cpg_params: MatsuokaParams | None = None,
        mapping: SpinalMapping | None = None,
        alive_bonus: float = 0.1,
        tracking_weight: float = 1.0,
        tracking_sigma: float = 0.05,
        speed_tau_s: float = 1.0,
        episode_s: float = 10.0,
        frame_skip: int = 4,
        reset_noise_scale: float = 0.02,
        render_mode: str | None = None,
        width: int = DEFAULT_SIZE,
        height: int = DEFAULT_SIZE,
    ) -> None:
        if not isinstance(cpg, bool | np.bool_):
            raise ValueError(f"cpg must be True or False, got {cpg!r}")
        if cpg_params is not None and not isinstance(cpg_params, MatsuokaParams):
            raise ValueError(f"cpg_params must be a MatsuokaParams, got {cpg_params!r}")
        if mapping is not None and not isinstance(mapping, SpinalMapping):
            raise ValueError(f"mapping must be a SpinalMapping, got {mapping!r}")
        self.cpg = bool(cpg)
        self.target_speed_range = check_range("target_speed_range", target_speed_range)
        self.cpg_params = cpg_params or MatsuokaParams()
        self.mapping = mapping or SpinalMapping()
        self.alive_bonus = check_number("alive_bonus", alive_bonus, low=0.0)
        self.tracking_weight = check_number("tracking_weight", tracking_weight, low=0.0)
        self.tracking_sigma = check_number("tracking_sigma", tracking_sigma, low=0.0, strict_low=True)
        self.speed_tau_s = check_number("speed_tau_s", speed_tau_s, low=0.0, strict_low=True)
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, low=0.0, high=0.3)
        xml = resources.files("encephagen_gym.envs").joinpath("assets/cpg_walker.xml").read_text()
        super().__init__(
            xml,
            frame_skip=frame_skip,
            render_mode=render_mode,
            width=width,
            height=height,
            camera="side",
        )
        self._init_task(episode_s, self.dt)
        sizes = {"vestibular": 6, "proprioception": 8, "touch": 2}
        if self.cpg:
            sizes["cpg"] = 8
        sizes["command"] = 1
        self._set_spaces(sizes, n_actions=2 if self.cpg else 4)

        m = self.model
        self._gear = m.actuator_gear[:, 0].copy()
        self._feet = np.array([m.geom("rear_foot").id, m.geom("front_foot").id])
        self._floor = m.geom("floor").id
        self._weights = self.cpg_params.weights
        self._speed_decay = float(np.exp(-self.dt / self.speed_tau_s))
        self._cpg_state = MatsuokaState(np.zeros(4), np.zeros(4))
        self._target = 0.0
        self._speed = 0.0
        self._x0 = 0.0
        self._hips = np.zeros((self.episode_steps, 2))
        self._errors = np.zeros(self.episode_steps)

    # ------------------------------------------------------------------------------------------- physics
    def drive_to_cpg(self, drive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tonic input and rate factor of the four CPG units for a per-leg drive in [−1, 1] (see
        :class:`SpinalMapping`)."""
        u = (np.asarray(drive, dtype=np.float64) + 1.0) / 2.0
        mp = self.mapping
        tonic = np.repeat(mp.tonic_min + (mp.tonic_max - mp.tonic_min) * u, 2)
        rate = np.repeat(mp.rate_min + (mp.rate_max - mp.rate_min) * u, 2)
        return tonic, rate

    def _spinal_ctrl(self) -> np.ndarray:
        """One physics step of the spinal cord: feedback → CPG step → joint torques (as motor commands)."""
        mp, d = self.mapping, self.data
        q, qd = d.qpos[3:7], d.qvel[3:7]
        self._cpg_state = matsuoka_step(
            self.cpg_params,
            self._cpg_state,
            self._tonic,
            mp.feedback(q),
            self.model.opt.timestep,
            weights=self._weights,
            decay=self._decay,
        )
        torque = mp.torques(np.maximum(self._cpg_state.x, 0.0), q, qd)
        return np.minimum(np.maximum(torque / self._gear, -1.0), 1.0)

    def _foot_contacts(self) -> np.ndarray:
        geoms = self.data.contact.geom[: self.data.ncon]  # (ncon, 2) geom ids of each contact
        return (geoms[:, :, None] == self._feet).any(axis=(0, 1)).astype(np.float64)

    def _get_obs(self) -> np.ndarray:
        d = self.data
        parts = [
            d.qpos[1:3],
            d.qvel[0:3],
            (self._speed,),
            d.qpos[3:7],
            d.qvel[3:7],
            self._foot_contacts(),
        ]
        if self.cpg:
            parts += [self._cpg_state.x, self._cpg_state.v]
        parts.append((self._target,))
        return np.concatenate(parts, dtype=np.float32)

    def rest_pose(self) -> np.ndarray:
        """qpos of the walker standing in the rest posture with its lower foot touching the ground."""
        mp, m = self.mapping, self.model
        d = mujoco.MjData(m)
        d.qpos[3:7] = (mp.hip_rest, mp.knee_rest, mp.hip_rest, mp.knee_rest)
        mujoco.mj_kinematics(m, d)
        lowest = min(d.geom_xpos[g, 2] - m.geom_size[g, 0] for g in self._feet)
        d.qpos[1] = -lowest + 1e-3  # rootz is measured from the torso's initial height
        return d.qpos.copy()

    # ------------------------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:] = self.rest_pose()
        noise = self.reset_noise_scale
        d.qpos[3:7] += self.np_random.uniform(-noise, noise, size=4)
        mujoco.mj_forward(m, d)
        self._cpg_state = MatsuokaState(self.np_random.uniform(0.0, 0.1, size=4), np.zeros(4))
        self._target = float(self.np_random.uniform(*self.target_speed_range))
        self._tonic, rate = self.drive_to_cpg(np.zeros(2))
        self._decay = matsuoka_decay(self.cpg_params, m.opt.timestep, rate)
        self._speed = 0.0
        self._x0 = float(d.qpos[0])
        self._hips[:] = 0.0
        self._errors[:] = 0.0
        self._fell = False
        self._start_episode()
        return self._get_obs(), self._info(0)

    def _info(self, steps: int) -> dict[str, Any]:
        return {
            "time_s": steps * self.dt,
            "speed": self._speed,
            "target_speed": self._target,
            "x_position": float(self.data.qpos[0]),
        }

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        m, d = self.model, self.data
        if self.cpg:
            self._tonic, rate = self.drive_to_cpg(a)
            self._decay = matsuoka_decay(self.cpg_params, m.opt.timestep, rate)
            for _ in range(self.frame_skip):
                d.ctrl[:] = self._spinal_ctrl()
                mujoco.mj_step(m, d)
        else:
            d.ctrl[:] = a
            mujoco.mj_step(m, d, nstep=self.frame_skip)
        self._speed = self._speed_decay * self._speed + (1.0 - self._speed_decay) * float(d.qvel[0])
        step = self.elapsed_steps
        self._hips[step] = d.qpos[[3, 5]]
        self._errors[step] = abs(self._speed - self._target)
        height, pitch = d.qpos[1] + m.body_pos[1, 2], d.qpos[2]
        self._fell = bool(height < self.fall_height or abs(pitch) > self.fall_pitch)
        terms = {
            "alive": self.alive_bonus,
            "tracking": self.tracking_weight
            * float(np.exp(-(((self._speed - self._target) / self.tracking_sigma) ** 2))),
        }
        return self._finish_step(self._get_obs(), terms, self._fell, self._info(step + 1))

    def _episode_metrics(self, terminated: bool) -> dict[str, float]:
        n = self.elapsed_steps
        start = min(round(self.warmup_s / self.dt), n - 1) if n * self.dt > self.warmup_s else 0
        frequency, phase = gait_frequency_and_phase(self._hips[start:n, 0], self._hips[start:n, 1], self.dt)
        return {
            "mean_speed": (float(self.data.qpos[0]) - self._x0) / (n * self.dt),
            "speed_error": float(self._errors[start:n].mean()),
            "stepping_frequency_hz": frequency,
            "interleg_phase_deg": phase,
            "target_speed": self._target,
            "fell": float(self._fell),
        }

    def _frame_status(self) -> list[str]:
        return [
            f"t = {self.elapsed_steps * self.dt:.2f} s",
            f"distance {float(self.data.qpos[0]) - self._x0:+.2f} m",
            f"speed {self._speed:.2f} m/s (target {self._target:.2f})",
        ]

    def make_reference_policy(self) -> SpeedTrackingDrive | SpinalTorquePolicy:
        """``cpg=True``: :class:`SpeedTrackingDrive`; ``cpg=False``: :class:`SpinalTorquePolicy`."""
        if self.cpg:
            return SpeedTrackingDrive(self.dt, speed_index=5, target_index=self.observation_layout["command"].start)
        return SpinalTorquePolicy(self)


class SpeedTrackingDrive:
    """Reference policy of ``CPGGaitEnv(cpg=True)``: a PI controller from speed error to descending drive.

    Both legs get ``drive = clip(d0 + kp·e + ki·∫e dt, −1, 1)`` with ``e = v* − v̄`` (m/s) read from the
    observation (target speed and smoothed speed), the integral advanced by ``dt`` s per call with
    anti-windup (it stops growing while the drive is saturated). No model of the body, no look-up table:
    the drive settles wherever the walker reaches the commanded speed.
    """

    def __init__(
        self,
        dt: float,
        *,
        speed_index: int,
        target_index: int,
        d0: float = 0.0,
        kp: float = 2.0,
        ki: float = 0.5,
    ) -> None:
        self.dt = check_number("dt", dt, low=0.0, strict_low=True)
        self.speed_index, self.target_index = int(speed_index), int(target_index)
        self.d0, self.kp, self.ki = float(d0), float(kp), float(ki)
        self._integral = 0.0

    def reset(self) -> None:
        """Forget the integral."""
        self._integral = 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        error = float(obs[self.target_index] - obs[self.speed_index])
        raw = self.d0 + self.kp * error + self.ki * self._integral
        if -1.0 < raw < 1.0 or raw * error < 0:
            self._integral += error * self.dt
        drive = float(np.clip(self.d0 + self.kp * error + self.ki * self._integral, -1.0, 1.0))
        return np.full(2, drive, dtype=np.float32)


class SpinalTorquePolicy:
    """Reference policy of ``CPGGaitEnv(cpg=False)``: the env's spinal CPG and joint mapping, run inside the
    policy at the env step rate (one CPG step of ``dt`` per call) and returning motor torques, with the
    speed-tracking PI drive of :class:`SpeedTrackingDrive`. It shows what the torque interface can do when
    driven by the same pattern generator at 50 Hz instead of on every physics step."""

    def __init__(self, env: CPGGaitEnv) -> None:
        self.params, self.mapping, self.dt = env.cpg_params, env.mapping, env.dt
        self.drive_to_cpg = env.drive_to_cpg
        self.gear = env.model.actuator_gear[:, 0].copy()
        self.drive = SpeedTrackingDrive(env.dt, speed_index=5, target_index=env.observation_layout["command"].start)
        self.reset()

    def reset(self) -> None:
        """Restart the CPG (fixed, slightly asymmetric start) and the speed controller."""
        self.state = MatsuokaState(np.array([0.1, 0.0, 0.0, 0.05]), np.zeros(4))
        self.drive.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        mp = self.mapping
        q, qd = np.asarray(obs[6:10], dtype=np.float64), np.asarray(obs[10:14], dtype=np.float64)
        tonic, rate = self.drive_to_cpg(self.drive(obs))
        self.state = matsuoka_step(self.params, self.state, tonic, mp.feedback(q), self.dt, rate)
        torque = mp.torques(np.maximum(self.state.x, 0.0), q, qd)
        return np.clip(torque / self.gear, -1.0, 1.0).astype(np.float32)
