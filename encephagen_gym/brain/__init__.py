"""The connectome-wired spiking brain: configuration, network construction, batched LIF simulator,
region-level readouts, and the :class:`SpikingBrain` module that ties them together.

Quick start::

    import torch
    from encephagen_gym.brain import BrainConfig, SpikingBrain

    torch.set_num_threads(1)                    # small/shared CPUs: one intra-op thread is much faster
    brain = SpikingBrain(BrainConfig())         # tvb96 × 200 LIF neurons, dt 1 ms, device "auto"
    state = brain.initial_state(batch_size=4)   # B brains sharing one set of weights
    activity = brain.activity(batch_size=4)     # per-region spike counts, kept on the device
    stimulus = brain.input_for_roles("visual", 12.0, batch_size=4)   # mV into visual excitatory cells
    state = brain.run(state, n_steps=brain.substeps(env_dt_ms=10.0), input_current=stimulus,
                      readout=activity)
    print(activity.role_rates_hz()["visual"])

Modules: :mod:`~encephagen_gym.brain.config` (``BrainConfig``, every parameter with units and checks),
:mod:`~encephagen_gym.brain.network` (``build_network``: CSR synapses by presynaptic neuron, Dale's law via
the presynaptic type, tract-length delays, exact-integration constants),
:mod:`~encephagen_gym.brain.simulator` (``BrainState``, ``init_state``, the step function
``brain_step(network, weights, state, input_current)``; backend ``"torch"`` on any device),
:mod:`~encephagen_gym.brain.cpu_kernel` (backend ``"numba"``, the CPU default: the same step compiled, with
presynaptic spike queues),
:mod:`~encephagen_gym.brain.readout` (``RegionActivity``), :mod:`~encephagen_gym.brain.module`
(``SpikingBrain``), :mod:`~encephagen_gym.brain.decoders` (leaky-integrator readouts: ``LeakyReadout`` for
regression, ``ActorCriticReadout`` with a softmax or tanh-Gaussian policy and a value unit).

For learning rules: ``brain.weights`` (``[S]``, mV, ≥ 0) may be changed in place between steps (keep it
≥ 0 for Dale's law; the sign is ``network.channel``); after each step ``state.spikes`` (``[B, N]`` 0/1),
``state.v_pre_reset`` (voltage before reset, measured from V_reset, threshold ``network.v_threshold_rel``)
and ``state.arrivals`` (``[B, 2, N]`` summed excitatory/inhibitory input that arrived) describe the step; a
per-synapse presynaptic trace is formed from ``state.spikes[:, network.pre]``; ``network.pre_region`` /
``post_region`` and ``network.synapses_between_roles(...)`` select projections. State tensors are
overwritten in place by the next step: clone what you keep.

Defaults (calibrated, see ``scripts/benchmark_brain.py --dt-check`` and ``scripts/brain_activity.py``): the
spontaneous state of the full brain is asynchronous-irregular at ≈ 8.4 Hz (E ≈ 7.5, I ≈ 12 Hz), median ISI
CV ≈ 0.75, with rates at dt = 1 ms within 1 % of dt = 0.1 ms.
"""

from encephagen_gym.brain.config import DEFAULT_DT_MS, BrainConfig, resolve_device, substeps_per_env_step
from encephagen_gym.brain.decoders import ActorCriticReadout, LeakyReadout, readout_neurons
from encephagen_gym.brain.module import InputSpec, SpikingBrain
from encephagen_gym.brain.network import EXCITATORY, INHIBITORY, Network, build_network, synapse_propagator
from encephagen_gym.brain.readout import RegionActivity
from encephagen_gym.brain.simulator import (
    BrainState,
    brain_step,
    clone_state,
    init_state,
    membrane_potential_mv,
    reset_elements,
)

__all__ = [
    "DEFAULT_DT_MS",
    "EXCITATORY",
    "INHIBITORY",
    "ActorCriticReadout",
    "BrainConfig",
    "BrainState",
    "InputSpec",
    "LeakyReadout",
    "Network",
    "RegionActivity",
    "SpikingBrain",
    "brain_step",
    "build_network",
    "clone_state",
    "init_state",
    "membrane_potential_mv",
    "readout_neurons",
    "reset_elements",
    "resolve_device",
    "substeps_per_env_step",
    "synapse_propagator",
]
