"""Golden values and properties of the Matsuoka CPG (``encephagen_gym.envs.cpg``), a pure function."""

from __future__ import annotations

import numpy as np
import pytest

from encephagen_gym.envs.cpg import MatsuokaParams, MatsuokaState, matsuoka_output, matsuoka_step

# Explicit parameters (not the defaults, which may be retuned): τ 50 ms, τ_a 500 ms, β 2.5, w 2.0 / 0.5.
PARAMS = MatsuokaParams(tau=0.05, tau_adapt=0.5, beta=2.5, w_mutual=2.0, w_crossed=0.5)
DT = 0.005


def run(params: MatsuokaParams, state: MatsuokaState, n: int, tonic: float = 1.0) -> np.ndarray:
    xs = []
    for _ in range(n):
        state = matsuoka_step(params, state, np.full(4, tonic), np.zeros(4), DT)
        xs.append(state.x)
    return np.array(xs)


def test_one_step_golden_values() -> None:
    state = MatsuokaState(np.array([0.3, -0.1, 0.05, 0.2]), np.array([0.1, 0.0, 0.02, 0.15]))
    new = matsuoka_step(PARAMS, state, np.array([1.0, 1.0, 0.5, 0.5]), np.array([0.1, -0.1, 0.0, 0.0]), DT)
    # Unit 0 by hand: y = (0.3, 0, 0.05, 0.2); inhibition = 2.0·0 + 0.5·0.05 = 0.025;
    # x∞ = 1 + 0.1 − 2.5·0.1 − 0.025 = 0.825; x' = 0.825 + (0.3 − 0.825)·e^(−0.1); v' = 0.3 + (0.1 − 0.3)·e^(−0.01).
    assert new.x[0] == pytest.approx(0.825 + (0.3 - 0.825) * np.exp(-0.1), abs=1e-15)
    assert new.v[0] == pytest.approx(0.3 + (0.1 - 0.3) * np.exp(-0.01), abs=1e-15)
    np.testing.assert_allclose(
        new.x, [0.34996035553112115, -0.07145122541078786, 0.03572561270539393, 0.18334654815629295], atol=1e-14
    )
    np.testing.assert_allclose(new.v, [0.1019900332501664, 0.0, 0.02029850498752496, 0.1504975083125416], atol=1e-14)


def test_golden_trace_of_the_free_rhythm() -> None:
    xs = run(PARAMS, MatsuokaState(np.array([0.1, 0.0, 0.0, 0.05]), np.zeros(4)), 2000)
    np.testing.assert_allclose(
        xs[[99, 999, 1999]],
        [
            [-0.17187489203818773, 0.5011322493662884, 0.48257484715834126, -0.1483872633836344],
            [0.4655194087749537, -0.21693765045136237, -0.21693709849320442, 0.4655190340839261],
            [0.00187805706071416, 0.2884533042434591, 0.2884533042435752, 0.00187805705849313],
        ],
        atol=1e-12,
    )


def test_free_rhythm_frequency_and_alternation() -> None:
    xs = run(PARAMS, MatsuokaState(np.array([0.1, 0.0, 0.0, 0.05]), np.zeros(4)), 4000)[1000:]
    y = np.maximum(xs, 0.0)
    leg0, leg1 = y[:, 0] - y[:, 1], y[:, 2] - y[:, 3]
    ups = np.flatnonzero((leg0[:-1] < 0) & (leg0[1:] >= 0))
    frequency = (ups.size - 1) / ((ups[-1] - ups[0]) * DT)
    assert frequency == pytest.approx(0.78, abs=0.02)  # Hz, set by τ, τ_a, β and the inhibition
    assert np.corrcoef(leg0, leg1)[0, 1] < -0.95  # crossed inhibition: the legs alternate


def test_pure_function_leaves_inputs_untouched() -> None:
    state = MatsuokaState(np.array([0.3, -0.1, 0.05, 0.2]), np.array([0.1, 0.0, 0.02, 0.15]))
    tonic, feedback = np.ones(4), np.full(4, 0.1)
    copies = [a.copy() for a in (*state, tonic, feedback)]
    first = matsuoka_step(PARAMS, state, tonic, feedback, DT)
    second = matsuoka_step(PARAMS, state, tonic, feedback, DT)
    for a, b in zip((*state, tonic, feedback), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.x, second.x)


def test_silent_units_decay_exactly_exponentially() -> None:
    state = MatsuokaState(np.array([-0.4, -0.2, -0.1, -0.3]), np.zeros(4))
    new = matsuoka_step(PARAMS, state, np.zeros(4), np.zeros(4), DT)
    np.testing.assert_allclose(new.x, state.x * np.exp(-DT / PARAMS.tau), rtol=1e-15)
    np.testing.assert_array_equal(new.v, 0.0)
    np.testing.assert_array_equal(matsuoka_output(new), 0.0)


def test_amplitude_scales_with_tonic_input_and_rate_scales_time() -> None:
    start = MatsuokaState(np.array([0.1, 0.0, 0.0, 0.05]), np.zeros(4))
    base = run(PARAMS, start, 600, tonic=1.0)
    doubled = run(PARAMS, MatsuokaState(2 * start.x, 2 * start.v), 600, tonic=2.0)
    np.testing.assert_allclose(doubled, 2 * base, atol=1e-12)  # positively homogeneous in (x, v, c)
    fast, slow = start, start
    for _ in range(100):
        fast = matsuoka_step(PARAMS, fast, np.ones(4), np.zeros(4), DT, rate=2.0)
    for _ in range(100):
        slow = matsuoka_step(PARAMS, slow, np.ones(4), np.zeros(4), 2 * DT)
    np.testing.assert_allclose(fast.x, slow.x, atol=1e-15)


def test_oscillation_bound_and_the_original_parameters() -> None:
    assert PARAMS.oscillates()
    original = MatsuokaParams(tau=0.05, tau_adapt=0.5, beta=2.5, w_mutual=2.5, w_crossed=1.5)
    assert not original.oscillates()  # 2.5 + 1.5 > 1 + β: one unit per leg wins for good
    xs = run(original, MatsuokaState(np.array([0.1, 0.0, 0.0, 0.05]), np.zeros(4)), 3000)
    assert np.ptp(xs[-1000:], axis=0).max() < 1e-3


@pytest.mark.parametrize(
    "kwargs", [{"tau": 0.0}, {"tau_adapt": -1.0}, {"beta": float("nan")}, {"w_mutual": -0.1}, {"w_crossed": -1}]
)
def test_bad_params_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        MatsuokaParams(**kwargs)
