"""Encephagen-WormCrawl-v0: a segmented worm that crawls by lateral undulation against anisotropic drag."""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np

from encephagen_gym.envs.body_env import BODY_RENDER_MODES, DEFAULT_SIZE, MujocoBodyEnv
from encephagen_gym.envs.checks import check_integer, check_number


def worm_mjcf(
    n_segments: int,
    *,
    segment_length: float = 0.1,
    radius: float = 0.025,
    joint_range_deg: float = 60.0,
    joint_stiffness: float = 0.5,
    joint_damping: float = 0.02,
    gear: float = 1.0,
    timestep: float = 0.005,
) -> str:
    """MJCF of a planar worm: ``n_segments`` capsules (m) in a chain along −x from the head, lateral hinges.

    The head (``seg0``) carries the root joints: slides along world x and y and a yaw hinge, so the worm moves
    in the ground plane; its weight is carried by that plane constraint (there are no contacts). Between
    consecutive segments a hinge about the vertical axis (range ±``joint_range_deg``, passive stiffness in
    N·m/rad and damping in N·m·s/rad) is driven by a motor of gear ``gear`` N·m.
    """
    half = segment_length / 2
    # Capsules span the segment from joint to joint; their rounded ends overlap the neighbours' (no contacts).
    geom = f'<geom type="capsule" fromto="{half:.6g} 0 0 {-half:.6g} 0 0" size="{radius:.6g}"/>'
    camera_height = 0.3 + 1.1 * n_segments * segment_length  # a top view above the centre of mass (m)
    chain_open, chain_close, motors = [], [], []
    for i in range(1, n_segments):
        chain_open.append(
            f'<body name="seg{i}" pos="{-segment_length:.6g} 0 0">'
            f'<joint name="bend{i}" pos="{half:.6g} 0 0" range="{-joint_range_deg:.6g} {joint_range_deg:.6g}"/>'
            f"{geom}"
        )
        chain_close.append("</body>")
        motors.append(f'<motor name="bend{i}" joint="bend{i}" gear="{gear:.6g}"/>')
    return f"""<mujoco model="worm">
  <compiler angle="degree"/>
  <option timestep="{timestep:.6g}" integrator="implicitfast"/>
  <visual><global offwidth="{DEFAULT_SIZE}" offheight="{DEFAULT_SIZE}"/></visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.55 0.60 0.62" rgb2="0.48 0.53 0.56" width="200"
      height="200"/>
    <material name="agar" texture="grid" texrepeat="5 5" texuniform="true"/>
  </asset>
  <default>
    <geom contype="0" conaffinity="0" density="1000" rgba="0.93 0.72 0.68 1"/>
    <joint type="hinge" axis="0 0 1" limited="true" stiffness="{joint_stiffness:.6g}"
      damping="{joint_damping:.6g}" armature="0.001"/>
    <motor ctrllimited="true" ctrlrange="-1 1"/>
  </default>
  <worldbody>
    <light directional="true" pos="0 0 4" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="40 40 0.1" material="agar"/>
    <body name="seg0" pos="0 0 {radius:.6g}">
      <camera name="top" mode="trackcom" pos="{-(n_segments - 1) * half:.6g} 0 {camera_height:.6g}"
        xyaxes="1 0 0 0 1 0"/>
      <joint name="root_x" type="slide" axis="1 0 0" limited="false" stiffness="0" damping="0" armature="0"/>
      <joint name="root_y" type="slide" axis="0 1 0" limited="false" stiffness="0" damping="0" armature="0"/>
      <joint name="root_yaw" type="hinge" axis="0 0 1" limited="false" stiffness="0" damping="0" armature="0"/>
      <geom type="capsule" fromto="{half:.6g} 0 0 {-half:.6g} 0 0" size="{radius:.6g}" rgba="0.70 0.30 0.35 1"/>
      {"".join(chain_open)}{"".join(chain_close)}
    </body>
  </worldbody>
  <actuator>{"".join(motors)}</actuator>
</mujoco>
"""


class WormCrawlEnv(MujocoBodyEnv):
    r"""Crawl forward like *C. elegans* on agar: lateral undulation of a segmented worm against anisotropic drag.

    ## Description
    The worm is generated from ``n_segments`` (default 8) segments of ``segment_length`` 0.1 m (capsules of
    radius 0.025 m spanning joint to joint, 0.26 kg each), chained head to tail by lateral (yaw) hinges of ±60°
    with passive bending stiffness and damping, each driven by a motor. It moves in the ground plane (root
    slides in x and y and a yaw hinge; the plane carries its weight, there are no contacts). The substrate acts
    through **resistive-force theory** (RFT), the standard model of nematode crawling: every physics step, each
    segment feels a viscous drag applied at its centre in its own frame,

    ``F = −c_t·L·(v·t̂)·t̂ − c_n·L·(v·n̂)·n̂``, and a torque ``−c_n·L³/12·ω_z`` from turning in place,

    where ``t̂`` is the segment's axis, ``n̂`` its in-plane normal, ``v`` its centre's velocity, ``L`` its length,
    ``c_t = drag_tangential`` (N·s/m²) and ``c_n = drag_ratio·c_t``. The ratio ``c_n/c_t`` defaults to 10, the
    value measured for *C. elegans* crawling on agar (normal ≈ 220 and tangential ≈ 22 in Shen et al.,
    "Undulatory locomotion of *C. elegans* on wet surfaces", arXiv:1112.1118). MuJoCo realises it through
    ``data.xfrc_applied``: the env computes the drag from the segments' current velocities between
    ``mj_step1`` and ``mj_step2`` of every physics step, so it acts on the physics clock.

    Because sideways motion is resisted ``drag_ratio`` times more than gliding along the body, a wave of bending
    that travels from head to tail pushes the worm forward, and one from tail to head backward. With isotropic
    drag (``drag_ratio=1``) the same wave moves it less than a tenth as far (and backward): the model is
    strongly but not perfectly overdamped (segment inertia relaxes in ≈ 0.26 s along the body and ≈ 0.03 s
    across it), so a little inertial motion remains; random torques, for instance, drift it by ≈ 0.2 m in
    10 s (``python scripts/calibrate_bodies.py worm``).

    ## Action Space
    ``Box(-1, 1, (n_segments − 1,), float32)``: torque commands of the bending motors, head to tail
    (torque = ``gear`` × action, default gear 1 N·m; positive turns the posterior segment counter-clockwise
    seen from above).

    ## Observation Space
    ``Box(-inf, inf, (2(n_segments − 1) + 5,), float32)`` (default 19):

    | slice | modality (``observation_layout`` key) | observation | unit |
    |---|---|---|---|
    | 0:n−1 | ``proprioception`` | bending angles, head to tail | rad |
    | n−1:2(n−1) | ``proprioception`` | bending angular velocities | rad/s |
    | +0, +1 | ``vestibular`` | cos, sin of the head's heading relative to the initial heading | – |
    | +2, +3 | ``vestibular`` | centre-of-mass velocity along / to the left of the initial heading | m/s |
    | +4 | ``vestibular`` | head yaw rate | rad/s |

    ## Rewards
    ``reward = forward + ctrl_cost`` (both in ``info["reward_terms"]``): ``forward`` = centre-of-mass
    displacement along the initial heading during the step ÷ ``dt`` (m/s); ``ctrl_cost`` =
    −``ctrl_cost_weight`` × ‖action‖² (default weight 0.005).

    ## Starting State
    Straight worm at rest at the origin, heading uniform in [−π, π); every bending angle perturbed by uniform
    noise of ±``reset_noise_scale`` rad (default 0.02).

    ## Episode End
    No termination, except after unstable physics (``info["physics_unstable"]``; see
    :mod:`encephagen_gym.envs.body_env`). Truncation after ``episode_s`` seconds of body time (default 10 s =
    500 steps of 20 ms), by the env itself (no ``TimeLimit`` wrapper is registered). A step after the end
    raises ``RuntimeError`` until ``reset``.

    ## Info
    ``reward_terms``; ``physics_unstable`` (bool); ``time_s`` (s); ``com_forward_m`` (centre-of-mass
    displacement along the initial heading so far, m). On the final step ``metrics``: ``forward_distance_m``
    (that displacement at the end of the episode, m), ``lateral_distance_m`` (to the left of the initial
    heading, m), ``mean_forward_speed`` (m/s) and ``physics_unstable`` (1.0 or 0.0; after unstable physics the
    other metrics are NaN).

    ## Arguments
    | argument | default | accepted | meaning |
    |---|---|---|---|
    | ``n_segments`` | 8 | 3–20 | number of segments; the action has ``n_segments − 1`` entries |
    | ``segment_length`` | 0.1 | [0.1, 1] | segment length (m) |
    | ``drag_tangential`` | 10.0 | [1, 30] | tangential drag coefficient per unit length ``c_t`` (N·s/m²) |
    | ``drag_ratio`` | 10.0 | [1, 20] | normal-to-tangential drag ratio ``c_n/c_t`` |
    | ``joint_stiffness`` | 0.5 | [0, 20] | passive bending stiffness (N·m/rad) |
    | ``gear`` | 1.0 | (0, 2] | motor torque per unit action (N·m) |
    | ``ctrl_cost_weight`` | 0.005 | ≥ 0 | weight of the control cost |
    | ``episode_s`` | 10.0 | (0, 3600] | episode length in body time (s) |
    | ``frame_skip`` | 4 | 1–100 | physics steps (5 ms) per env step |
    | ``reset_noise_scale`` | 0.02 | [0, 0.5] | initial bending noise (rad) |
    | ``render_mode`` | None | None, ``"rgb_array"``, ``"human"`` | top-down camera following the worm |
    | ``width``, ``height`` | 480 | 16–4096 | rendered frame size (pixels) |

    ``dt`` = ``frame_skip`` × 5 ms, in seconds (0.02 by default); ``step_ms`` is the same in ms.

    The physical ranges (:attr:`LIMITS`) are where the simulation was measured stable: every corner of the box,
    with gear at its maximum, ran 10 s episodes under random, bang-bang and zigzag torques and a 3 Hz wave
    without a MuJoCo warning, the centre of mass never faster than 1.4 m/s (``python
    scripts/calibrate_bodies.py stability``). Outside it the simulation blew up: ``gear`` ≥ 15 (MuJoCo reset
    the worm after its centre of mass reached thousands of m/s), ``drag_tangential`` × ``drag_ratio`` ≥ 1000
    (the drag, applied explicitly each 5 ms physics step, exceeds its stability limit ``c_n·L·Δt/m < 2``), and
    light 6 cm segments with little drag at gear 2.

    ## Version History
    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": BODY_RENDER_MODES, "render_fps": 50}
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_segments": (3, 20),
        "segment_length": (0.1, 1.0),
        "drag_tangential": (1.0, 30.0),
        "drag_ratio": (1.0, 20.0),
        "joint_stiffness": (0.0, 20.0),
        "gear": (0.0, 2.0),
    }
    """Accepted range of each physical argument (both ends included, except ``gear > 0``): the box in which
    the simulation was measured stable (``python scripts/calibrate_bodies.py stability``). A subclass may widen
    it to study the model outside; unstable episodes then end with ``info["physics_unstable"]``."""

    def __init__(
        self,
        *,
        n_segments: int = 8,
        segment_length: float = 0.1,
        drag_tangential: float = 10.0,
        drag_ratio: float = 10.0,
        joint_stiffness: float = 0.5,
        gear: float = 1.0,
        ctrl_cost_weight: float = 0.005,
        episode_s: float = 10.0,
        frame_skip: int = 4,
        reset_noise_scale: float = 0.02,
        render_mode: str | None = None,
        width: int = DEFAULT_SIZE,
        height: int = DEFAULT_SIZE,
    ) -> None:
        def limited(name: str, value: Any) -> float:
            low, high = self.LIMITS[name]
            return check_number(name, value, low=low, high=high, strict_low=name == "gear")

        low, high = self.LIMITS["n_segments"]
        self.n_segments = check_integer("n_segments", n_segments, low=int(low), high=int(high))
        self.segment_length = limited("segment_length", segment_length)
        self.drag_tangential = limited("drag_tangential", drag_tangential)
        self.drag_ratio = limited("drag_ratio", drag_ratio)
        joint_stiffness = limited("joint_stiffness", joint_stiffness)
        gear = limited("gear", gear)
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight, low=0.0)
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, low=0.0, high=0.5)
        xml = worm_mjcf(self.n_segments, segment_length=self.segment_length, joint_stiffness=joint_stiffness, gear=gear)
        super().__init__(
            xml,
            frame_skip=frame_skip,
            render_mode=render_mode,
            width=width,
            height=height,
            camera="top",
        )
        self._init_task(episode_s, self.dt)
        n_joints = self.n_segments - 1
        self._set_spaces({"proprioception": 2 * n_joints, "vestibular": 5}, n_actions=n_joints)
        self._segments = slice(1, self.n_segments + 1)  # body ids of seg0..seg{n-1}
        length = self.segment_length
        self._c_t = self.drag_tangential * length  # N·s/m per segment
        self._c_n = self.drag_ratio * self.drag_tangential * length
        self._c_rot = self.drag_ratio * self.drag_tangential * length**3 / 12.0  # N·m·s per segment
        self._yaw0 = 0.0
        self._heading0 = np.array([1.0, 0.0])
        self._com0 = np.zeros(2)
        self._com = np.zeros(2)
        self._com_vel = np.zeros(2)

    # ------------------------------------------------------------------------------------------- physics
    def _apply_drag(self) -> None:
        """Resistive-force drag on every segment from its current velocity (call after ``mj_step1``)."""
        d, seg = self.data, self._segments
        cvel = d.cvel[seg]  # [angular; linear] velocity about the worm's centre of mass, world frame
        wz = cvel[:, 2]
        rx = d.xpos[seg, 0] - d.subtree_com[1, 0]
        ry = d.xpos[seg, 1] - d.subtree_com[1, 1]
        vx = cvel[:, 3] - wz * ry  # velocity of each segment centre (planar: ω = ωz ẑ)
        vy = cvel[:, 4] + wz * rx
        tx, ty = d.xmat[seg, 0], d.xmat[seg, 3]  # segment axis t̂; in-plane normal n̂ = (−ty, tx)
        vt = vx * tx + vy * ty
        vn = vy * tx - vx * ty
        force = d.xfrc_applied[seg]
        force[:, 0] = -self._c_t * vt * tx + self._c_n * vn * ty
        force[:, 1] = -self._c_t * vt * ty - self._c_n * vn * tx
        force[:, 5] = -self._c_rot * wz
        d.xfrc_applied[seg] = force

    def _com_xy(self) -> np.ndarray:
        return self.data.subtree_com[1, :2].copy()

    def _get_obs(self) -> np.ndarray:
        d = self.data
        yaw = d.qpos[2] - self._yaw0
        com_vel = self._com_vel
        h = self._heading0
        return np.concatenate(
            (
                d.qpos[3:],
                d.qvel[3:],
                (np.cos(yaw), np.sin(yaw), com_vel @ h, com_vel @ (-h[1], h[0]), d.qvel[2]),
            ),
            dtype=np.float32,
        )

    # ------------------------------------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._yaw0 = float(self.np_random.uniform(-np.pi, np.pi))
        self.data.qpos[2] = self._yaw0
        noise = self.reset_noise_scale
        self.data.qpos[3:] = self.np_random.uniform(-noise, noise, size=self.n_segments - 1)
        mujoco.mj_forward(self.model, self.data)
        self._heading0 = np.array([np.cos(self._yaw0), np.sin(self._yaw0)])
        self._com0 = self._com_xy()
        self._com = self._com0.copy()
        self._com_vel = np.zeros(2)
        self._start_episode()
        return self._get_obs(), {"time_s": 0.0, "com_forward_m": 0.0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = self._check_action(action)
        m, d = self.model, self.data
        d.ctrl[:] = a
        for _ in range(self.frame_skip):
            mujoco.mj_step1(m, d)
            self._apply_drag()
            mujoco.mj_step2(m, d)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        com = self._com_xy()
        self._com_vel = (com - self._com) / self.dt
        self._com = com
        terms = {
            "forward": float(self._com_vel @ self._heading0),
            "ctrl_cost": -self.ctrl_cost_weight * float(a @ a),
        }
        info = {
            "time_s": (self.elapsed_steps + 1) * self.dt,
            "com_forward_m": float((com - self._com0) @ self._heading0),
        }
        return self._finish_step(self._get_obs(), terms, False, info)

    def _episode_metrics(self, terminated: bool) -> dict[str, float]:
        displacement = self._com - self._com0
        h = self._heading0
        forward = float(displacement @ h)
        return {
            "forward_distance_m": forward,
            "lateral_distance_m": float(displacement @ (-h[1], h[0])),
            "mean_forward_speed": forward / (self.elapsed_steps * self.dt),
        }

    def _frame_status(self) -> list[str]:
        return [
            f"t = {self.elapsed_steps * self.dt:.2f} s",
            f"distance {float((self._com - self._com0) @ self._heading0):+.2f} m (forward)",
        ]

    def make_reference_policy(self) -> TravellingWavePolicy:
        """The open-loop travelling wave with its default frequency, amplitude and wavelength."""
        return TravellingWavePolicy(self.n_segments - 1, self.dt)


class TravellingWavePolicy:
    """Open-loop travelling wave of bending torques, the worm task's reference policy.

    ``action_j(t) = amplitude · sin(2π·(frequency·t − (j + 1)/(wavelength·n_joints)))`` for joint ``j``
    (head = 0), with ``t`` the body time (s) since :meth:`reset` (advanced by ``dt`` per call). A positive
    ``frequency`` (Hz) sends the wave from head to tail, which drives the worm forward; a negative one sends it
    from tail to head (backward crawling). ``wavelength`` is in body lengths (joints spanned per wave ÷
    ``n_joints``); ``amplitude`` is in action units (≤ 1).
    """

    def __init__(
        self,
        n_joints: int,
        dt: float,
        *,
        frequency: float = 1.0,
        amplitude: float = 0.8,
        wavelength: float = 1.0,
    ) -> None:
        if int(n_joints) != n_joints or n_joints < 1:
            raise ValueError(f"n_joints must be a positive integer, got {n_joints!r}")
        self.n_joints = int(n_joints)
        self.dt = check_number("dt", dt, low=0.0, strict_low=True)
        self.frequency = check_number("frequency", frequency)
        self.amplitude = check_number("amplitude", amplitude, low=0.0, high=1.0)
        self.wavelength = check_number("wavelength", wavelength, low=0.0, strict_low=True)
        self._lags = (np.arange(self.n_joints) + 1) / (self.wavelength * self.n_joints)
        self._t = 0.0

    def reset(self) -> None:
        """Restart the wave at t = 0."""
        self._t = 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action = self.amplitude * np.sin(2 * np.pi * (self.frequency * self._t - self._lags))
        self._t += self.dt
        return action.astype(np.float32)
