"""Observation encoders: the modality → region-role table entry by entry and against every registered env,
pixels driving their own neurons, signed codes, bad input, and driven rates under every reference policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from encephagen_gym.agents.policies import ConnectomePolicy
from encephagen_gym.brain import BrainConfig, SpikingBrain
from encephagen_gym.brain.encoders import MODALITY_ROLES, ObservationEncoder, resolve_roles
from encephagen_gym.connectome import load_connectome
from tests.helpers import ENV_IDS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: What each modality drives in tvb96, written out so that a change to the table is a visible test change.
EXPECTED_TVB96 = {
    "vision": ("visual",),
    "audition": ("auditory",),
    "us": ("amygdala",),
    "cue": ("prefrontal", "thalamus"),
    "command": ("prefrontal", "thalamus"),
    "vestibular": ("somatosensory",),
    "proprioception": ("somatosensory",),
    "touch": ("somatosensory",),
    "cpg": ("motor",),
    "observation": ("visual", "auditory", "somatosensory"),
}


@pytest.fixture(scope="module")
def brain20() -> SpikingBrain:
    return SpikingBrain(BrainConfig(neurons_per_region=20, device="cpu"))


def test_modality_table_entry_by_entry():
    roles = load_connectome("tvb96").roles
    assert set(MODALITY_ROLES) == set(EXPECTED_TVB96)
    for modality, expected in EXPECTED_TVB96.items():
        assert resolve_roles(modality, roles) == expected, modality
    human = load_connectome("tvb66").roles  # no amygdala or thalamus: the fallbacks
    assert resolve_roles("us", human) == ("hippocampus",)
    assert resolve_roles("cue", human) == ("prefrontal",)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_registered_env_layout_is_routed(env_id):
    layout = gym.make(env_id).unwrapped.observation_layout
    for name in ("tvb96", "tvb76", "tvb66"):
        roles = load_connectome(name).roles
        for modality in layout:
            assert resolve_roles(modality, roles), (env_id, modality, name)


def test_each_pixel_drives_its_own_visual_neurons(brain20):
    net = brain20.network
    encoder = ObservationEncoder(net, {"vision": slice(0, 64), "cue": slice(64, 65)}, 65, gain_mv=12.0)
    visual = set(net.neurons_with_role("visual", excitatory_only=True).tolist())
    owners = []
    for pixel in range(64):
        obs = torch.zeros(1, 65)
        obs[0, pixel] = 1.0
        current = encoder(obs)[0]
        driven = set(torch.nonzero(current).squeeze(1).tolist())
        assert driven and driven <= visual
        assert torch.allclose(current[list(driven)], torch.tensor(12.0))
        regions = {int(net.neuron_region[i]) for i in driven}
        assert len(regions) == len(driven)  # a pixel's neurons lie in different visual regions
        owners.append(driven)
    assert all(a.isdisjoint(b) for i, a in enumerate(owners) for b in owners[i + 1 :])
    assert set().union(*owners) == visual  # every visual excitatory neuron serves a pixel
    cue = torch.zeros(1, 65)
    cue[0, 64] = 0.5
    driven = torch.nonzero(encoder(cue)[0]).squeeze(1)
    assert set(net.neuron_region[driven].tolist()) <= set(net.connectome.regions_with_role("prefrontal", "thalamus"))


@pytest.mark.parametrize("code", ["push_pull", "gaussian"])
def test_signed_values_are_standardised_and_coded_by_populations(brain20, code):
    net = brain20.network
    encoder = ObservationEncoder(net, {"proprioception": slice(0, 2)}, 2, signed_code=code, gain_mv=10.0)
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(500, 2, generator=generator) * torch.tensor([5.0, 0.1]) + torch.tensor([3.0, -1.0])
    encoder(samples, update_statistics=True)
    assert torch.allclose(encoder.standardiser.mean.float(), torch.tensor([3.0, -1.0]), atol=0.5)
    high = encoder.code(torch.tensor([[13.0, -1.0]]))  # +2σ on the first value, the mean on the second
    low = encoder.code(torch.tensor([[-7.0, -1.0]]))
    if code == "push_pull":
        assert high[0, 0] > 0.9 and high[0, 1] == 0 and low[0, 0] == 0 and low[0, 1] > 0.9
    else:  # the pool preferring +z_max is the most active for a high value, the one at −z_max for a low one
        assert int(high[0, :3].argmax()) == 2 and int(low[0, :3].argmax()) == 0
    frozen = encoder.standardiser.mean.clone()
    encoder(samples + 100.0)  # no update_statistics: frozen
    assert torch.equal(encoder.standardiser.mean, frozen)


def test_encoder_rejects_bad_input(brain20):
    net = brain20.network
    with pytest.raises(ValueError, match="tile"):
        ObservationEncoder(net, {"vision": slice(0, 10)}, 12)
    with pytest.raises(ValueError, match="no region roles known"):
        ObservationEncoder(net, {"smell": slice(0, 2)}, 2)
    small = SpikingBrain(BrainConfig(neurons_per_region=4, device="cpu")).network
    with pytest.raises(ValueError, match="excitatory neurons"):
        ObservationEncoder(small, {"vision": slice(0, 64)}, 64)
    encoder = ObservationEncoder(net, None, 3)
    with pytest.raises(ValueError, match="NaN"):
        encoder(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="gain_mv"):
        ObservationEncoder(net, None, 3, gain_mv=-1.0)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_driven_roles_fire_within_2_to_80_hz_under_the_reference_policy(env_id):
    """10 s of each task under its scripted reference policy, the observation encoded into a 96×20 brain."""
    env = gym.make(env_id)
    unwrapped = env.unwrapped
    layout = {name: (s.start, s.stop) for name, s in unwrapped.observation_layout.items()}
    policy = ConnectomePolicy(env.observation_space, env.action_space, step_ms=unwrapped.step_ms,
                              observation_layout=layout, neurons_per_region=20, device="cpu")  # fmt: skip
    reference = unwrapped.make_reference_policy()
    obs, _ = env.reset(seed=0)
    reference.reset()
    state = policy.initial_state(1)
    activity = policy.brain.activity(1, "excitatory")
    steps = round(10_000 / unwrapped.step_ms)
    with torch.no_grad():
        for _ in range(steps):
            policy.advance(state, policy.observation_tensor(obs[None]), update_statistics=True,
                           on_substep=lambda s: activity.update(s.spikes))  # fmt: skip
            obs, _, terminated, truncated, _ = env.step(reference(obs))
            if terminated or truncated:
                obs, _ = env.reset()
                reference.reset()
    rates = {role: float(rate[0]) for role, rate in activity.role_rates_hz().items()}
    assert all(np.isfinite(list(rates.values())))
    for role in policy.encoder.driven_roles:
        assert 2.0 <= rates[role] <= 80.0, (role, rates[role])


def test_the_policy_hands_its_routing_and_code_options_to_the_encoder():
    """``modality_roles`` and ``modality_codes`` reach the encoder and travel with the policy's saved parameters:
    a cue coded by a push-pull population drives its "off" pool when the cue goes off."""
    layout = {"vision": (0, 64), "cue": (64, 65)}
    roles = ("prefrontal", "thalamus", "basal_ganglia")
    policy = ConnectomePolicy(
        gym.spaces.Box(0.0, 1.0, (65,)), gym.spaces.Discrete(6), step_ms=10.0, neurons_per_region=20,
        observation_layout=layout, modality_roles={"cue": roles}, modality_codes={"cue": "signed"}, device="cpu",
    )  # fmt: skip
    encoder = policy.encoder
    assert encoder.codes == {"vision": "intensity", "cue": "signed"}
    assert encoder.roles["cue"] == roles
    assert policy._get_constructor_parameters()["modality_codes"] == {"cue": "signed"}
    cue_on = torch.zeros(10, 65)
    cue_on[:8, 64] = 1.0  # on 80 % of the time, as in a trial
    encoder(cue_on, update_statistics=True)
    on, off = encoder(cue_on[:1])[0], encoder(cue_on[9:])[0]
    net = policy.network
    basal_ganglia = set(net.connectome.regions_with_role("basal_ganglia"))
    off_driven = torch.nonzero(off).squeeze(1)
    assert off_driven.numel() and any(int(net.neuron_region[i]) in basal_ganglia for i in off_driven)
    assert set(torch.nonzero(on).squeeze(1).tolist()).isdisjoint(off_driven.tolist())  # two pools
    plain = ConnectomePolicy(
        gym.spaces.Box(0.0, 1.0, (65,)), gym.spaces.Discrete(6), step_ms=10.0, neurons_per_region=20,
        observation_layout=layout, device="cpu",
    )  # fmt: skip
    assert plain.encoder.codes["cue"] == "intensity" and not plain.encoder(cue_on[9:])[0].any()
