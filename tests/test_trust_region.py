"""The trust-region update (TRPO), natural PG and vanilla PG on small float64 problems.

Every KL here is recomputed independently: the policy is deep-copied before the update
and both distributions go through ``torch.distributions.kl_divergence``.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from trpo_bench.algos import npg, pg, trpo
from trpo_bench.algos.common import PolicyBatch
from trpo_bench.config import PGSettings, TrustRegionSettings
from trpo_bench.linalg import conjugate_gradient, flat_grad, flat_params, make_fvp, set_flat_params, subsample_indices
from trpo_bench.policies import CategoricalPolicy, GaussianPolicy

F64 = torch.float64


# ----------------------------------------------------------------------------- helpers
def problem(kind: str, seed: int, batch: int = 128, hidden=(8,), spread: float = 0.3):
    """A float64 policy off its init, actions sampled from it, and advantages that reward
    tracking the observation (so the gradient is informative), standardized."""
    torch.manual_seed(seed)
    if kind == "gaussian":
        policy = GaussianPolicy(3, 2, list(hidden), "tanh", -0.5).double()
    else:
        policy = CategoricalPolicy(3, 3, list(hidden), "tanh").double()
    params = policy.param_list()
    theta = flat_params(params)
    set_flat_params(params, theta + spread * torch.randn(theta.shape, dtype=F64))
    obs = torch.randn(batch, 3, dtype=F64)
    with torch.no_grad():
        p = policy(obs)
        if kind == "gaussian":
            act = p.main + p.log_std.exp() * torch.randn_like(p.main)
            adv = -((act - obs[:, :2]) ** 2).sum(-1)
        else:
            act = Categorical(logits=p.main).sample().to(F64)
            adv = (act == (obs[:, 0] > 0).to(F64)).to(F64)
    adv = (adv - adv.mean()) / adv.std()
    return policy, PolicyBatch(obs, act, adv)


def dist(policy, obs):
    with torch.no_grad():
        return dist_with_grad(policy, obs)


def dist_with_grad(policy, obs):
    """π_θ(·|s) as a torch.distributions object, differentiable in θ."""
    p = policy(obs)
    if policy.discrete:
        return Categorical(logits=p.main)
    return Independent(Normal(p.main, p.log_std.exp().expand_as(p.main)), 1)


def true_kl(old_policy, new_policy, obs) -> float:
    """Mean KL(π_old ‖ π_new) by torch.distributions, from the two policies' own parameters."""
    return float(kl_divergence(dist(old_policy, obs), dist(new_policy, obs)).mean())


def true_kl_max(old_policy, new_policy, obs) -> float:
    """Largest per-state KL(π_old ‖ π_new) by torch.distributions."""
    return float(kl_divergence(dist(old_policy, obs), dist(new_policy, obs)).max())


def surrogate_gain(old_policy, new_policy, batch) -> float:
    """L(θ_new) − L(θ_old), with L = mean[π_new(a|s)/π_old(a|s) · A]."""
    ratio = torch.exp(dist(new_policy, batch.obs).log_prob(batch.actions)
                      - dist(old_policy, batch.obs).log_prob(batch.actions))
    return float((ratio * batch.advantages).mean() - batch.advantages.mean())


def theta(policy) -> torch.Tensor:
    return flat_params(policy.param_list())


def full_step(policy, batch, s: TrustRegionSettings) -> torch.Tensor:
    """The step NPG takes from the same point: TRPO's first trial."""
    p = copy.deepcopy(policy)
    npg.update(p, batch, s)
    return theta(p) - theta(policy)


def single_state_overshoot():
    """One state, three samples z = (a − μ)/σ ∈ {1, 0, √2}, all with advantage 1.

    Σ A·z > 0 pushes the mean up; Σ A·(z² − 1) = 0 leaves log σ alone, so the step is a pure
    mean shift Δ with KL = Δ²/2σ². At δ = 4.5 the full step is Δ ≈ 3σ and the surrogate
    mean[exp(−(z−Δ)²/2 + z²/2)] falls to ≈ 0.26 < L(θ_old) = 1: the linear model of the
    surrogate (expected gain g·step > 0) is badly wrong, and only shorter steps improve.
    """
    torch.manual_seed(0)
    policy = GaussianPolicy(2, 1, [4], "tanh", 0.0).double()
    obs = torch.tensor([[0.3, -0.2]], dtype=F64).repeat(3, 1)
    with torch.no_grad():
        mu = policy(obs).main
    act = mu + torch.tensor([[1.0], [0.0], [math.sqrt(2.0)]], dtype=F64)
    return policy, PolicyBatch(obs, act, torch.ones(3, dtype=F64))


def trial_reasons(policy, batch, s: TrustRegionSettings, kl=true_kl):
    """(KL/δ, surrogate gain) at each line-search fraction coef**j, j = 0..max_backtracks;
    ``kl=true_kl_max`` for the largest per-state KL."""
    step = full_step(policy, batch, s)
    out = []
    for j in range(s.max_backtracks + 1):
        p = copy.deepcopy(policy)
        set_flat_params(p.param_list(), theta(policy) + s.backtrack_coef**j * step)
        out.append((kl(policy, p, batch.obs) / s.max_kl, surrogate_gain(policy, p, batch)))
    return out


# ------------------------------------------------------------------------------- TRPO
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["gaussian", "categorical"]), seed=st.integers(0, 10_000),
       log_delta=st.floats(-4.0, 1.5), coef=st.sampled_from([0.5, 0.8]),
       max_backtracks=st.integers(0, 10), mode=st.sampled_from(["analytic", "autograd", "empirical"]))
def test_every_accepted_trpo_step_is_inside_the_trust_region(kind, seed, log_delta, coef, max_backtracks, mode):
    delta = 10.0**log_delta
    policy, batch = problem(kind, seed)
    before = copy.deepcopy(policy)
    theta_old = theta(policy).clone()
    s = TrustRegionSettings(max_kl=delta, backtrack_coef=coef, max_backtracks=max_backtracks, fvp=mode)
    step = full_step(policy, batch, s)
    stats = trpo.update(policy, batch, s)

    if stats.accepted:
        kl = true_kl(before, policy, batch.obs)
        assert stats.kl <= delta
        assert kl <= delta * (1 + 1e-9)
        assert stats.kl == pytest.approx(kl, rel=1e-9, abs=1e-15)
        assert stats.surrogate_actual > 0.0
        assert stats.surrogate_actual == pytest.approx(surrogate_gain(before, policy, batch), rel=1e-9, abs=1e-15)
        assert 0 <= stats.backtracks <= max_backtracks
        assert stats.step_fraction == coef**stats.backtracks
        # The accepted point is θ_old + coef^j · (NPG's full step).
        taken = theta(policy) - theta_old
        assert float((taken - stats.step_fraction * step).norm()) <= 1e-9 * float(step.norm())
        assert stats.step_norm == pytest.approx(float(taken.norm()), rel=1e-9)
    else:
        assert torch.equal(theta(policy), theta_old)  # reverted bit for bit
        assert stats.kl == 0.0 and stats.step_fraction == 0.0 and stats.surrogate_actual == 0.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["gaussian", "categorical"]), seed=st.integers(0, 10_000),
       log_delta=st.floats(-4.0, 1.5), coef=st.sampled_from([0.5, 0.8]),
       max_backtracks=st.integers(0, 10), mode=st.sampled_from(["analytic", "empirical"]))
def test_every_accepted_max_kl_step_keeps_every_state_inside_the_trust_region(kind, seed, log_delta, coef,
                                                                               max_backtracks, mode):
    """kl_bound="max": the accepted step is the first trial whose largest per-state KL is ≤ δ
    (Theorem 1's D_KL^max over the batch) and whose surrogate improves; none passing, a revert."""
    delta = 10.0**log_delta
    policy, batch = problem(kind, seed)
    before = copy.deepcopy(policy)
    theta_old = theta(policy).clone()
    s = TrustRegionSettings(max_kl=delta, backtrack_coef=coef, max_backtracks=max_backtracks, fvp=mode,
                            kl_bound="max")
    step = full_step(policy, batch, s)
    reasons = trial_reasons(policy, batch, s, kl=true_kl_max)
    stats = trpo.update(policy, batch, s)

    if stats.accepted:
        kl_max = true_kl_max(before, policy, batch.obs)
        assert stats.kl_max <= delta
        assert kl_max <= delta * (1 + 1e-9)
        assert stats.kl_max == pytest.approx(kl_max, rel=1e-9, abs=1e-15)
        assert stats.surrogate_actual > 0.0
        j = int(stats.backtracks)
        assert stats.step_fraction == coef**j
        taken = theta(policy) - theta_old
        assert float((taken - stats.step_fraction * step).norm()) <= 1e-9 * float(step.norm())
        # The first passing trial, up to rounding at the boundary (1e-9 of δ).
        assert not any(kl_ratio < 1.0 - 1e-9 and gain > 1e-12 for kl_ratio, gain in reasons[:j])
    else:
        assert torch.equal(theta(policy), theta_old)  # reverted bit for bit
        assert stats.kl_max == 0.0 and stats.step_fraction == 0.0
        assert not any(kl_ratio < 1.0 - 1e-9 and gain > 1e-12 for kl_ratio, gain in reasons)


def test_max_kl_bound_backtracks_where_the_mean_bound_accepts():
    """The full step at δ = 0.01 keeps the mean KL inside (0.93 δ) but one state at 4.5 δ: the
    max bound rejects the first four trials for that alone (KL ∝ fraction², 0.8⁴ brings 4.5 δ
    to 0.74 δ) and takes the fifth."""
    policy, batch = problem("gaussian", seed=0)
    s_mean = TrustRegionSettings(max_kl=0.01)
    s_max = dataclasses.replace(s_mean, kl_bound="max")
    mean_reasons = trial_reasons(policy, batch, s_mean)
    max_reasons = trial_reasons(policy, batch, s_max, kl=true_kl_max)
    p_mean, p_max = copy.deepcopy(policy), copy.deepcopy(policy)
    st_mean = trpo.update(p_mean, batch, s_mean)
    st_max = trpo.update(p_max, batch, s_max)

    assert st_mean.accepted == 1.0 and st_mean.backtracks == 0.0
    assert st_max.accepted == 1.0 and st_max.backtracks == 4.0 and st_max.step_fraction == 0.8**4
    for j in range(4):  # inside the mean bound and improving: rejected for the max KL alone
        assert mean_reasons[j][0] <= 1.0 and mean_reasons[j][1] > 0.0 and max_reasons[j][0] > 1.0
    assert max_reasons[4][0] <= 1.0 and max_reasons[4][1] > 0.0
    assert st_mean.kl_max > 0.01  # the mean bound's accepted step leaves a state outside
    assert st_max.kl_max == pytest.approx(true_kl_max(policy, p_max, batch.obs), rel=1e-9) and st_max.kl_max <= 0.01
    assert st_max.kl == pytest.approx(0.8**8 * st_mean.kl, rel=0.05)  # the KL is near-quadratic in the fraction


def test_npg_ignores_the_kl_bound():
    """NPG has no line search, so kl_bound changes nothing: bit for bit the same step, whose
    largest per-state KL is above δ."""
    policy, batch = problem("gaussian", seed=0)
    p_max = copy.deepcopy(policy)
    st_mean = npg.update(policy, batch, TrustRegionSettings(max_kl=0.01))
    st_max = npg.update(p_max, batch, TrustRegionSettings(max_kl=0.01, kl_bound="max"))
    assert torch.equal(theta(policy), theta(p_max))
    assert st_mean.kl_max == st_max.kl_max and st_max.kl_max > 0.04


def test_unknown_kl_bound_is_refused():
    policy, batch = problem("categorical", seed=0)
    theta_old = theta(policy).clone()
    with pytest.raises(ValueError, match="'mean' or 'max'"):
        trpo.update(policy, batch, TrustRegionSettings(kl_bound="median"))
    assert torch.equal(theta(policy), theta_old)


def test_backtracking_shrinks_a_step_that_breaks_the_kl_bound():
    # δ = 1 on a random Gaussian problem: the quadratic model underestimates the KL of the
    # full step (log σ moves, and KL is not quadratic in log σ), so the search backtracks.
    policy, batch = problem("gaussian", seed=0, batch=256, hidden=(16,))
    s = TrustRegionSettings(max_kl=1.0, backtrack_coef=0.8, max_backtracks=10)
    reasons = trial_reasons(policy, batch, s)
    before = copy.deepcopy(policy)
    stats = trpo.update(policy, batch, s)

    assert stats.accepted == 1.0
    j = int(stats.backtracks)
    assert j == 2
    assert stats.step_fraction == 0.8**2
    for kl_ratio, gain in reasons[:j]:
        assert kl_ratio > 1.0 and gain > 0.0  # rejected for the KL alone
    assert reasons[j][0] <= 1.0 and reasons[j][1] > 0.0
    assert true_kl(before, policy, batch.obs) <= 1.0
    assert stats.kl == pytest.approx(reasons[j][0] * 1.0, rel=1e-9)

    # With one backtrack allowed, both trials break the bound: reverted bit for bit.
    policy, batch = problem("gaussian", seed=0, batch=256, hidden=(16,))
    theta_old = theta(policy).clone()
    stats = trpo.update(policy, batch, TrustRegionSettings(max_kl=1.0, backtrack_coef=0.8, max_backtracks=1))
    assert stats.accepted == 0.0 and stats.backtracks == 1.0 and stats.step_fraction == 0.0
    assert torch.equal(theta(policy), theta_old)


def test_backtracking_shrinks_a_step_that_does_not_improve_the_surrogate():
    policy, batch = single_state_overshoot()
    s = TrustRegionSettings(max_kl=4.5, backtrack_coef=0.8, max_backtracks=10, cg_iters=20, cg_damping=1e-6)
    reasons = trial_reasons(policy, batch, s)
    before = copy.deepcopy(policy)
    stats = trpo.update(policy, batch, s)

    assert stats.accepted == 1.0 and stats.backtracks == 2.0 and stats.step_fraction == 0.8**2
    # Trial 1 (fraction 0.8) is inside the trust region and still rejected: the surrogate fell.
    assert reasons[1][0] <= 1.0 and reasons[1][1] < 0.0
    assert reasons[0][1] < 0.0
    assert reasons[2][0] <= 1.0 and reasons[2][1] > 0.0
    assert stats.surrogate_expected > 0.0  # the linear model promised a gain at every trial
    assert stats.surrogate_actual == pytest.approx(reasons[2][1], rel=1e-9)
    assert true_kl(before, policy, batch.obs) == pytest.approx(0.8**4 * 4.5, rel=1e-3)  # KL = Δ²/2 ∝ fraction²
    # log σ did not move: the step is the pure mean shift the construction promises.
    assert torch.equal(policy.log_std.detach(), before.log_std.detach())


def test_no_improving_step_reverts_bitwise():
    policy, batch = single_state_overshoot()
    theta_old = theta(policy).clone()
    s = TrustRegionSettings(max_kl=4.5, backtrack_coef=0.9, max_backtracks=1, cg_iters=20, cg_damping=1e-6)
    reasons = trial_reasons(policy, batch, s)
    assert all(gain < 0.0 for _, gain in reasons)  # every trial loses surrogate
    assert reasons[1][0] <= 1.0  # ... even the one inside the trust region
    stats = trpo.update(policy, batch, s)
    assert stats.accepted == 0.0 and stats.step_fraction == 0.0 and stats.backtracks == 1.0
    assert torch.equal(theta(policy), theta_old)
    assert stats.kl == 0.0 and stats.surrogate_actual == 0.0 and stats.step_norm == 0.0


def test_zero_gradient_is_rejected_without_a_step():
    # All advantages 0: L(θ) ≡ 0, g = 0, CG returns s = 0 with no iteration, sᵀFs = 0.
    policy, batch = problem("categorical", seed=1)
    batch = PolicyBatch(batch.obs, batch.actions, torch.zeros_like(batch.advantages))
    theta_old = theta(policy).clone()
    stats = trpo.update(policy, batch, TrustRegionSettings())
    assert stats.grad_norm == 0.0 and stats.cg_iters == 0.0 and stats.sHs == 0.0
    assert stats.accepted == 0.0 and stats.step_fraction == 0.0 and stats.step_size is None
    assert torch.equal(theta(policy), theta_old)


@pytest.mark.parametrize("algo", [trpo, npg])
def test_non_finite_advantages_leave_the_policy_untouched(algo):
    policy, batch = problem("gaussian", seed=2)
    adv = batch.advantages.clone()
    adv[5] = float("nan")
    theta_old = theta(policy).clone()
    stats = algo.update(policy, PolicyBatch(batch.obs, batch.actions, adv), TrustRegionSettings())
    assert math.isnan(stats.sHs)
    # NPG has no line search: its fraction and backtracks do not apply (None, NaN in the CSV).
    assert stats.accepted == 0.0 and stats.step_fraction == (0.0 if algo is trpo else None)
    assert torch.equal(theta(policy), theta_old)


def test_trpo_step_uses_the_fvp_subsample():
    policy, batch = problem("gaussian", seed=3, batch=200)
    s = TrustRegionSettings(max_kl=0.01, fvp_fraction=0.25)
    with torch.no_grad():
        old = policy(batch.obs).detach()
    # Recompute the direction by hand on the evenly spaced quarter of the batch.
    logp_old = policy.log_prob(old, batch.actions)
    g = flat_grad((torch.exp(policy.log_prob(policy(batch.obs), batch.actions) - logp_old)
                   * batch.advantages).mean(), policy.param_list())
    idx = subsample_indices(200, 0.25)
    fvp_sub = make_fvp(policy, batch.obs[idx], old.index(idx), s.cg_damping)
    x = conjugate_gradient(fvp_sub, g, s.cg_iters, s.cg_tol).x
    sHs_sub = float(x @ fvp_sub(x))
    fvp_full = make_fvp(policy, batch.obs, old, s.cg_damping)
    x_full = conjugate_gradient(fvp_full, g, s.cg_iters, s.cg_tol).x
    sHs_full = float(x_full @ fvp_full(x_full))

    stats = trpo.update(policy, batch, s)
    assert stats.sHs == pytest.approx(sHs_sub, rel=1e-10)
    assert abs(stats.sHs - sHs_full) > 1e-3 * sHs_full
    assert stats.step_size == pytest.approx(math.sqrt(2 * 0.01 / sHs_sub), rel=1e-10)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_empirical_fisher_step_on_a_subsample_equals_the_explicit_solve(kind):
    """fvp="empirical", fvp_fraction=0.25: the step is √(2δ / xᵀF̂x) x with (F̂ + λI) x = g, F̂ the
    mean of g_i g_iᵀ over the evenly spaced quarter of the batch, at those states' own actions."""
    policy, batch = problem(kind, seed=3, batch=200, hidden=(4,))
    n = theta(policy).numel()
    damping, delta = 1e-2, 0.01
    idx = subsample_indices(200, 0.25)
    params = policy.param_list()
    scores = torch.stack([flat_grad(dist_with_grad(policy, batch.obs[i: i + 1]).log_prob(batch.actions[i: i + 1]).sum(),
                                    params) for i in idx.tolist()])
    f = scores.T @ scores / idx.numel() + damping * torch.eye(n, dtype=F64)
    with torch.no_grad():
        logp_old = dist(policy, batch.obs).log_prob(batch.actions)
    ratio = torch.exp(dist_with_grad(policy, batch.obs).log_prob(batch.actions) - logp_old)
    g = flat_grad((ratio * batch.advantages).mean(), params)
    x = torch.linalg.solve(f, g)
    expected = math.sqrt(2 * delta / float(x @ f @ x)) * x
    theta_old = theta(policy).clone()
    stats = npg.update(policy, batch, TrustRegionSettings(max_kl=delta, cg_iters=5 * n, cg_damping=damping,
                                                          cg_tol=1e-24, fvp="empirical", fvp_fraction=0.25))
    assert float((theta(policy) - theta_old - expected).norm()) <= 1e-6 * float(expected.norm())
    assert stats.sHs == pytest.approx(float(x @ f @ x), rel=1e-6)  # sᵀ(F̂ + λI)s
    # ... and not the exact Fisher's direction.
    p_exact, _ = problem(kind, seed=3, batch=200, hidden=(4,))
    npg.update(p_exact, batch, TrustRegionSettings(max_kl=delta, cg_iters=5 * n, cg_damping=damping, cg_tol=1e-24,
                                                   fvp_fraction=0.25))
    assert float((theta(p_exact) - theta_old - expected).norm()) > 0.05 * float(expected.norm())


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_analytic_and_autograd_fvp_give_the_same_trpo_step(kind):
    steps = []
    for mode in ("analytic", "autograd"):
        policy, batch = problem(kind, seed=4)
        theta_old = theta(policy).clone()
        stats = trpo.update(policy, batch, TrustRegionSettings(fvp=mode))
        assert stats.accepted == 1.0
        steps.append(theta(policy) - theta_old)
    assert float((steps[0] - steps[1]).norm()) <= 1e-9 * float(steps[1].norm())


# -------------------------------------------------------------------------------- NPG
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_npg_step_kl_matches_delta_for_small_delta(kind, seed):
    """With tiny damping and CG run to the parameter count, ½ stepᵀF step = δ, so the true KL
    is δ up to the KL's cubic term, O(√δ) relative: < 5% at δ = 1e-6 here, < 1% at 1e-8."""
    errors = []
    for delta in (1e-6, 1e-8):
        policy, batch = problem(kind, seed, batch=512, hidden=(4,))
        before = copy.deepcopy(policy)
        n = theta(policy).numel()
        stats = npg.update(policy, batch, TrustRegionSettings(max_kl=delta, cg_iters=n, cg_damping=1e-8))
        kl = true_kl(before, policy, batch.obs)
        assert stats.kl == pytest.approx(kl, rel=1e-6)
        errors.append(abs(kl / delta - 1.0))
    assert errors[0] < 0.05
    assert errors[1] < 0.01
    assert errors[1] < errors[0]  # the gap is higher order: it shrinks with δ


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_npg_step_length_solves_the_quadratic_model(kind):
    """β = √(2δ / sᵀ(F+λI)s): the taken step has ½ stepᵀ(F+λI)step = δ exactly, with the default
    damping and 10 CG iterations; and its direction is the CG solution of (F+λI)s = g."""
    policy, batch = problem(kind, seed=6)
    s = TrustRegionSettings(max_kl=0.01)
    frozen = copy.deepcopy(policy)  # F at θ_old, on a copy the update does not touch
    with torch.no_grad():
        old = frozen(batch.obs).detach()
    fvp = make_fvp(frozen, batch.obs, old, s.cg_damping)
    theta_old = theta(policy).clone()
    stats = npg.update(policy, batch, s)
    step = theta(policy) - theta_old
    assert 0.5 * float(step @ fvp(step)) == pytest.approx(0.01, rel=1e-9)
    assert stats.step_fraction is None and stats.backtracks is None and stats.accepted == 1.0
    assert stats.step_norm == pytest.approx(float(step.norm()), rel=1e-9)
    assert stats.surrogate_expected == pytest.approx(stats.step_size * stats.natural_grad_norm**2, rel=1e-9)


def test_npg_direction_equals_explicit_natural_gradient():
    """With CG run to convergence, NPG's step ∝ (F + λI)⁻¹ g from an explicit solve."""
    policy, batch = problem("gaussian", seed=7, batch=256, hidden=(4,))
    with torch.no_grad():
        old = policy(batch.obs).detach()
    n = theta(policy).numel()
    damping = 1e-2
    fvp = make_fvp(policy, batch.obs, old, damping)
    f = torch.stack([fvp(e) for e in torch.eye(n, dtype=F64)], dim=1)
    logp_old = policy.log_prob(old, batch.actions)
    g = flat_grad((torch.exp(policy.log_prob(policy(batch.obs), batch.actions) - logp_old)
                   * batch.advantages).mean(), policy.param_list())
    x = torch.linalg.solve(f, g)
    expected = math.sqrt(2 * 0.01 / float(x @ f @ x)) * x
    theta_old = theta(policy).clone()
    npg.update(policy, batch, TrustRegionSettings(max_kl=0.01, cg_iters=5 * n, cg_damping=damping, cg_tol=1e-24))
    assert float((theta(policy) - theta_old - expected).norm()) <= 1e-6 * float(expected.norm())


def test_npg_takes_the_full_step_without_a_line_search():
    # The overshoot case: TRPO backtracks twice; NPG takes the full step although it loses
    # surrogate and (slightly) exceeds δ.
    policy, batch = single_state_overshoot()
    before = copy.deepcopy(policy)
    stats = npg.update(policy, batch, TrustRegionSettings(max_kl=4.5, cg_iters=20, cg_damping=1e-6))
    assert stats.accepted == 1.0 and stats.step_fraction is None and stats.backtracks is None
    assert stats.surrogate_actual < 0.0
    assert true_kl(before, policy, batch.obs) == pytest.approx(4.5, rel=1e-3)
    # On a random problem with a large δ where TRPO must backtrack, NPG still takes fraction 1.
    policy, batch = problem("gaussian", seed=0, batch=256, hidden=(16,))
    stats = npg.update(policy, batch, TrustRegionSettings(max_kl=1.0))
    assert stats.step_fraction is None and stats.backtracks is None and stats.kl > 1.0


def test_trpo_without_backtracking_is_npg_bit_for_bit():
    policy, batch = problem("categorical", seed=8)
    p_npg = copy.deepcopy(policy)
    st_trpo = trpo.update(policy, batch, TrustRegionSettings(max_kl=0.01))
    st_npg = npg.update(p_npg, batch, TrustRegionSettings(max_kl=0.01))
    assert st_trpo.backtracks == 0.0 and st_trpo.accepted == 1.0
    assert torch.equal(theta(policy), theta(p_npg))
    assert st_trpo.kl == st_npg.kl and st_trpo.sHs == st_npg.sHs


# ---------------------------------------------------------------------------- vanilla PG
def test_pg_one_sgd_epoch_is_a_gradient_step():
    policy, batch = problem("gaussian", seed=9)
    before = copy.deepcopy(policy)
    theta_old = theta(policy).clone()
    with torch.no_grad():
        old = policy(batch.obs).detach()
    g = flat_grad((torch.exp(policy.log_prob(policy(batch.obs), batch.actions) - policy.log_prob(old, batch.actions))
                   * batch.advantages).mean(), policy.param_list())
    lr = 1e-2
    stats = pg.update(policy, torch.optim.SGD(policy.param_list(), lr=lr), batch, PGSettings(lr=lr, epochs=1))
    step = theta(policy) - theta_old
    assert float((step - lr * g).norm()) <= 1e-12 * float(g.norm())  # ascent on L
    assert stats.grad_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert stats.surrogate_expected == pytest.approx(lr * float(g @ g), rel=1e-10)
    assert stats.kl == pytest.approx(true_kl(before, policy, batch.obs), rel=1e-9)
    assert stats.surrogate_actual == pytest.approx(surrogate_gain(before, policy, batch), rel=1e-9)
    assert stats.surrogate_actual > 0.0


def test_pg_first_adam_step_has_size_lr_per_coordinate():
    policy, batch = problem("categorical", seed=10)
    theta_old = theta(policy).clone()
    lr = 3e-3
    pg.update(policy, torch.optim.Adam(policy.param_list(), lr=lr), batch, PGSettings(lr=lr, epochs=1))
    step = (theta(policy) - theta_old).abs()
    # Adam's first update is lr · g / (|g| + ε): lr wherever |g| ≫ ε = 1e-8.
    big = step > 0.5 * lr
    assert float(big.double().mean()) > 0.9
    assert torch.allclose(step[big], torch.full_like(step[big], lr), rtol=1e-4, atol=0)
