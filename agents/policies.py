"""``ConnectomePolicy``: the spiking brain as a stable-baselines3 policy (brain + encoder + actor-critic readout).

One decision per environment step, on one clock: the observation is encoded into input current
(:class:`~encephagen_gym.brain.encoders.ObservationEncoder`), the brain runs ``step_ms / dt_ms`` simulation
steps with that current held, the actor-critic readout reads the filtered spikes of its input neurons
(:class:`~encephagen_gym.brain.decoders.ActorCriticReadout`: the action regions by default) and the action
is sampled from its policy. The recurrent state that carries over between decisions — every brain's
membrane, currents and spikes in flight, and the readout trace — is the opaque :class:`ConnectomeState`
that :meth:`ConnectomePolicy.predict` returns, as sb3-contrib's ``RecurrentPPO`` returns its LSTM state;
it stays on the device.

**Withholding.** A naive brain must be able to do nothing: with sampling every 10 ms from a near-uniform
policy it responds in every window and aborts every fixation (issue 9). For an env that names a withhold
action (``env.unwrapped.withhold_action``: the cognitive tasks' 0 = withhold/fixate/no choice), the readout's
initial bias on that action is set so that the untrained policy takes any other action at
``initial_go_rate_hz`` (default 0.3 Hz: a Poisson rate of "go" decisions, 0.003 per 10 ms step). Learning
moves the bias and weights from there. Continuous actions start at the zero (no-op) action: the Gaussian's
mean is tanh(0) = 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from encephagen_gym.brain import BrainConfig, BrainState, SpikingBrain, brain_step, reset_elements
from encephagen_gym.brain.config import resolve_device
from encephagen_gym.brain.decoders import ActorCriticOutput, ActorCriticReadout
from encephagen_gym.brain.encoders import ObservationEncoder
from encephagen_gym.brain.routing import ASSOCIATION_ROLES, INPUT_ROLES, agent_pathways
from encephagen_gym.connectome import check_connectome_name, load_connectome

__all__ = [
    "ACTION_HEADS", "DEFAULT_ACTION_ROLES", "ConnectomePolicy", "ConnectomeState", "agent_brain_config", "check_spaces",
]  # fmt: skip

#: The regions the readout reads by default: where actions are made (primary motor, premotor, basal ganglia),
#: not the sensory regions the encoder drives nor the association regions that hold memory (reading those is
#: the reservoir control: ``readout_roles=("visual",)`` etc.). Roles missing from a connectome are skipped.
DEFAULT_ACTION_ROLES: tuple[str, ...] = ("motor", "premotor", "basal_ganglia")

#: The discrete policy heads ``ConnectomePolicy(action_head=...)`` accepts.
ACTION_HEADS = ("softmax", "gated")

_BRAIN_FIELDS = frozenset(field.name for field in dataclasses.fields(BrainConfig))


@dataclasses.dataclass(eq=False)
class ConnectomeState:
    """The recurrent state between decisions of B brains (opaque to callers; tensors on the policy's device).

    ``brain``: the simulator state; ``readout_trace``: the filtered spikes z̄ ``[B, M]`` of the readout's input
    neurons; ``current``: scratch space for the encoded input ``[B, N]``."""

    brain: BrainState
    readout_trace: torch.Tensor
    current: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.readout_trace.shape[0]


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """ValueError unless the observation is a flat ``Box`` and the action ``Discrete`` or a flat ``Box``."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"ConnectomePolicy supports flat Box observations (a vector of numbers), got {observation_space}; "
            "flatten Dict or image observations first (e.g. gymnasium.wrappers.FlattenObservation)"
        )
    if isinstance(action_space, spaces.Box):
        if len(action_space.shape) != 1 or not np.all(np.isfinite(action_space.low) & np.isfinite(action_space.high)):
            raise ValueError(f"ConnectomePolicy supports flat Box actions with finite bounds, got {action_space}")
    elif not isinstance(action_space, spaces.Discrete):
        raise ValueError(
            f"ConnectomePolicy supports Discrete or Box actions, got {type(action_space).__name__} ({action_space})"
        )


def agent_brain_config(association_inputs: Sequence[str] | None = None, **fields: Any) -> BrainConfig:
    """The agent's default brain: :class:`~encephagen_gym.brain.BrainConfig` with the routing pathways of
    :func:`~encephagen_gym.brain.routing.agent_pathways` (those whose roles the connectome has; only the input
    roles ``association_inputs`` feed the association roles; None: all) and adaptive (ALIF) neurons in the
    association roles (``alif_fraction`` 0.4 of their excitatory neurons, τ_a 1 s, β 2 mV: the memory substrate
    e-prop can use), then ``fields`` on top. ValueError for ``association_inputs`` together with ``pathways``."""
    if association_inputs is not None and "pathways" in fields:
        raise ValueError("give either pathways or association_inputs, not both (association_inputs chooses pathways)")
    connectome = fields.get("connectome", BrainConfig.connectome)
    check_connectome_name(connectome)
    present = set(load_connectome(connectome).roles)
    pathways = tuple(
        pair
        for pair in agent_pathways(INPUT_ROLES if association_inputs is None else association_inputs)
        if set(pair) <= present
    )
    adaptive = tuple(role for role in ASSOCIATION_ROLES if role in present)
    return BrainConfig(**{"pathways": pathways, "alif_roles": adaptive, **fields})


def _brain_config(
    brain: BrainConfig | None,
    fields: Mapping[str, Any],
    device: torch.device,
    association_inputs: Sequence[str] | None = None,
) -> BrainConfig:
    unknown = sorted(set(fields) - _BRAIN_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown ConnectomePolicy argument(s) {unknown}; BrainConfig fields are {sorted(_BRAIN_FIELDS)}"
        )
    if brain is not None and not isinstance(brain, BrainConfig):
        raise ValueError(f"brain must be a BrainConfig, got {type(brain).__name__}")
    if brain is None:
        return agent_brain_config(association_inputs, **dict(fields), device=str(device))
    if association_inputs is not None:
        raise ValueError("association_inputs chooses the default brain's pathways; with a whole brain=BrainConfig "
                         "give its pathways instead")  # fmt: skip
    return dataclasses.replace(brain, **dict(fields), device=str(device))


class ConnectomePolicy(BasePolicy):
    """A connectome-wired spiking brain that acts in an environment (see the module docstring).

    Args:
        observation_space, action_space: a flat ``Box`` observation; a ``Discrete`` or flat ``Box`` action.
        lr_schedule: unused (learning is local; SB3 passes its schedule to every policy).
        brain: a whole :class:`~encephagen_gym.brain.BrainConfig` (used as given); without it the brain is
            :func:`agent_brain_config` (the plain brain plus the routing pathways of
            :mod:`encephagen_gym.brain.routing`). Any BrainConfig field may also be given directly
            (``neurons_per_region=20``, ``connectome="tvb96:rewired:3"``, ``backend=...``, ``pathways=()``)
            and overrides either.
        association_inputs: without ``brain`` or ``pathways``, the input roles whose pathways feed the
            association roles (default all input roles; e.g. ``("visual",)``, see
            :func:`~encephagen_gym.brain.routing.agent_pathways`).
        step_ms: duration of one environment step in ms (the env's ``step_ms``); the brain runs
            ``step_ms / dt_ms`` steps per decision (ValueError if that is not a whole number).
        observation_layout: modality → ``(start, stop)`` of the observation (the env's
            ``observation_layout``); None routes the whole vector as one generic modality to the primary
            sensory regions.
        readout_roles: region roles whose excitatory neurons feed the readout (default: the action regions).
        readout_tau_ms: time constant of the readout's leaky integration (ms), or several (e.g. ``(200.0, 20.0)``:
            the readout reads a slow and a fast filtered copy of its inputs; e-prop's eligibility filter uses the
            first).
        choice_tau_ms: with ``action_head="gated"``, the filtered copies (time constants of ``readout_tau_ms``)
            the choice head reads; default all. E.g. ``readout_tau_ms=(200.0, 20.0), choice_tau_ms=200.0``: the
            gate reads both, the choice only the slow copy.
        standardise_readout: the readout reads each input centred and scaled by running statistics, updated
            while learning (see :class:`~encephagen_gym.brain.decoders.ActorCriticReadout`).
        input_gain_mv, signed_code, modality_roles, modality_codes: the encoder's options
            (:class:`~encephagen_gym.brain.encoders.ObservationEncoder`).
        withhold_action: the action that means "do nothing" (Discrete only), or None.
        initial_go_rate_hz: rate (Hz) at which the untrained policy takes any other action than
            ``withhold_action``.
        action_head: ``"softmax"`` (one softmax over all actions) or ``"gated"`` (Discrete with a
            ``withhold_action``: a withhold gate and a softmax over the other actions, so that when to act and
            which action to take are learned by separate heads; see
            :class:`~encephagen_gym.brain.decoders.ActorCriticReadout`).
        log_std_init: initial log σ of the Gaussian policy (continuous actions).
        policy_init_std: std of the initial policy weights (default 0.1/√M: a nearly flat policy).
        update_statistics_in_predict: let :meth:`predict` keep updating the encoder's running mean/std
            (default False: frozen after training).
        seed: seeds the readout's initial weights, the generator of :meth:`predict` and, unless ``wiring_seed``
            or ``brain`` gives one, the wiring.
        wiring_seed: the network's wiring seed (``BrainConfig.seed``).
        device: where the brain and everything else lives (``"auto"``: CUDA when available).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Callable[[float], float] | None = None,
        *,
        brain: BrainConfig | None = None,
        association_inputs: Sequence[str] | None = None,
        step_ms: float | None = None,
        observation_layout: Mapping[str, tuple[int, int]] | None = None,
        readout_roles: Sequence[str] = DEFAULT_ACTION_ROLES,
        readout_tau_ms: float | Sequence[float] = 20.0,
        choice_tau_ms: float | Sequence[float] | None = None,
        standardise_readout: bool = True,
        input_gain_mv: float | Mapping[str, float] = 15.0,
        signed_code: str = "push_pull",
        modality_roles: Mapping[str, Sequence[str]] | None = None,
        modality_codes: Mapping[str, str] | None = None,
        withhold_action: int | None = None,
        initial_go_rate_hz: float = 0.3,
        action_head: str = "softmax",
        log_std_init: float = -0.5,
        policy_init_std: float | None = None,
        update_statistics_in_predict: bool = False,
        seed: int = 0,
        wiring_seed: int | None = None,
        device: torch.device | str = "auto",
        **brain_fields: Any,
    ) -> None:
        check_spaces(observation_space, action_space)
        super().__init__(observation_space, action_space)
        device = resolve_device(device)
        if not (isinstance(seed, int) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if wiring_seed is None:
            wiring_seed = brain_fields.pop("seed", brain.seed if isinstance(brain, BrainConfig) else seed)
        config = _brain_config(brain, {**brain_fields, "seed": wiring_seed}, device, association_inputs)
        if step_ms is None:
            raise ValueError(
                "step_ms (the duration of one environment step in ms) is required: read it from the env "
                "(env.unwrapped.step_ms) or pass it, e.g. step_ms=20 for an env with dt = 0.02 s"
            )
        self.substeps = config.substeps(float(step_ms))
        self.step_ms = float(step_ms)
        if not (math.isfinite(initial_go_rate_hz) and initial_go_rate_hz > 0):
            raise ValueError(f"initial_go_rate_hz must be a positive number of Hz, got {initial_go_rate_hz!r}")
        if action_head not in ACTION_HEADS:
            raise ValueError(f"action_head must be one of {ACTION_HEADS}, got {action_head!r}")
        if action_head == "gated" and (withhold_action is None or isinstance(action_space, spaces.Box)):
            raise ValueError(
                "action_head='gated' needs Discrete actions and a withhold_action (the env's "
                "withhold_action, or pass it in policy_kwargs)"
            )
        self._constructor = dict(
            brain=config, step_ms=self.step_ms,
            observation_layout=None if observation_layout is None else dict(observation_layout),
            readout_roles=tuple(readout_roles),
            readout_tau_ms=readout_tau_ms if isinstance(readout_tau_ms, int | float) else tuple(readout_tau_ms),
            choice_tau_ms=choice_tau_ms if choice_tau_ms is None or isinstance(choice_tau_ms, int | float)
            else tuple(choice_tau_ms),
            standardise_readout=standardise_readout, input_gain_mv=input_gain_mv,
            signed_code=signed_code, modality_roles=modality_roles,
            modality_codes=None if modality_codes is None else dict(modality_codes), withhold_action=withhold_action,
            initial_go_rate_hz=initial_go_rate_hz, action_head=action_head, log_std_init=log_std_init,
            policy_init_std=policy_init_std,
            update_statistics_in_predict=update_statistics_in_predict, seed=seed,
        )  # fmt: skip
        self.update_statistics_in_predict = bool(update_statistics_in_predict)
        self.seed = seed

        self.brain = SpikingBrain(config)
        network = self.brain.network
        layout = None
        if observation_layout is not None:
            layout = {name: slice(int(start), int(stop)) for name, (start, stop) in dict(observation_layout).items()}
        self.encoder = ObservationEncoder(
            network, layout, int(observation_space.shape[0]), gain_mv=input_gain_mv, signed_code=signed_code,
            modality_roles=modality_roles, modality_codes=modality_codes,
        )  # fmt: skip
        present = [role for role in readout_roles if role in set(network.roles)]
        if not present:
            raise ValueError(
                f"none of the readout roles {list(readout_roles)} exist in {config.connectome}; "
                f"roles: {sorted(set(network.roles))}"
            )
        self.continuous = isinstance(action_space, spaces.Box)
        n_actions = int(action_space.shape[0]) if self.continuous else int(action_space.n)
        self.readout = ActorCriticReadout(
            network, n_actions, continuous=self.continuous, roles=tuple(present), tau_ms=readout_tau_ms,
            policy_init_std=policy_init_std, log_std_init=log_std_init, seed=seed, standardise=standardise_readout,
            gate_action=int(withhold_action) if action_head == "gated" else None, choice_tau_ms=choice_tau_ms,
        )  # fmt: skip
        self.withhold_action = None
        if withhold_action is not None and not self.continuous:
            if not (isinstance(withhold_action, int | np.integer) and 0 <= withhold_action < n_actions):
                raise ValueError(f"withhold_action must be an action in 0..{n_actions - 1}, got {withhold_action!r}")
            self.withhold_action = int(withhold_action)
            go_probability = min(0.5, initial_go_rate_hz * self.step_ms * 1e-3)
            others = 1 if action_head == "gated" else n_actions - 1  # the gate alone sets p(withhold)
            with torch.no_grad():  # p(any other action) = go_probability at zero weights
                self.readout.policy_bias[self.withhold_action] = math.log(
                    others * (1.0 - go_probability) / go_probability
                )
        if self.continuous:
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32, device=device))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32, device=device))
        self.predict_generator = torch.Generator(device=device)
        self.predict_generator.manual_seed(seed + 7919)

    # ------------------------------------------------------------------------------------------- state

    @property
    def network(self):
        return self.brain.network

    def initial_state(self, batch_size: int, generator: torch.Generator | None = None) -> ConnectomeState:
        """Fresh states for ``batch_size`` brains (initial voltages and noise keys from ``generator``)."""
        brain = self.brain.initial_state(batch_size, generator=generator)
        return ConnectomeState(
            brain=brain,
            readout_trace=self.readout.init_trace(batch_size),
            current=torch.zeros((batch_size, self.brain.n_neurons), device=self.brain.device),
        )

    def reset_state(self, state: ConnectomeState, mask: torch.Tensor, generator: torch.Generator | None) -> None:
        """Restart the brains where ``mask`` (``[B]`` bool) is True: a fresh brain state (their noise streams
        continue) and an empty readout trace. In place; no host read."""
        mask = mask.to(self.brain.device)
        reset_elements(self.network, state.brain, mask, generator)
        state.readout_trace.mul_((~mask).to(state.readout_trace.dtype)[:, None])

    # ------------------------------------------------------------------------------------------- dynamics

    def observation_tensor(self, observation: np.ndarray) -> torch.Tensor:
        """``[B, D]`` float32 tensor on the device from a numpy batch (ValueError on NaN/inf or a bad shape,
        checked on the host before the copy)."""
        array = np.asarray(observation, dtype=np.float32)
        size = self.encoder.observation_size
        if array.ndim != 2 or array.shape[1] != size:
            raise ValueError(f"observations must have shape [B, {size}], got {list(array.shape)}")
        if not np.isfinite(array).all():
            raise ValueError("observation contains NaN or infinite values")
        return torch.from_numpy(array).to(self.brain.device)

    def advance(
        self,
        state: ConnectomeState,
        observation: torch.Tensor,
        update_statistics: bool = False,
        on_substep: Callable[[BrainState], None] | None = None,
    ) -> ActorCriticOutput:
        """One decision: encode ``observation``, run :attr:`substeps` brain steps with that input (calling
        ``on_substep(brain_state)`` after each, e.g. for learning rules), and read the readout. Updates
        ``state`` in place; returns the readout's policy outputs and values."""
        current = self.encoder(observation, update_statistics, out=state.current, check_finite=False)
        network, weights, trace = self.network, self.brain.weights, state.readout_trace
        brain_state = state.brain
        for _ in range(self.substeps):
            brain_state = brain_step(network, weights, brain_state, current)
            self.readout.filter_spikes(trace, brain_state.spikes)
            if on_substep is not None:
                on_substep(brain_state)
        state.brain = brain_state
        if update_statistics and self.readout.standardise:
            self.readout.update_statistics(trace)
        return self.readout(trace)

    def sample(
        self, output: ActorCriticOutput, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Actions from the readout: ``[B]`` int64 or ``[B, K]`` (unclipped Gaussian samples in tanh units)."""
        return self.readout.sample(output, generator=generator, deterministic=deterministic)

    def env_actions(self, actions: torch.Tensor) -> np.ndarray:
        """What the env receives: integer actions, or continuous ones clipped to [−1, 1] and rescaled to the
        action space's bounds. FloatingPointError if a continuous action is not finite (clipping keeps NaN)."""
        if not self.continuous:
            return actions.cpu().numpy()
        unit = actions.clamp(-1.0, 1.0)
        scaled = self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)
        env_actions = scaled.cpu().numpy().astype(self.action_space.dtype)
        if not np.isfinite(env_actions).all():  # on the host already: no extra synchronisation
            raise FloatingPointError(
                "the brain's readout produced non-finite actions: its parameters or the brain's weights are no "
                "longer finite (learning diverged); lower readout_learning_rate or learning_rate"
            )
        return env_actions

    # ------------------------------------------------------------------------------------------- SB3 API

    def forward(self, observation: torch.Tensor, state: ConnectomeState) -> ActorCriticOutput:  # type: ignore[override]
        """Same as :meth:`advance` without learning hooks."""
        return self.advance(state, observation)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        raise NotImplementedError(
            "ConnectomePolicy is recurrent: call predict(observation, state, episode_start, deterministic)"
        )

    @torch.no_grad()
    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: ConnectomeState | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, ConnectomeState]:
        """Actions for a batch of observations (or one), and the brains' state to pass to the next call.

        ``state=None`` starts fresh brains; ``episode_start`` (``[B]`` bool) restarts the brains whose episode
        just began. Never learns (weights, readout and, unless ``update_statistics_in_predict``, the
        encoder's statistics stay as they are)."""
        self.set_training_mode(False)
        array = np.asarray(observation, dtype=np.float32)
        single = array.ndim == 1
        if single:
            array = array[None]
        observation_tensor = self.observation_tensor(array)
        batch = observation_tensor.shape[0]
        if state is None:
            state = self.initial_state(batch, self.predict_generator)
        elif not isinstance(state, ConnectomeState) or state.batch_size != batch:
            raise ValueError(
                f"state must be the ConnectomeState returned by predict() for {batch} observations (or None)"
            )
        elif episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if starts.shape != (batch,):
                raise ValueError(f"episode_start must have {batch} entries, got {starts.shape}")
            if starts.any():
                mask = torch.from_numpy(starts).to(self.brain.device)
                self.reset_state(state, mask, self.predict_generator)
        output = self.advance(state, observation_tensor, update_statistics=self.update_statistics_in_predict)
        actions = self.env_actions(self.sample(output, deterministic, self.predict_generator))
        return (actions[0] if single else actions), state

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self._constructor)
        return data
