"""Spiking brain: construction, golden single-neuron dynamics, network statistics, batching, errors."""

from __future__ import annotations

import copy
import math
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from encephagen_gym.brain import (
    EXCITATORY,
    INHIBITORY,
    BrainConfig,
    RegionActivity,
    SpikingBrain,
    brain_step,
    build_network,
    clone_state,
    init_state,
    substeps_per_env_step,
    synapse_propagator,
)
from encephagen_gym.connectome import load_connectome

CPU = "cpu"
BACKENDS = ("torch", "numba")  # the CPU backends; every dynamics test runs on both


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def silent_config(**overrides) -> BrainConfig:
    """Isolated neurons: no synapses, no background (for golden traces)."""
    base = dict(neurons_per_region=2, excitatory_fraction=0.5, local_connection_prob=0.0,
                long_range_connection_prob=0.0, background_eta=0.0, dt_ms=0.1, device=CPU)  # fmt: skip
    return BrainConfig(**{**base, **overrides})


def spike_times(brain: SpikingBrain, state, n_steps: int, current=None):
    rows = []

    def record(i, s):
        rows.append(s.spikes.clone())

    state = brain.run(state, n_steps, input_current=current, on_step=record)
    return state, torch.stack(rows)  # [T, B, N]


# ---------------------------------------------------------------------------------------------- construction


@pytest.fixture(scope="module")
def small_network():
    return build_network(BrainConfig(neurons_per_region=20, device=CPU))


def test_csr_layout_and_sparsity(small_network):
    net, weights = small_network
    assert net.n_neurons == 96 * 20
    assert net.n_synapses < 0.05 * net.n_neurons**2  # sparse arrays, never N×N
    assert torch.all(net.pre[1:] >= net.pre[:-1])  # sorted by presynaptic neuron
    same_row = net.pre[1:] == net.pre[:-1]
    later = net.delay_steps[1:] - net.delay_steps[:-1]
    assert torch.all(later[same_row] >= 0)  # within a row, by delay (the order a spike reaches its targets)
    same_delay = same_row & (later == 0)
    assert torch.all(net.post[1:][same_delay] > net.post[:-1][same_delay])  # then by target, no duplicates
    assert net.row_ptr[-1] == net.n_synapses
    counts = torch.bincount(net.pre, minlength=net.n_neurons)
    assert torch.equal(counts, net.out_degree)
    assert torch.equal(net.row_ptr[1:] - net.row_ptr[:-1], counts)
    assert weights.shape == (net.n_synapses,) and weights.dtype == torch.float32


def test_dales_law_on_every_synapse(small_network):
    net, weights = small_network
    assert torch.all(weights >= 0)
    exc_pre = net.is_excitatory[net.pre]
    assert torch.equal(net.channel == EXCITATORY, exc_pre)
    assert torch.equal(net.channel == INHIBITORY, ~exc_pre)
    # long-range synapses leave excitatory neurons only and cross regions; local ones stay inside
    assert torch.all(exc_pre[net.is_long_range])
    assert torch.all(net.pre_region[net.is_long_range] != net.post_region[net.is_long_range])
    assert torch.all(net.pre_region[~net.is_long_range] == net.post_region[~net.is_long_range])
    assert torch.all(net.pre != net.post)
    assert torch.equal(net.pre_region, net.neuron_region[net.pre])
    assert torch.equal(net.post_region, net.neuron_region[net.post])


def test_delays_follow_tract_lengths(small_network):
    net, _ = small_network
    cfg, con = net.config, load_connectome("tvb96")
    lr = net.is_long_range
    src, tgt = net.pre_region[lr].numpy(), net.post_region[lr].numpy()
    delay_ms = con.tract_lengths_mm[src, tgt] / cfg.conduction_velocity_mm_per_ms
    expected = np.maximum(1, np.round(delay_ms / cfg.dt_ms))
    np.testing.assert_array_equal(net.delay_steps[lr].numpy(), expected)
    assert torch.all(net.delay_steps[~lr] == round(cfg.local_delay_ms / cfg.dt_ms))
    # long-range synapses exist only where the connectome has an edge source -> target
    assert con.adjacency()[src, tgt].all()


def test_nmda_only_in_prefrontal_regions(small_network):
    net, _ = small_network
    pfc = set(load_connectome("tvb96").regions_with_role("prefrontal").tolist())
    has_nmda = net.nmda_share.view(96, 20)[:, 0] > 0
    assert {r for r in range(96) if has_nmda[r]} == pfc


def test_same_seed_same_network_different_seed_different_wiring(small_network):
    net, weights = small_network
    again, weights_again = build_network(BrainConfig(neurons_per_region=20, device=CPU))
    assert torch.equal(net.pre, again.pre) and torch.equal(net.post, again.post)
    assert torch.equal(weights, weights_again)
    other, _ = build_network(BrainConfig(neurons_per_region=20, device=CPU, seed=1))
    assert other.n_synapses != net.n_synapses or not torch.equal(net.post, other.post)


def test_synapses_between_roles(small_network):
    net, _ = small_network
    index = net.synapses_between_roles(("visual",), ("temporal",))
    assert index.numel() > 0
    roles = np.array(net.roles)
    assert set(roles[net.pre_region[index].numpy()]) == {"visual"}
    assert set(roles[net.post_region[index].numpy()]) == {"temporal"}


# ------------------------------------------------------------------------------------------ golden dynamics


@pytest.mark.parametrize("backend", BACKENDS)
def test_membrane_trace_matches_closed_form(backend):
    brain = SpikingBrain(silent_config(backend=backend))
    state = brain.initial_state(1)
    state.v.zero_()
    current = torch.zeros(1, brain.n_neurons)
    current[0, 0] = 15.0  # below threshold: V(t) = 15 (1 - e^{-t/τm})
    trace = []
    brain.run(state, 300, current, on_step=lambda i, s: trace.append(s.v[0, 0].item()))
    t = np.arange(1, 301) * 0.1
    np.testing.assert_allclose(trace, 15.0 * (1 - np.exp(-t / 20.0)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_spike_time_and_refractory_period(backend):
    brain = SpikingBrain(silent_config(backend=backend))
    state = brain.initial_state(1)
    state.v.zero_()
    current = torch.zeros(1, brain.n_neurons)
    current[0, 0] = 25.0
    _, spikes = spike_times(brain, state, 2000, current)
    times = (torch.nonzero(spikes[:, 0, 0]).squeeze(1).numpy() + 1) * 0.1  # spike at the end of step i
    t_first = -20.0 * math.log(1 - 20.0 / 25.0)  # 32.19 ms
    assert times[0] == pytest.approx(math.ceil(t_first / 0.1 - 1e-9) * 0.1)
    isi = np.diff(times)
    # V is held at reset for 2 ms after each spike, then climbs again for t_first: ISI = 2 ms + t_first
    assert np.all(isi > 2.0)
    np.testing.assert_allclose(isi, math.ceil((t_first + 2.0) / 0.1 - 1e-9) * 0.1, atol=1e-9)
    assert spikes[:, 0, 1:].sum() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_refractory_period_holds_under_huge_drive(backend):
    brain = SpikingBrain(silent_config(refractory_ms=2.0, backend=backend))
    state = brain.initial_state(1)
    current = torch.full((1, brain.n_neurons), 1e4)
    _, spikes = spike_times(brain, state, 500, current)
    steps = torch.nonzero(spikes[:, 0, 0]).squeeze(1)
    assert torch.all(torch.diff(steps) == 21)  # 20 refractory steps of 0.1 ms, then one step to fire


@pytest.mark.parametrize("backend", BACKENDS)
def test_synaptic_current_and_psp_match_closed_form(backend):
    """One excitatory spike into a silent neuron: AMPA current A e^{-t/τs} and
    PSP A τs/(τs−τm)(e^{-t/τs} − e^{-t/τm}) with A = J τm/τs, arriving one local delay after the spike."""
    cfg = silent_config(local_connection_prob=1.0, nmda_ratio=0.0, j_exc_mv=1.5, backend=backend)
    brain = SpikingBrain(cfg)
    net = brain.network
    state = brain.initial_state(1)
    state.v.zero_()
    pulse = torch.zeros(1, brain.n_neurons)
    pulse[0, 0] = 1e4  # neuron 0 (excitatory, region 0) fires on the first step
    state = brain.step(state, pulse)
    assert state.spikes[0, 0] == 1 and state.spikes.sum() == 1
    spike_step = state.step
    target = 1  # the inhibitory neuron of region 0 receives synapse 0 -> 1
    i_trace, v_trace = [], []
    quiet = torch.zeros(1, brain.n_neurons)
    quiet[0, 0] = -1e4  # keep neuron 0 silent afterwards
    for _ in range(400):
        state = brain.step(state, quiet)
        i_trace.append(state.i_ampa[0, target].item())
        v_trace.append(state.v[0, target].item())
    i_trace, v_trace = np.array(i_trace), np.array(v_trace)
    arrival = int(np.flatnonzero(i_trace)[0]) + spike_step + 1  # step index at which the jump lands
    assert arrival - spike_step == round(cfg.local_delay_ms / cfg.dt_ms)
    tau_m, tau_s, dt = cfg.tau_m_ms, cfg.tau_ampa_ms, cfg.dt_ms
    amplitude = cfg.j_exc_mv * tau_m / tau_s
    first = int(np.flatnonzero(i_trace)[0])
    elapsed = np.arange(len(i_trace) - first) * dt
    np.testing.assert_allclose(i_trace[first:], amplitude * np.exp(-elapsed / tau_s), rtol=1e-4)
    psp = amplitude * tau_s / (tau_s - tau_m) * (np.exp(-elapsed / tau_s) - np.exp(-elapsed / tau_m))
    np.testing.assert_allclose(v_trace[first:], psp, rtol=1e-4, atol=1e-6)
    assert v_trace[first:].max() == pytest.approx(psp.max(), rel=1e-4)
    assert net.prop_ampa == pytest.approx(synapse_propagator(tau_s, tau_m, dt))


# ------------------------------------------------------------------------------- adaptive threshold (ALIF)


def _single_neuron_reference(current_mv: float, n_steps: int, cfg: BrainConfig, adaptive: bool):
    """float64 replay of one isolated neuron's discrete dynamics (see the simulator docstring): spikes and the
    adaptation a(t) in force at each step."""
    alpha = math.exp(-cfg.dt_ms / cfg.tau_m_ms)
    rho = float(np.float32(math.exp(-cfg.dt_ms / cfg.tau_adaptation_ms)))  # the simulator's float32 ρ
    beta = cfg.adaptation_mv if adaptive else 0.0
    theta, refractory_steps = cfg.v_threshold_mv, round(cfg.refractory_ms / cfg.dt_ms)
    u = a = refractory = 0.0
    z = 0
    spikes, adaptation = np.zeros(n_steps, dtype=bool), np.zeros(n_steps)
    for t in range(n_steps):
        u = (alpha * u + (1 - alpha) * current_mv) * max(1.0 - refractory, 0.0)
        a = rho * a + (z if adaptive else 0)
        z = int(u >= theta + beta * a)
        u = 0.0 if z else u
        refractory = max(refractory - 1, 0) + refractory_steps * z
        spikes[t], adaptation[t] = bool(z), a
    return spikes, adaptation


@pytest.mark.parametrize("backend", BACKENDS)
def test_alif_threshold_rises_by_beta_per_spike_and_decays_with_tau_a(backend):
    """An isolated temporal-cortex (ALIF) neuron and an amygdala (LIF) neuron under the same constant drive:
    the ALIF threshold jumps by β per spike and decays with τ_a, so its inter-spike intervals lengthen
    (spike-frequency adaptation) while the LIF neuron fires regularly."""
    from encephagen_gym.brain import threshold_mv

    cfg = silent_config(alif_roles=("temporal",), alif_fraction=1.0, tau_adaptation_ms=200.0, adaptation_mv=2.0,
                        backend=backend)  # fmt: skip
    brain = SpikingBrain(cfg)
    net = brain.network
    alif, lif = 0, 4  # the excitatory neurons of region 0 (temporal) and region 2 (amygdala)
    assert net.is_adaptive[alif] and not net.is_adaptive[lif] and net.roles[2] == "amygdala"
    state = brain.initial_state(1)
    state.v.zero_()
    current = torch.zeros(1, brain.n_neurons)
    current[0, [alif, lif]] = 30.0
    n_steps = 8000  # 800 ms
    spikes, adaptation, thresholds = [], [], []

    def record(i, s):
        spikes.append(s.spikes[0, [alif, lif]].clone())
        adaptation.append(s.adaptation[0, [alif, lif]].clone())
        thresholds.append(threshold_mv(net, s)[0, [alif, lif]].clone())

    brain.run(state, n_steps, current, on_step=record)
    spikes, adaptation = torch.stack(spikes).numpy(), torch.stack(adaptation).numpy()
    thresholds = torch.stack(thresholds).numpy()
    for column, adaptive in ((0, True), (1, False)):
        want_spikes, want_a = _single_neuron_reference(30.0, n_steps, cfg, adaptive)
        np.testing.assert_array_equal(spikes[:, column] > 0, want_spikes)
        np.testing.assert_allclose(adaptation[:, column], want_a, rtol=1e-5, atol=1e-6)
    assert np.all(adaptation[:, 1] == 0) and np.all(thresholds[:, 1] == cfg.v_threshold_mv)
    np.testing.assert_allclose(thresholds[:, 0], cfg.v_threshold_mv + cfg.adaptation_mv * adaptation[:, 0], rtol=1e-6)
    rho = math.exp(-cfg.dt_ms / cfg.tau_adaptation_ms)
    fired = np.flatnonzero(spikes[:, 0])
    # one step after each spike the threshold is β higher than the decayed value: a(t+1) − ρ a(t) = 1
    np.testing.assert_allclose(adaptation[fired + 1, 0] - rho * adaptation[fired, 0], 1.0, rtol=1e-5)
    quiet = np.setdiff1d(np.arange(1, n_steps), fired + 1)
    np.testing.assert_allclose(adaptation[quiet, 0], rho * adaptation[quiet - 1, 0], rtol=1e-5, atol=1e-7)
    isi_alif, isi_lif = np.diff(fired), np.diff(np.flatnonzero(spikes[:, 1]))
    assert np.all(np.diff(isi_alif) >= -1) and isi_alif[-1] > 1.5 * isi_alif[0]  # adaptation
    assert isi_lif.max() - isi_lif.min() <= 1 and isi_lif[0] < isi_alif[-1]
    assert fired[0] == np.flatnonzero(spikes[:, 1])[0]  # same first spike: no adaptation before it


def test_alif_neurons_are_a_seeded_share_of_excitatory_neurons_and_leave_the_wiring_alone():
    base = BrainConfig(neurons_per_region=20, device=CPU)
    roles = ("prefrontal", "parietal", "temporal")
    net, weights = build_network(base)
    alif_net, alif_weights = build_network(BrainConfig(neurons_per_region=20, device=CPU, alif_roles=roles,
                                                       alif_fraction=0.4))  # fmt: skip
    assert not net.alif_active and not net.is_adaptive.any() and alif_net.alif_active
    assert torch.equal(net.pre, alif_net.pre) and torch.equal(net.post, alif_net.post)
    assert torch.equal(weights, alif_weights)
    per_region = alif_net.is_adaptive.view(96, 20)
    in_roles = torch.tensor([role in roles for role in alif_net.roles])
    assert torch.all(per_region[in_roles].sum(1) == round(0.4 * 16))
    assert not per_region[~in_roles].any() and not per_region[:, 16:].any()  # excitatory neurons only
    assert torch.equal(alif_net.adaptation_mv, alif_net.is_adaptive * 2.0)
    reseeded, _ = build_network(BrainConfig(neurons_per_region=20, device=CPU, alif_roles=roles, seed=1))
    assert not torch.equal(reseeded.is_adaptive, alif_net.is_adaptive)
    again, _ = build_network(BrainConfig(neurons_per_region=20, device=CPU, alif_roles=roles))
    assert torch.equal(again.is_adaptive, alif_net.is_adaptive)


def _synapses(net, weights, mask) -> list[tuple[int, int, int, float]]:
    """(pre, post, delay, strength) of the masked synapses, sorted."""
    return sorted(zip(net.pre[mask].tolist(), net.post[mask].tolist(), net.delay_steps[mask].tolist(),
                      weights[mask].tolist(), strict=True))  # fmt: skip


@pytest.mark.parametrize("inhibition", [0.0, 3.0])
def test_pathways_add_fixed_in_degree_inputs_along_the_connectome_and_leave_the_rest_alone(inhibition):
    """Every excitatory neuron of a target role gets ``pathway_in_degree`` pathway synapses of ``pathway_j_mv`` from
    excitatory neurons of other regions of the source roles that project to it; with ``pathway_inhibition`` f, every
    inhibitory neuron of a target region as many of f × that strength (long-range, not pathway synapses); the plain
    brain's synapses are all kept as they were."""
    n, n_exc, degree, strength = 10, 8, 5, 0.25
    pairs = (("visual", "prefrontal"), ("visual", "motor"), ("prefrontal", "motor"))
    targets = {"prefrontal": ("visual",), "motor": ("visual", "prefrontal")}
    plain, plain_weights = build_network(BrainConfig(neurons_per_region=n, device=CPU))
    net, weights = build_network(BrainConfig(neurons_per_region=n, device=CPU, pathways=pairs, pathway_in_degree=degree,
                                             pathway_j_mv=strength, pathway_inhibition=inhibition))  # fmt: skip
    connectome = load_connectome("tvb96")
    roles = net.roles

    def reached(target: int) -> bool:  # by a region of one of its source roles (a region no source reaches gets none)
        return roles[target] in targets and any(
            roles[source] in targets[roles[target]] and source != target and connectome.weights[source, target] > 0
            for source in range(len(roles))
        )

    is_target = torch.tensor([reached(region) for region in range(len(roles))])
    assert is_target.sum() > 10  # most prefrontal and motor regions
    onto_inhibitory = net.post % n >= n_exc
    feedforward = (~net.is_pathway & onto_inhibitory & net.is_long_range & is_target[net.post_region]
                   & (weights == inhibition * strength))  # fmt: skip
    # the plain wiring is untouched: what is neither pathway nor feedforward inhibition is exactly the plain brain
    assert _synapses(net, weights, ~net.is_pathway & ~feedforward) == _synapses(
        plain, plain_weights, torch.ones_like(plain.pre, dtype=torch.bool)
    )
    # the pathway: excitatory → excitatory, fixed in-degree per target neuron, along the connectome's edges
    assert torch.all(weights[net.is_pathway] == strength) and torch.all(net.is_long_range[net.is_pathway])
    assert torch.all(net.pre[net.is_pathway] % n < n_exc) and torch.all(net.post[net.is_pathway] % n < n_exc)
    in_degree = torch.bincount(net.post[net.is_pathway], minlength=net.n_neurons).view(-1, n)[:, :n_exc]
    assert torch.equal(in_degree, is_target[:, None].long().expand(-1, n_exc) * degree)
    for mask in (net.is_pathway, feedforward):
        for source, target in zip(net.pre_region[mask].tolist(), net.post_region[mask].tolist(), strict=True):
            assert source != target and roles[source] in targets[roles[target]]
            assert connectome.weights[source, target] > 0
    assert torch.all(net.pre[feedforward] % n < n_exc)
    # feedforward inhibition: the same in-degree onto every inhibitory neuron of a target region, none elsewhere
    ff_degree = torch.bincount(net.post[feedforward], minlength=net.n_neurons).view(-1, n)
    expected = is_target[:, None].long().expand(-1, n - n_exc) * (degree if inhibition > 0 else 0)
    assert torch.equal(ff_degree[:, n_exc:], expected) and not ff_degree[:, :n_exc].any()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(alif_roles=("cerebellum",)), "valid roles: .*prefrontal"),
        (dict(alif_roles="prefrontal"), "tuple of role names"),
        (dict(alif_fraction=1.5), "alif_fraction"),
        (dict(tau_adaptation_ms=0.0), "tau_adaptation_ms"),
        (dict(adaptation_mv=-1.0), "adaptation_mv"),
        (dict(connectome="tvb76", alif_roles=("thalamus",)), "not roles of tvb76"),
    ],
)
def test_bad_alif_settings_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        BrainConfig(**overrides)
    # role lists (JSON-saved settings) are taken as tuples
    assert BrainConfig(alif_roles=["temporal"], nmda_roles=["prefrontal"]).alif_roles == ("temporal",)


def test_alif_off_keeps_adaptation_zero_and_alif_on_changes_only_adaptive_neurons():
    roles = ("prefrontal", "parietal", "temporal")
    off = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU))
    state = off.run(off.initial_state(1), 150)
    assert not state.adaptation.any()
    on = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, alif_roles=roles, adaptation_mv=3.0))
    state = on.run(on.initial_state(1), 150)
    adaptive = on.network.is_adaptive
    assert (state.adaptation[:, adaptive] > 0).float().mean() > 0.5 and not state.adaptation[:, ~adaptive].any()


# ------------------------------------------------------------------------------------- network statistics


def _rates_and_cvs(spikes: np.ndarray, dt_ms: float):
    """spikes [T, N] bool -> (rates Hz [N], CVs of neurons with >= 5 spikes)."""
    duration_s = spikes.shape[0] * dt_ms * 1e-3
    rates = spikes.sum(0) / duration_s
    cvs = []
    for column in spikes.T:
        times = np.flatnonzero(column)
        if len(times) >= 5:
            isi = np.diff(times)
            cvs.append(isi.std() / isi.mean())
    return rates, np.array(cvs)


@pytest.fixture(scope="module", params=BACKENDS)
def spontaneous_run(request):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=request.param))
    state = brain.initial_state(1)
    state = brain.run(state, round(200 / brain.dt_ms))  # transient
    n_steps = round(5000 / brain.dt_ms)
    raster = torch.zeros((n_steps, brain.n_neurons), dtype=torch.bool)
    window = torch.zeros(brain.n_neurons)
    max_window_rate = [0.0]
    per_window = round(250 / brain.dt_ms)

    def record(i, s):
        raster[i] = s.spikes[0] > 0
        window.add_(s.spikes[0])
        if (i + 1) % per_window == 0:
            max_window_rate[0] = max(max_window_rate[0], window.view(96, 10).mean(1).max().item() / 0.25)
            window.zero_()

    state = brain.run(state, n_steps, on_step=record)
    return brain, state, raster.numpy(), max_window_rate[0]


def test_spontaneous_activity_is_asynchronous_irregular(spontaneous_run):
    brain, _, raster, _ = spontaneous_run
    rates, cvs = _rates_and_cvs(raster, brain.dt_ms)
    assert 3.0 <= rates.mean() <= 20.0
    assert 0.5 <= np.median(cvs) <= 1.5
    assert len(cvs) > 0.8 * brain.n_neurons
    # asynchronous: the population count in 5 ms bins is not much more variable than Poisson
    bins = raster.sum(1)[: raster.shape[0] // 10 * 10].reshape(-1, 10).sum(1)
    assert bins.var() / bins.mean() < 3.0


def test_spontaneous_activity_stays_bounded_for_5_s(spontaneous_run):
    _, state, raster, max_window_rate = spontaneous_run
    assert torch.isfinite(state.v).all() and torch.isfinite(state.currents).all()
    assert max_window_rate < 60.0  # no region runs away in any 250 ms window
    first, last = raster[: raster.shape[0] // 2].mean(), raster[raster.shape[0] // 2 :].mean()
    assert abs(first - last) / first < 0.2  # stationary


@pytest.mark.parametrize("backend", BACKENDS)
def test_pulse_arrives_after_the_tract_length_delay(backend):
    cfg = BrainConfig(neurons_per_region=10, long_range_connection_prob=1.0, background_eta=0.0, device=CPU,
                      backend=backend)  # fmt: skip
    brain = SpikingBrain(cfg)
    con = brain.network.connectome
    source = con.index("RM-V1_R")
    candidates = np.flatnonzero(con.adjacency()[source])
    target = int(candidates[np.argmax(con.tract_lengths_mm[source, candidates])])  # the longest tract
    expected = round(con.tract_lengths_mm[source, target] / cfg.conduction_velocity_mm_per_ms / cfg.dt_ms)
    assert expected > 10
    state = brain.initial_state(1)
    state.v.zero_()
    pulse = torch.zeros(1, brain.n_neurons)
    pulse[0, brain.network.neurons_of_regions([source], excitatory_only=True)] = 1e4
    state = brain.step(state, pulse)
    spike_step = state.step
    assert state.spikes.view(96, 10)[source, :8].all() and state.spikes.sum() == 8
    target_neurons = slice(target * 10, (target + 1) * 10)
    for _ in range(expected + 5):
        state = brain.step(state)
        if state.arrivals[0, 0, target_neurons].sum() > 0:
            break
    assert state.step - spike_step == expected


def _post_stimulus_excess(nmda_ratio: float, backend: str) -> float:
    """PFC excitatory rate 25-100 ms after a 200 ms PFC stimulus, minus the pre-stimulus rate (Hz).

    Local connection probability 0.5 gives these 20-neuron regions about the local excitatory in-degree of
    the full-size brain (8 vs 16), so that recurrent (NMDA-carrying) input matters."""
    brain = SpikingBrain(
        BrainConfig(
            neurons_per_region=20, local_connection_prob=0.5, nmda_ratio=nmda_ratio, device=CPU, backend=backend
        )
    )
    batch, bin_steps = 4, round(25 / brain.dt_ms)
    pfc = brain.network.neurons_with_role("prefrontal", excitatory_only=True)
    state = brain.initial_state(batch, generator=torch.Generator().manual_seed(3))
    state = brain.run(state, round(300 / brain.dt_ms))
    trace = []

    def record(i, s):
        trace.append(s.spikes[:, pfc].mean())

    state = brain.run(state, round(200 / brain.dt_ms), on_step=record)
    baseline = torch.stack(trace).mean().item() / (brain.dt_ms * 1e-3)
    state = brain.run(state, round(200 / brain.dt_ms), brain.input_for_roles("prefrontal", 12.0, batch))
    trace.clear()
    brain.run(state, 4 * bin_steps, on_step=record)
    late = torch.stack(trace[bin_steps:]).mean().item() / (brain.dt_ms * 1e-3)
    return late - baseline


@pytest.mark.parametrize("backend", BACKENDS)
def test_nmda_prolongs_post_stimulus_activity_in_prefrontal_regions(backend):
    excess_on = _post_stimulus_excess(3.0, backend)
    excess_off = _post_stimulus_excess(0.0, backend)
    assert excess_on > 1.0  # still elevated 25-100 ms after the stimulus ended
    assert excess_on > excess_off + 1.0


# ------------------------------------------------------------------------------------ batching and seeding


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_elements_with_identical_inputs_and_noise_keys_spike_identically(backend):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend))
    state = brain.initial_state(3, noise_keys=[11, 22, 11])
    state.v[2] = state.v[0]
    current = torch.zeros(3, brain.n_neurons)
    current[:, :50] = 5.0
    single = init_state(brain.network, 1, noise_keys=[22], noise_windows=state.noise_windows)
    single.v.copy_(state.v[1:2])
    _, batched = spike_times(brain, state, 1000, current)
    _, alone = spike_times(brain, single, 1000, current[1:2])
    assert batched.sum() > 0
    assert torch.equal(batched[:, 0], batched[:, 2])
    assert not torch.equal(batched[:, 0], batched[:, 1])
    assert torch.equal(batched[:, 1], alone[:, 0])  # batching changes nothing for an element


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_generator_seed_reproduces_exactly_and_clone_state_snapshots(backend):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend))
    runs = []
    for _ in range(2):
        state = brain.initial_state(2, generator=torch.Generator().manual_seed(5))
        runs.append(spike_times(brain, state, 1500)[1])
    assert torch.equal(runs[0], runs[1])
    other = brain.initial_state(2, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(runs[0], spike_times(brain, other, 1500)[1])
    # a snapshot replays the same future
    state = brain.run(brain.initial_state(1), 100)
    snapshot = clone_state(state)
    future_a = spike_times(brain, state, 300)[1]
    future_b = spike_times(brain, snapshot, 300)[1]
    assert torch.equal(future_a, future_b)


@pytest.mark.parametrize(("backend", "alif", "batch"), [("torch", False, 2), ("numba", False, 2), ("torch", True, 1),
                                                       ("numba", True, 1)])  # fmt: skip
def test_pickled_and_deep_copied_states_continue_identically(backend, alif, batch):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend,
                                     **(ALIF_TEST if alif else {})))  # fmt: skip
    state = brain.run(brain.initial_state(batch), 150)
    copies = [pickle.loads(pickle.dumps(state)), copy.deepcopy(state), clone_state(state)]
    adaptation = state.adaptation.clone()
    original = spike_times(brain, state, 200)[1]
    assert original.sum() > 0
    for other in copies:
        assert other.backend == backend and other.step == 150
        assert torch.equal(other.adaptation, adaptation) and bool(adaptation.any()) == alif
        assert torch.equal(spike_times(brain, other, 200)[1], original)


def test_numba_brains_stepped_from_two_threads_match_sequential_runs():
    """Batched numba steps from two Python threads at once: no crash, and each result equals its run alone."""
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend="numba"))
    seeds = (1, 2)
    alone = [spike_times(brain, brain.initial_state(4, generator=torch.Generator().manual_seed(s)), 400)[1]
             for s in seeds]  # fmt: skip
    results = {}

    def work(seed):
        results[seed] = spike_times(brain, brain.initial_state(4, generator=torch.Generator().manual_seed(seed)), 400)[
            1
        ]

    threads = [threading.Thread(target=work, args=(seed,)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, expected in zip(seeds, alone, strict=True):
        assert torch.equal(results[seed], expected)


def test_numba_threads_leave_torch_thread_count_alone():
    """numba's OpenMP start-up resets the process-wide OpenMP thread count that torch reads (fresh process)."""
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from encephagen_gym.brain import BrainConfig, SpikingBrain\n"
        "brain = SpikingBrain(BrainConfig(neurons_per_region=4, device='cpu', backend='numba'))\n"
        "brain.run(brain.initial_state(4), 20)\n"
        "print(torch.get_num_threads())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_step_equals_module_step(backend):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend))
    a = brain.initial_state(2)
    b = clone_state(a)
    for _ in range(200):
        a = brain.step(a)
        b = brain_step(brain.network, brain.weights, b)
    assert torch.equal(a.v, b.v) and torch.equal(a.spikes, b.spikes) and a.step == b.step == 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_updated_in_place_change_the_dynamics(backend):
    brain = SpikingBrain(BrainConfig(neurons_per_region=20, local_connection_prob=0.5, device=CPU, backend=backend))
    first = spike_times(brain, brain.initial_state(1), 2000)[1].sum()
    brain.weights[brain.network.channel == INHIBITORY] = 0.0  # remove inhibition
    second = spike_times(brain, brain.initial_state(1), 2000)[1].sum()
    assert second > 1.5 * first


#: ALIF in the association cortices, with a strong, fast adaptation so that it acts within short tests.
ALIF_TEST = dict(alif_roles=("prefrontal", "parietal", "temporal"), alif_fraction=0.4, tau_adaptation_ms=300.0,
                 adaptation_mv=3.0)  # fmt: skip


@pytest.mark.parametrize(("batch", "alif"), [(1, False), (3, False), (1, True)], ids=["b1", "b3", "b1-alif"])
def test_numba_and_torch_backends_agree_to_float_rounding(batch, alif):
    """Same network, initial state and noise: voltages agree to float32 rounding, spikes match step by step
    until chaos amplifies a rounding difference; rates over 2 s agree statistically."""
    brain = SpikingBrain(BrainConfig(neurons_per_region=20, device=CPU, **(ALIF_TEST if alif else {})))
    states = {
        backend: init_state(brain.network, batch, generator=torch.Generator().manual_seed(7), backend=backend)
        for backend in BACKENDS
    }
    assert states["numba"].backend == "numba" and states["torch"].backend == "torch"
    current = torch.zeros(batch, brain.n_neurons)
    current[:, :200] = 8.0
    for _ in range(50):
        states = {name: brain.step(state, current) for name, state in states.items()}
        assert torch.equal(states["numba"].spikes, states["torch"].spikes)
        for field in ("v", "v_pre_reset", "currents", "arrivals", "refractory", "adaptation"):
            np.testing.assert_allclose(getattr(states["numba"], field), getattr(states["torch"], field), atol=1e-4)
    rates = {}
    for name, state in states.items():
        _, spikes = spike_times(brain, state, 2000)
        rates[name] = spikes.mean().item() * 1000.0  # Hz at dt = 1 ms
    assert 3.0 < rates["torch"] < 20.0
    assert rates["numba"] == pytest.approx(rates["torch"], rel=0.1)


def test_backend_choice_and_errors():
    from encephagen_gym.brain.config import resolve_backend

    assert SpikingBrain(BrainConfig(neurons_per_region=4, device=CPU)).initial_state(1).backend == "numba"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("numba", torch.device("cuda"))
    with pytest.raises(ValueError, match="backend must be one of"):
        BrainConfig(backend="jax")
    brain = SpikingBrain(BrainConfig(neurons_per_region=4, device=CPU))
    with pytest.raises(ValueError, match="backend must be one of"):
        init_state(brain.network, 1, backend="fast")


# ----------------------------------------------------------------------------------------------- readouts


def test_region_activity_counts_match_the_spikes():
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU))
    state = brain.initial_state(2)
    readout = brain.activity(2)
    exc = RegionActivity(brain.network, 2, population="excitatory")
    total = torch.zeros(2, brain.n_neurons)

    def both(i, s):
        total.add_(s.spikes)
        exc.update(s.spikes)

    brain.run(state, 400, readout=readout, on_step=both)
    np.testing.assert_allclose(readout.counts(), total.view(2, 96, 10).sum(2))
    np.testing.assert_allclose(exc.counts(), total.view(2, 96, 10)[:, :, :8].sum(2))
    assert readout.window_ms == pytest.approx(400 * brain.dt_ms)
    rates = readout.rates_hz()
    window_s = 400 * brain.dt_ms * 1e-3
    np.testing.assert_allclose(rates, total.view(2, 96, 10).sum(2) / (10 * window_s), rtol=1e-5)
    roles = readout.role_rates_hz()
    visual = load_connectome("tvb96").regions_with_role("visual")
    np.testing.assert_allclose(roles["visual"], rates[:, visual].mean(1), rtol=1e-6)
    readout.reset()
    assert readout.steps == 0 and readout.counts().sum() == 0
    with pytest.raises(ValueError, match=r"spikes must have shape \[2, 960\]"):
        readout.update(torch.zeros(2, 1920))


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "overrides",
    [
        dict(neurons_per_region=0),
        dict(neurons_per_region=2.5),
        dict(excitatory_fraction=1.0),
        dict(local_connection_prob=1.5),
        dict(tau_m_ms=0.0),
        dict(dt_ms=0.3),  # does not divide the 2 ms refractory period / 1 ms local delay
        dict(dt_ms=2.0),
        dict(background_eta=float("nan")),
        dict(pathway_inhibition=-1.0),
        dict(v_reset_mv=25.0),
        dict(seed=-1),
    ],
)
def test_impossible_configs_raise(overrides):
    with pytest.raises(ValueError, match="invalid BrainConfig"):
        BrainConfig(**overrides)


def test_unknown_connectome_and_device_raise():
    with pytest.raises(ValueError, match="valid: tvb96"):
        BrainConfig(connectome="tvb97")
    with pytest.raises(ValueError, match="device"):
        SpikingBrain(BrainConfig(neurons_per_region=4, device="tpu"))


def test_unknown_nmda_role_raises():
    with pytest.raises(ValueError, match="nmda_roles"):
        build_network(BrainConfig(neurons_per_region=4, nmda_roles=("cerebellum",), device=CPU))


@pytest.mark.parametrize("name", ["tvb76", "tvb66", "tvb96:rewired:1", "tvb96:random:1"])
def test_other_connectomes_and_null_models_run(name):
    brain = SpikingBrain(BrainConfig(connectome=name, neurons_per_region=10, device=CPU))
    net = brain.network
    assert net.n_regions == load_connectome(name).n_regions
    lr = net.is_long_range
    assert load_connectome(name).adjacency()[net.pre_region[lr].numpy(), net.post_region[lr].numpy()].all()
    activity = brain.activity(1)
    brain.run(brain.initial_state(1), 1000, readout=activity)
    assert 2.0 < activity.rates_hz().mean().item() < 30.0


def test_substeps_per_env_step():
    assert substeps_per_env_step(10.0, 0.5) == 20
    assert BrainConfig(dt_ms=0.1).substeps(8.0) == 80
    with pytest.raises(ValueError, match="whole multiple"):
        substeps_per_env_step(10.0, 0.3)
    with pytest.raises(ValueError, match="whole multiple"):
        BrainConfig(dt_ms=1.0).substeps(2.5)
    with pytest.raises(ValueError):
        substeps_per_env_step(0.0, 0.5)


def test_bad_inputs_raise():
    brain = SpikingBrain(BrainConfig(neurons_per_region=4, device=CPU))
    state = brain.initial_state(2)
    with pytest.raises(ValueError, match="shape"):
        brain.step(state, torch.zeros(1, brain.n_neurons))
    with pytest.raises(ValueError, match="shape"):
        brain.run(state, 5, torch.zeros(2, brain.n_neurons + 1))
    nan = torch.zeros(2, brain.n_neurons)
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        brain.step(state, nan)
    with pytest.raises(ValueError, match="NaN"):
        brain.run(state, 5, nan)
    with pytest.raises(ValueError, match="NaN"):
        brain.run(state, 5, lambda i: nan)
    with pytest.raises(ValueError, match="batch_size"):
        brain.initial_state(0)
    with pytest.raises(ValueError, match="noise_keys"):
        brain.initial_state(2, noise_keys=[1])


def test_auto_device_is_cpu_without_cuda():
    brain = SpikingBrain(BrainConfig(neurons_per_region=4, device="auto"))
    assert brain.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert brain.weights.device.type == brain.device.type


def test_module_to_moves_network_and_weights_together():
    brain = SpikingBrain(BrainConfig(neurons_per_region=4, device=CPU))
    moved = brain.to("cuda" if torch.cuda.is_available() else "cpu")
    assert moved.network.device == moved.weights.device == moved.network.pre.device
    state = moved.run(moved.initial_state(1), 20)
    assert state.v.device == moved.device


# ------------------------------------------------------------------------------- full size (-m slow only)


@pytest.mark.slow
def test_full_size_brain_is_asynchronous_irregular():
    brain = SpikingBrain(BrainConfig(device=CPU))
    state = brain.run(brain.initial_state(1), round(200 / brain.dt_ms))
    n_steps = round(3000 / brain.dt_ms)
    raster = torch.zeros((n_steps, brain.n_neurons), dtype=torch.bool)
    brain.run(state, n_steps, on_step=lambda i, s: raster.__setitem__(i, s.spikes[0] > 0))
    rates, cvs = _rates_and_cvs(raster.numpy(), brain.dt_ms)
    assert 5.0 <= rates.mean() <= 15.0
    assert 0.5 <= np.median(cvs) <= 1.5
    assert (rates == 0).mean() < 0.05


@pytest.mark.slow
def test_default_dt_rates_within_15_percent_of_dt_0_1():
    rates = {}
    for dt in (0.1, BrainConfig().dt_ms):
        brain = SpikingBrain(BrainConfig(dt_ms=dt, device=CPU))
        activity = brain.activity(1)
        state = brain.run(brain.initial_state(1), round(200 / dt))
        brain.run(state, round(1000 / dt), readout=activity)
        rates[dt] = activity.rates_hz().mean().item()
    reference = rates.pop(0.1)
    assert abs(next(iter(rates.values())) - reference) / reference < 0.15


def test_kernel_cache_memoises_per_tensor_without_keeping_it_alive():
    import gc
    import weakref

    from encephagen_gym.brain.cpu_kernel import cached_for

    cache, builds = {}, []
    owner = torch.zeros(3)
    owner_ref = weakref.ref(owner)
    assert cached_for(cache, owner, lambda: builds.append(1) or "tables") == "tables"
    assert cached_for(cache, owner, lambda: builds.append(1) or "again") == "tables" and len(builds) == 1
    del owner
    gc.collect()
    assert owner_ref() is None  # the cache did not keep the network alive
    other = torch.zeros(2)
    assert cached_for(cache, other, lambda: "new") == "new" and len(cache) == 1  # the stale entry is dropped


# ------------------------------------------------------------------------------ network identity (fingerprints)

_MISMATCH_SCRIPT = """
import torch
from encephagen_gym.brain import BrainConfig, SpikingBrain, brain_step
from encephagen_gym.brain.simulator import init_state
torch.set_num_threads(1)
base = dict(neurons_per_region=10, device="cpu")
cases = {  # name: (config of the state's brain, what the error must name); the brain has the base config
    "larger": (dict(neurons_per_region=20), "neurons_per_region"),
    "smaller": (dict(neurons_per_region=6), "neurons_per_region"),
    "dt": (dict(dt_ms=0.5), "dt_ms"),
    "velocity": (dict(conduction_velocity_mm_per_ms=1.0), "conduction_velocity_mm_per_ms"),
    "tvb76": (dict(connectome="tvb76"), "connectome"),
    "seed": (dict(seed=1), "seed"),
}
for backend in ("numba", "torch"):
    brain = SpikingBrain(BrainConfig(**base, backend=backend))
    current = torch.ones(1, brain.n_neurons)
    for name, (state_cfg, field) in cases.items():
        source = SpikingBrain(BrainConfig(**{**base, **state_cfg, "backend": backend}))
        state = source.run(source.initial_state(1), 5)
        for call in (lambda: brain.step(state), lambda: brain.run(state, 3),
                     lambda: brain.run(state, 3, current), lambda: brain.step(state, current),
                     lambda: brain_step(brain.network, brain.weights, state)):
            try:
                call()
            except ValueError as error:
                assert field in str(error) and "another network" in str(error), str(error)
            else:
                raise SystemExit(f"{backend} {name}: no error")
        print("refused", backend, name, flush=True)
# the kernel's own guard: a state whose fingerprint was forged still cannot reach the kernel with wrong shapes
brain = SpikingBrain(BrainConfig(**base, backend="numba"))
big = SpikingBrain(BrainConfig(neurons_per_region=20, device="cpu", backend="numba"))
forged = big.initial_state(1)._replace(fingerprint=brain.network.fingerprint)
try:
    brain.step(forged)
except ValueError as error:
    assert "do not fit" in str(error), str(error)
    print("refused forged", flush=True)
try:
    brain_step(brain.network, big.weights, brain.initial_state(1))
except ValueError as error:
    assert "weights must have shape" in str(error), str(error)
    print("refused weights", flush=True)
"""


def test_states_of_another_network_raise_instead_of_crashing():
    """Each of these crashed the process (numba: a state from a larger brain, another dt, another conduction
    velocity, tvb76 on tvb96) or ran silently on the wrong network (a smaller brain's state; torch: dt 0.5 on
    dt 1 gave 0 Hz). Run in a subprocess so that a regression shows as a failed test, not a dead pytest."""
    result = subprocess.run([sys.executable, "-c", _MISMATCH_SCRIPT], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    refused = result.stdout.split("\n")
    assert len([line for line in refused if line.startswith("refused")]) == 2 * 6 + 2


def test_fingerprint_names_what_differs_and_survives_pickling():
    from encephagen_gym.brain.network import check_same_network

    small = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU))
    large = SpikingBrain(BrainConfig(neurons_per_region=20, device=CPU))
    again = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend="torch"))  # backend: same network
    assert small.network.fingerprint == again.network.fingerprint
    assert small.network.fingerprint is not again.network.fingerprint
    state = large.initial_state(1)
    with pytest.raises(ValueError, match="state made for neurons_per_region=20, this network has 10"):
        brain_step(small.network, small.weights, state)
    restored = pickle.loads(pickle.dumps(small.initial_state(1)))
    assert restored.fingerprint == small.network.fingerprint
    small.step(restored)  # a pickled state keeps its identity
    again.step(small.initial_state(1, noise_keys=[5]))  # a state of an equal network is accepted
    with pytest.raises(ValueError, match="no network fingerprint"):
        check_same_network(small.network.fingerprint, None, "the state")


# ------------------------------------------------------------------------------ background noise, memory, dt


def test_noise_bank_mean_is_exact_for_every_seed():
    """The bank holds exactly round(λ·dt·L) events (a freely drawn Poisson bank's mean was off by ~0.4 % at
    dt 0.1 ms, a per-seed bias in everyone's drive), and every bin is read by exactly N windows (circular)."""
    for dt in (0.1, 1.0):
        brain = SpikingBrain(BrainConfig(neurons_per_region=10, dt_ms=dt, device=CPU))
        expected = brain.network.background_rate_hz * dt * 1e-3
        means = []
        for seed in range(4):
            windows = brain.initial_state(1, generator=torch.Generator().manual_seed(seed)).noise_windows
            bins = windows[:, 0]  # window o starts at bin o: the whole bank, once
            assert windows.shape[0] == bins.numel()
            assert torch.equal(windows[-1, 1:], bins[: brain.n_neurons - 1])  # wraps around
            assert torch.all(bins == bins.round()) and bins.min() >= 0  # whole counts
            means.append(bins.double().mean().item())
        assert max(abs(m / expected - 1.0) for m in means) < 1e-4
        assert len(set(means)) == 1  # the same total for every seed; the events land in different bins


def test_dt_outside_the_documented_range_is_refused():
    for dt in (1e-9, 1e-5, 0.05, 1.5):
        with pytest.raises(ValueError, match=r"dt_ms must lie in \[0.1, 1.0\]"):
            BrainConfig(dt_ms=dt)
    assert BrainConfig(dt_ms=0.1).dt_ms == 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_memory_is_estimated_and_refused_when_it_does_not_fit(backend, monkeypatch):
    from encephagen_gym.brain import simulator

    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend))
    estimate = simulator.estimate_state_bytes(brain.network, 4)
    without_bank = simulator.estimate_state_bytes(brain.network, 4, shared_bank=True)
    state = brain.initial_state(4)
    allocated = sum(t.nbytes for t in state if isinstance(t, torch.Tensor) and t._base is None)
    assert allocated <= without_bank <= 1.2 * allocated  # the gate/threshold buffers are views: counted apart
    assert estimate - without_bank >= state.noise_windows.untyped_storage().nbytes()  # the bank, + temporaries
    single = simulator.estimate_state_bytes(brain.network, 1)
    monkeypatch.setattr(simulator, "available_memory_bytes", lambda device: (single + estimate) // 2)
    with pytest.raises(ValueError, match=r"needs about .* GiB, but only .* GiB are available"):
        brain.initial_state(4)
    brain.initial_state(1)  # a smaller batch fits


@pytest.mark.parametrize("backend", BACKENDS)
def test_spike_count_is_counted_inside_the_step(backend):
    brain = SpikingBrain(BrainConfig(neurons_per_region=10, device=CPU, backend=backend))
    state = brain.initial_state(2)
    total = torch.zeros(2, brain.n_neurons)
    state = brain.run(state, 150, on_step=lambda i, s: total.add_(s.spikes))
    assert total.sum() > 0 and torch.equal(state.spike_count, total)
    assert torch.equal(clone_state(state).spike_count, total)


@pytest.mark.slow
def test_rate_spread_across_noise_seeds_at_dt_0_1_is_within_0_3_percent():
    """96×200 at dt 0.1 ms, one network, five noise seeds (bank, keys, initial V): every seed's rate within
    ±0.3 % of their mean (with the old freely drawn bank: ±1.4 % for three seeds, in the bank means' order)."""
    brain = SpikingBrain(BrainConfig(dt_ms=0.1, device=CPU))
    rates = []
    for seed in range(5):
        state = brain.initial_state(1, generator=torch.Generator().manual_seed(100 + seed))
        state = brain.run(state, 2000)
        state.spike_count.zero_()
        brain.run(state, 30000)
        rates.append(state.spike_count.mean().item() / 3.0)
    rates = np.array(rates)
    print(
        f"dt 0.1 ms rates over noise seeds: {np.round(rates, 3)} Hz, spread ±{50 * np.ptp(rates) / rates.mean():.2f} %"
    )
    assert np.all(np.abs(rates / rates.mean() - 1.0) <= 0.003)
