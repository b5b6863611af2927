"""``SpikingBrain``: a thin ``nn.Module`` owning the network, its learnable weights and initial states."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from encephagen_gym.brain.config import BrainConfig
from encephagen_gym.brain.network import Network, build_network, check_same_network, register_weights
from encephagen_gym.brain.readout import RegionActivity
from encephagen_gym.brain.simulator import BrainState, brain_step, init_state

__all__ = ["InputSpec", "SpikingBrain"]

#: What :meth:`SpikingBrain.run` accepts as input: nothing, one ``[B, N]`` current held for every step,
#: a ``[T, B, N]`` sequence, or a function of the step index (0..T-1) returning ``[B, N]`` (or None).
InputSpec = torch.Tensor | Callable[[int], torch.Tensor | None] | None


def _check_finite(current: torch.Tensor) -> None:
    if not bool(torch.isfinite(current).all()):
        raise ValueError("input_current contains NaN or infinite values")


class SpikingBrain(nn.Module):
    """A connectome-wired spiking brain on one device.

    Owns the immutable :class:`~encephagen_gym.brain.network.Network` (``self.network``) and the synaptic
    strengths as the buffer ``self.weights`` (``[S]``, mV, ≥ 0; sign from ``network.channel``) which
    learning rules may update in place between steps. The dynamics are the plain function
    :func:`~encephagen_gym.brain.simulator.brain_step`; this class adds state creation, input checks and
    :meth:`run`. The device comes from ``config.device`` (``"auto"`` picks CUDA when available);
    ``.to(device)`` moves the network and weights together.

    Example::

        brain = SpikingBrain(BrainConfig(neurons_per_region=20))
        state = brain.initial_state(batch_size=4)
        activity = brain.activity(batch_size=4)
        state = brain.run(state, n_steps=brain.substeps(env_dt_ms=10.0), readout=activity)
        rates = activity.role_rates_hz()
    """

    def __init__(self, config: BrainConfig | None = None, **overrides: object) -> None:
        super().__init__()
        config = config or BrainConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        network, weights = build_network(config)
        self.network: Network = network
        self.register_buffer("weights", weights)

    def _apply(self, fn, recurse=True):  # nn.Module hook: keep network and weights on one device
        """Move/cast the network's tensors together with the ``weights`` buffer (``.to``, ``.cuda`` …).

        States made before a move stay where they were: make a new one with :meth:`initial_state`."""
        super()._apply(fn, recurse)
        moved = {name: fn(value) for name, value in self.network._asdict().items() if isinstance(value, torch.Tensor)}
        self.network = self.network._replace(device=self.weights.device, **moved)
        register_weights(self.weights, self.network.fingerprint)  # a moved copy belongs to the same network
        return self

    @property
    def device(self) -> torch.device:
        """The device everything lives on."""
        return self.network.device

    @property
    def n_neurons(self) -> int:
        """Total number of neurons N."""
        return self.network.n_neurons

    @property
    def dt_ms(self) -> float:
        """Integration step in ms."""
        return self.config.dt_ms

    def substeps(self, env_dt_ms: float) -> int:
        """Brain steps per environment step (ValueError unless ``env_dt_ms`` is a whole multiple of dt)."""
        return self.config.substeps(env_dt_ms)

    def initial_state(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        noise_keys: torch.Tensor | list[int] | None = None,
    ) -> BrainState:
        """A fresh batched state; see :func:`~encephagen_gym.brain.simulator.init_state`."""
        return init_state(self.network, batch_size, generator=generator, noise_keys=noise_keys)

    def activity(self, batch_size: int, population: str = "all") -> RegionActivity:
        """A region-level spike-count accumulator for :meth:`run` / manual updates."""
        return RegionActivity(self.network, batch_size, population)

    def input_for_roles(
        self,
        roles: tuple[str, ...] | str,
        amplitude_mv: float,
        batch_size: int = 1,
        excitatory_only: bool = True,
    ) -> torch.Tensor:
        """``[B, N]`` input current: ``amplitude_mv`` into the (excitatory) neurons of the given roles."""
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        current = torch.zeros((batch_size, self.n_neurons), device=self.device)
        current[:, self.network.neurons_with_role(*roles, excitatory_only=excitatory_only)] = amplitude_mv
        return current

    def step(self, state: BrainState, input_current: torch.Tensor | None = None) -> BrainState:
        """One step with input checks (network, shape, device, finiteness); returns the advanced state."""
        check_same_network(self.network.fingerprint, state.fingerprint, "the state", "this brain")
        if input_current is not None:
            input_current = self._as_input(input_current)
            _check_finite(input_current)
        return brain_step(self.network, self.weights, state, input_current)

    def forward(self, state: BrainState, input_current: torch.Tensor | None = None) -> BrainState:
        """Same as :meth:`step`."""
        return self.step(state, input_current)

    def run(
        self,
        state: BrainState,
        n_steps: int,
        input_current: InputSpec = None,
        readout: RegionActivity | None = None,
        on_step: Callable[[int, BrainState], None] | None = None,
    ) -> BrainState:
        """Run ``n_steps`` steps. ``input_current`` is an :data:`InputSpec`; a tensor is checked once for
        shape and finiteness. ``readout`` accumulates region spike counts on the device; ``on_step(i,
        state)`` is called after every step (e.g. for a learning rule)."""
        if not isinstance(n_steps, int) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        check_same_network(self.network.fingerprint, state.fingerprint, "the state", "this brain")
        batch, n = state.v.shape
        sequence = constant = None
        if isinstance(input_current, torch.Tensor):
            current = input_current.to(self.device)
            if current.shape == (batch, n):
                constant = current
            elif current.shape == (n_steps, batch, n):
                sequence = current
            else:
                expected = f"{(batch, n)} or {(n_steps, batch, n)}"
                raise ValueError(f"input_current must have shape {expected}, got {tuple(current.shape)}")
            _check_finite(current)
        elif input_current is not None and not callable(input_current):
            raise ValueError("input_current must be None, a tensor, or a callable step -> tensor")
        for i in range(n_steps):
            if constant is not None:
                current = constant
            elif sequence is not None:
                current = sequence[i]
            elif input_current is not None:
                current = input_current(i)
                if current is not None:
                    current = self._as_input(current)
                    _check_finite(current)
            else:
                current = None
            state = brain_step(self.network, self.weights, state, current)
            if readout is not None:
                readout.update(state.spikes)
            if on_step is not None:
                on_step(i, state)
        return state

    def _as_input(self, current: torch.Tensor) -> torch.Tensor:
        if not isinstance(current, torch.Tensor):
            raise ValueError(f"input_current must be a torch.Tensor, got {type(current).__name__}")
        if current.dtype != torch.float32 or current.device != self.device:
            current = current.to(device=self.device, dtype=torch.float32)
        return current
