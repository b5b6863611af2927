"""The connectome-wired spiking brain: configuration, network construction, batched LIF simulator,
region-level readouts, and the :class:`SpikingBrain` module that ties them together."""

from encephagen_gym.brain.config import DEFAULT_DT_MS, BrainConfig, resolve_device, substeps_per_env_step
from encephagen_gym.brain.module import InputSpec, SpikingBrain
from encephagen_gym.brain.network import EXCITATORY, INHIBITORY, Network, build_network, synapse_propagator
from encephagen_gym.brain.readout import RegionActivity
from encephagen_gym.brain.simulator import (
    BrainState,
    brain_step,
    clone_state,
    init_state,
    membrane_potential_mv,
)

__all__ = [
    "DEFAULT_DT_MS",
    "EXCITATORY",
    "INHIBITORY",
    "BrainConfig",
    "BrainState",
    "InputSpec",
    "Network",
    "RegionActivity",
    "SpikingBrain",
    "brain_step",
    "build_network",
    "clone_state",
    "init_state",
    "membrane_potential_mv",
    "resolve_device",
    "substeps_per_env_step",
    "synapse_propagator",
]
