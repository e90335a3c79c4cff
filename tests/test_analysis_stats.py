"""analysis.stats against hand-computed values and rliable's definitions."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from analysis import stats

# --- aggregate metrics -------------------------------------------------------


def test_iqm_of_known_array_is_mean_of_middle_half():
    scores = np.arange(1.0, 9.0).reshape(4, 2)  # 1..8: the middle half is 3, 4, 5, 6
    assert stats.iqm(scores) == pytest.approx(4.5)
    assert stats.iqm(scores) == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None))


def test_iqm_matches_scipy_and_ignores_missing_runs():
    x = np.random.default_rng(0).normal(size=(7, 5))
    assert stats.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25, axis=None))
    padded = np.vstack([x, np.full((2, 5), np.nan)])
    assert stats.iqm(padded) == pytest.approx(stats.iqm(x))


def test_mean_and_median_are_over_per_task_means():
    scores = np.array([[0.0, 1.0, 10.0], [2.0, 3.0, 30.0]])  # task means 1, 2, 20
    assert stats.mean(scores) == pytest.approx(23.0 / 3.0)
    assert stats.median(scores) == pytest.approx(2.0)


def test_mean_with_ragged_tasks_weights_tasks_equally():
    scores = np.array([[0.0, 10.0], [0.0, 20.0], [3.0, np.nan]])  # task means 1 and 15
    assert stats.mean(scores) == pytest.approx(8.0)


def test_optimality_gap_clips_at_gamma():
    scores = np.array([[0.5, 1.5], [0.2, 0.8]])  # min(., 1) = 0.5, 1, 0.2, 0.8 -> mean 0.625
    assert stats.optimality_gap(scores) == pytest.approx(0.375)
    assert stats.optimality_gap(scores, gamma=2.0) == pytest.approx(2.0 - 0.75)


def test_score_distribution_is_fraction_above_tau():
    scores = np.array([[0.1, 0.5], [0.9, 0.3]])
    np.testing.assert_allclose(stats.score_distribution(scores, [0.0, 0.4, 0.5, 1.0]), [1.0, 0.5, 0.25, 0.0])


# --- probability of improvement ----------------------------------------------


def test_probability_of_improvement_dominating_and_identical():
    x = np.array([[3.0], [4.0], [5.0]])
    y = np.array([[0.0], [1.0], [2.0]])
    assert stats.probability_of_improvement(x, y) == 1.0
    assert stats.probability_of_improvement(y, x) == 0.0
    assert stats.probability_of_improvement(x, x) == 0.5


def test_probability_of_improvement_counts_ties_half_and_averages_tasks():
    x = np.array([[1.0, 1.0], [2.0, 3.0]])
    y = np.array([[2.0, 2.0]])
    # task 0: pairs (1>2)=0, (2=2)=0.5 -> 0.25; task 1: (1>2)=0, (3>2)=1 -> 0.5
    assert stats.probability_of_improvement(x, y) == pytest.approx(0.375)


def test_probability_of_improvement_matches_mann_whitney():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 4)), rng.normal(0.3, size=(5, 4))
    expected = np.mean([scipy.stats.mannwhitneyu(x[:, t], y[:, t], alternative="greater").statistic / 30
                        for t in range(4)])
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected)


def test_probability_of_improvement_interval_for_dominating_sets_is_one():
    x = np.array([[3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    iv = stats.stratified_bootstrap_pair(x, x - 100.0, reps=300, seed=0)
    assert (float(iv.point), float(iv.low), float(iv.high)) == (1.0, 1.0, 1.0)


# --- bootstrap ------------------------------------------------------------------


def test_bootstrap_is_reproducible_with_a_seed_and_contains_the_point():
    scores = np.random.default_rng(1).normal(size=(5, 3))
    a = stats.stratified_bootstrap(scores, stats.iqm, reps=2000, seed=7)
    b = stats.stratified_bootstrap(scores, stats.iqm, reps=2000, seed=7)
    c = stats.stratified_bootstrap(scores, stats.iqm, reps=2000, seed=np.random.default_rng(7))
    other = stats.stratified_bootstrap(scores, stats.iqm, reps=2000, seed=8)
    assert (a.low, a.high) == (b.low, b.high) == (c.low, c.high)
    assert (a.low, a.high) != (other.low, other.high)
    assert a.low <= a.point <= a.high
    assert a.point == pytest.approx(stats.iqm(scores))


def test_bootstrap_resamples_within_tasks():
    # Stratified: every resample keeps three runs of each task, so the IQM of
    # {0, 0, 0, 10, 10, 10} never moves. Pooled resampling would.
    scores = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    iv = stats.stratified_bootstrap(scores, stats.iqm, reps=500, seed=0)
    assert float(iv.low) == float(iv.high) == float(iv.point) == 5.0


def test_bootstrap_with_one_run_per_task_has_zero_width():
    iv = stats.stratified_bootstrap(np.array([[1.0, 2.0]]), stats.mean, reps=100, seed=0)
    assert float(iv.low) == float(iv.high) == 1.5


@settings(max_examples=25, deadline=None)
@given(arrays(float, st.tuples(st.integers(1, 6), st.integers(1, 3)),
              elements=st.floats(-1e3, 1e3, allow_nan=False)), st.integers(0, 2**16))
def test_bootstrap_bounds_are_ordered_and_within_the_data(scores, seed):
    for fn in (stats.mean, stats.iqm):
        iv = stats.stratified_bootstrap(scores, fn, reps=200, seed=seed)
        assert iv.low <= iv.high
        assert scores.min() - 1e-9 <= iv.low and iv.high <= scores.max() + 1e-9


def test_performance_profile_has_point_within_interval_and_is_monotone():
    scores = np.random.default_rng(2).uniform(size=(5, 3))
    taus = np.linspace(0, 1, 11)
    iv = stats.performance_profile(scores, taus, reps=500, seed=0)
    assert iv.point.shape == iv.low.shape == iv.high.shape == (11,)
    assert np.all(np.diff(iv.point) <= 0)
    assert np.all(iv.low <= iv.point + 1e-12) and np.all(iv.point <= iv.high + 1e-12)
    assert iv.point[0] == 1.0 and iv.point[-1] == 0.0


def test_curve_interval_is_pointwise_mean_over_available_runs():
    curves = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, np.nan]])
    iv = stats.curve_interval(curves, "mean", reps=200, seed=0)
    np.testing.assert_allclose(iv.point, [1.0, 2.0, 2.0])
    assert np.all(iv.low <= iv.point) and np.all(iv.point <= iv.high)
    assert iv.low[2] == iv.high[2] == 2.0  # one run left: no spread


# --- per-run summaries and alignment ----------------------------------------------


def test_final_performance_is_mean_of_last_tenth():
    assert stats.final_performance(np.arange(1.0, 21.0)) == pytest.approx(19.5)  # last 2 of 20
    # ceil(0.2 * 11) = 3 last updates: 9, 10 and a NaN (no episode finished)
    assert stats.final_performance([*range(1, 11), math.nan], fraction=0.2) == pytest.approx(9.5)
    assert math.isnan(stats.final_performance([]))
    assert math.isnan(stats.final_performance([1.0, math.nan], fraction=0.5))
    with pytest.raises(ValueError):
        stats.final_performance([1.0], fraction=0.0)


def test_align_curves_interpolates_and_never_extrapolates():
    grid = np.array([0.0, 5.0, 15.0, 20.0, 25.0])
    out = stats.align_curves(
        [np.array([0.0, 10.0, 20.0]), np.array([10.0, 20.0])],
        [np.array([0.0, 10.0, 40.0]), np.array([1.0, 1.0])],
        grid,
    )
    np.testing.assert_allclose(out[0], [0.0, 5.0, 25.0, 40.0, np.nan])
    np.testing.assert_allclose(out[1], [np.nan, np.nan, 1.0, 1.0, np.nan])


def test_align_curves_bridges_updates_without_episodes():
    grid = np.array([10.0, 15.0, 20.0, 25.0])
    out = stats.align_curves([np.array([0.0, 10.0, 20.0])] * 2,
                             [np.array([0.0, np.nan, 20.0]), np.array([0.0, 10.0, np.nan])], grid)
    np.testing.assert_allclose(out[0], [10.0, 15.0, 20.0, np.nan])
    np.testing.assert_allclose(out[1], [10.0, 10.0, 10.0, np.nan])  # held, inside the logged range only


def test_step_grid_spans_first_to_last_step():
    grid = stats.step_grid([np.array([2.0, 4.0]), np.array([1.0, np.nan, 8.0])], n_points=8)
    assert grid[0] == 1.0 and grid[-1] == 8.0 and grid.size == 8
    assert stats.step_grid([np.array([np.nan])]).size == 0


# --- normalization ---------------------------------------------------------------


def test_normalization_maps_random_to_zero_and_reference_to_one():
    ref = stats.REFERENCE_SCORES["Hopper-v5"]
    np.testing.assert_allclose(stats.normalize([ref.random, ref.reference], ref.random, ref.reference), [0.0, 1.0])
    scores = np.array([[ref.reference, 10.0]])
    out = stats.normalize_tasks(scores, ["Hopper-v5", "MyEnv-v0"], overrides={"MyEnv-v0": (0.0, 20.0)})
    np.testing.assert_allclose(out, [[1.0, 0.5]])


def test_normalization_names_every_task_without_reference():
    with pytest.raises(KeyError, match="MyEnv-v0.*Other-v1|Other-v1.*MyEnv-v0"):
        stats.normalize_tasks(np.zeros((1, 2)), ["MyEnv-v0", "Other-v1"])


def test_reference_table_covers_mujoco_v5_and_classic_control():
    for env_id in ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5",
                   "InvertedPendulum-v5", "CartPole-v1", "Pendulum-v1"]:
        ref = stats.REFERENCE_SCORES[env_id]
        assert ref.reference > ref.random and ref.source


def test_the_same_runs_get_the_same_interval_under_any_name_and_in_any_order():
    """The default runs appear in several ablations and identical runs under two methods: their
    CI must not depend on the group's label or the order its runs come in."""
    import pandas as pd

    from analysis import summary

    v = np.array([694.0, 1259.0, 1916.0, 2625.0, 2847.0])
    forward = stats.estimate_over_runs(v, "iqm", seed=None)
    assert stats.estimate_over_runs(v[::-1], "iqm", seed=None) == forward
    assert forward[3] == stats.CI_KIND and forward[1] < forward[0] < forward[2]
    assert stats.values_rng(0, v).random() != stats.values_rng(0, v + 1).random()

    final = pd.DataFrame({"env_id": "Hopper-v5", "method": ["a"] * 5 + ["b"] * 5 + ["c"] * 5,
                          "final": np.concatenate([v, v[[3, 0, 4, 1, 2]], v + 1]), "finished": True})
    for statistic in ("mean", "iqm"):
        t = summary.final_table(final, statistic=statistic).set_index("method")
        cols = ["estimate", "ci_low", "ci_high"]
        assert t.loc["a", cols].tolist() == t.loc["b", cols].tolist()
        assert t.loc["c", "estimate"] == t.loc["a", "estimate"] + 1
