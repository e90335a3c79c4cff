"""GAE (Schulman et al. 2016, Eq. 16) on a hand-computed batch, and against a direct sum."""

from __future__ import annotations

import numpy as np
import pytest

from trpo_bench.rollout import gae


def test_gae_hand_computed_termination_and_truncation():
    """T = 4 steps, N = 2 envs, γ = λ = 1/2 (so γλ = 1/4): every value is an exact binary fraction.

    env 0: terminates at t = 2 (no bootstrap; next_values[2] = 99 must be ignored), then a new
           episode runs to the end of the batch and bootstraps from V(s_4) = 3.
    env 1: truncated at t = 1: bootstraps from V(final obs) = 4 (not the reset obs' value 2),
           and the recursion does not carry t = 2's advantage back across the boundary.

    δ_t = r_t + γ·V'_t·(1 − term_t) − V_t;   A_t = δ_t + γλ·(1 − done_t)·A_{t+1}

    env 0:  t=3: δ = 4 + ½·3 − 2 = 3.5               A = 3.5
            t=2: δ = 3 + 0   − 1 = 2    (terminated) A = 2
            t=1: δ = 2 + ½·1 − 2 = 0.5               A = 0.5 + ¼·2    = 1
            t=0: δ = 1 + ½·2 − 1 = 1                 A = 1   + ¼·1    = 1.25
    env 1:  t=3: δ = 1 + ½·2 − 4 = −2                A = −2
            t=2: δ = 2 + ½·4 − 2 = 2                 A = 2   + ¼·(−2) = 1.5
            t=1: δ = 1 + ½·4 − 0 = 3    (truncated)  A = 3
            t=0: δ = 0 + ½·0 − 2 = −2                A = −2  + ¼·3    = −1.25
    """
    rewards = np.array([[1, 0], [2, 1], [3, 2], [4, 1]], dtype=np.float64)
    values = np.array([[1, 2], [2, 0], [1, 2], [2, 4]], dtype=np.float64)
    # V(s_{t+1}): the next row of `values`, except V(final obs) = 4 at env 1's truncation,
    # an ignored 99 at env 0's termination, and V(s_4) = (3, 2) for the last row.
    next_values = np.array([[2, 0], [1, 4], [99, 4], [3, 2]], dtype=np.float64)
    terminated = np.array([[0, 0], [0, 0], [1, 0], [0, 0]], dtype=bool)
    truncated = np.array([[0, 0], [0, 1], [0, 0], [0, 0]], dtype=bool)

    adv = gae(rewards, values, next_values, terminated, truncated, gamma=0.5, lam=0.5)

    expected = np.array([[1.25, -1.25], [1.0, 3.0], [2.0, 1.5], [3.5, -2.0]])
    assert adv.dtype == np.float64
    assert np.array_equal(adv, expected)  # exact: all binary fractions
    # The value targets the critic fits: A + V.
    assert np.array_equal(adv + values, np.array([[2.25, 0.75], [3.0, 3.0], [3.0, 3.5], [5.5, 2.0]]))


def test_terminated_takes_precedence_over_truncated():
    # gymnasium may report both at once; a terminal state has value 0 whatever the time limit.
    r = np.array([[1.0]])
    v = np.array([[0.5]])
    nv = np.array([[10.0]])
    both = gae(r, v, nv, np.array([[True]]), np.array([[True]]), gamma=0.9, lam=0.9)
    assert both[0, 0] == 1.0 - 0.5
    trunc = gae(r, v, nv, np.array([[False]]), np.array([[True]]), gamma=0.9, lam=0.9)
    assert trunc[0, 0] == pytest.approx(1.0 + 0.9 * 10.0 - 0.5)


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Direct sum A_t = Σ_k (γλ)^k δ_{t+k} over the rest of t's episode (in the batch)."""
    T, N = rewards.shape
    delta = rewards + gamma * next_values * (1 - terminated) - values
    adv = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            total, k = 0.0, 0
            while t + k < T:
                total += (gamma * lam) ** k * delta[t + k, i]
                if terminated[t + k, i] or truncated[t + k, i]:
                    break
                k += 1
            adv[t, i] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.97), (0.9, 0.0), (1.0, 1.0), (0.5, 0.8)])
def test_gae_matches_direct_sum(gamma, lam):
    rng = np.random.default_rng(0)
    T, N = 40, 3
    rewards = rng.standard_normal((T, N))
    values = rng.standard_normal((T, N))
    next_values = rng.standard_normal((T, N))
    terminated = rng.random((T, N)) < 0.1
    truncated = (rng.random((T, N)) < 0.1) & ~terminated
    adv = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    ref = reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    assert np.allclose(adv, ref, rtol=0, atol=1e-12)


def test_gae_special_cases():
    rng = np.random.default_rng(1)
    T, N = 6, 2
    r = rng.standard_normal((T, N))
    v = rng.standard_normal((T, N))
    nv = rng.standard_normal((T, N))
    no = np.zeros((T, N), dtype=bool)
    # λ = 0: one-step TD error.
    assert np.allclose(gae(r, v, nv, no, no, 0.9, 0.0), r + 0.9 * nv - v, rtol=0, atol=1e-15)
    # γ = λ = 1, no boundaries: undiscounted return-to-go plus the final bootstrap, minus V,
    # when next_values chain (V'_t = V_{t+1}).
    nv_chain = np.vstack([v[1:], nv[-1:]])
    mc = np.cumsum(r[::-1], axis=0)[::-1] + nv[-1] - v
    assert np.allclose(gae(r, v, nv_chain, no, no, 1.0, 1.0), mc, rtol=0, atol=1e-12)


def recursive_gae_by_rows(rewards, values, next_values, terminated, truncated, gamma, lam):
    """The recursion written over whole (N,) rows, as trpo-bench computed it before the
    per-env loop: stored runs were made with these bits."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1:], dtype=np.float64)
    not_term = 1.0 - terminated.astype(np.float64)
    not_done = 1.0 - (terminated | truncated).astype(np.float64)
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * next_values[t] * not_term[t] - values[t]
        last = delta + gamma * lam * not_done[t] * last
        adv[t] = last
    return adv


@pytest.mark.parametrize("n", [1, 3, 8])
def test_gae_bits_equal_the_row_wise_recursion(n):
    # A seed must reproduce a run stored by earlier versions: the same floating-point
    # operations in the same order, so equality is exact, not approximate.
    rng = np.random.default_rng(n)
    T = 257
    rewards = rng.standard_normal((T, n)) * rng.choice([1e-3, 1.0, 1e3], (T, n))
    values = rng.standard_normal((T, n)) * 10
    next_values = rng.standard_normal((T, n)) * 10
    terminated = rng.random((T, n)) < 0.05
    truncated = (rng.random((T, n)) < 0.05) & ~terminated
    for gamma, lam in [(0.99, 0.97), (0.995, 0.95), (0.9, 0.3)]:
        adv = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        ref = recursive_gae_by_rows(rewards, values, next_values, terminated, truncated, gamma, lam)
        assert adv.shape == (T, n) and adv.flags.c_contiguous
        assert np.array_equal(adv, ref)
