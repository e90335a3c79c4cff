"""Conjugate gradient and Fisher-vector products against explicit linear algebra.

The FVP checks build the Hessian of the mean KL(π_old ‖ π_θ) at θ_old explicitly, with
``torch.autograd.functional.hessian`` over the flat parameter vector, and compare
``make_fvp(...)(v)`` with ``(H + λI) v`` in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal
from torch.func import functional_call

from trpo_bench.linalg import (
    conjugate_gradient,
    flat_grad,
    flat_params,
    make_fvp,
    mean_kl,
    set_flat_params,
    subsample_indices,
)
from trpo_bench.policies import CategoricalPolicy, GaussianPolicy

F64 = torch.float64


# ----------------------------------------------------------------------------- helpers
def spd_matrix(n: int, cond: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric positive-definite (n, n) matrix with eigenvalues log-spaced in [1, cond]."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    eig = torch.logspace(0.0, math.log10(cond), n, dtype=F64)
    a = q @ torch.diag(eig) @ q.T
    return (a + a.T) / 2, eig


def small_policy(kind: str, activation: str, seed: int, obs_dim: int = 3, n_out: int = 2,
                 hidden=(5, 4), batch: int = 12):
    """A float64 policy whose output is far from the tiny-init regime, and a batch of observations."""
    torch.manual_seed(seed)
    if kind == "gaussian":
        policy = GaussianPolicy(obs_dim, n_out, list(hidden), activation, init_log_std=-0.3)
    else:
        policy = CategoricalPolicy(obs_dim, n_out + 1, list(hidden), activation)
    policy = policy.double()
    # Spread the parameters so the last layer (initialised at gain 0.01) and log-std matter.
    params = policy.param_list()
    theta = flat_params(params)
    set_flat_params(params, theta + 0.5 * torch.randn(theta.shape, dtype=F64))
    obs = torch.randn(batch, obs_dim, dtype=F64)
    return policy, obs


def kl_hessian(policy, obs: torch.Tensor) -> torch.Tensor:
    """Explicit Hessian of θ ↦ mean KL(π_θold ‖ π_θ) over ``obs`` at θ_old, (P, P).

    Parameters are set from the flat vector (ordered like ``param_list()``) with
    ``torch.func.functional_call``, so the Hessian is taken by plain autograd.
    """
    params = policy.param_list()
    name_of = {id(p): n for n, p in policy.named_parameters()}
    names = [name_of[id(p)] for p in params]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    theta_old = flat_params(params)
    with torch.no_grad():
        old = policy(obs).detach()

    def f(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, sizes)
        values = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return policy.kl(old, functional_call(policy, values, (obs,))).mean()

    return torch.autograd.functional.hessian(f, theta_old, vectorize=True)


def fisher_matrix(fvp, n: int) -> torch.Tensor:
    """The explicit matrix of ``fvp``, built column by column: column i = fvp(e_i)."""
    eye = torch.eye(n, dtype=F64)
    return torch.stack([fvp(eye[i]) for i in range(n)], dim=1)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


POLICIES = [("gaussian", "tanh"), ("gaussian", "relu"), ("categorical", "tanh"), ("categorical", "relu")]


# ------------------------------------------------------------------ conjugate gradient
@pytest.mark.parametrize("n", [5, 30, 100])
@pytest.mark.parametrize("cond", [1.0, 1e2, 1e4, 1e6])
def test_cg_solves_spd_system_to_tolerance(n, cond):
    gen = torch.Generator().manual_seed(n * 7 + int(math.log10(cond)))
    a, eig = spd_matrix(n, cond, gen)
    b = torch.randn(n, generator=gen, dtype=F64)
    tol = 1e-16  # on ‖r‖²: ‖r‖ < 1e-8, above float64's attainable accuracy at cond 1e6
    calls = []

    def avp(v):
        calls.append(1)
        return a @ v

    res = conjugate_gradient(avp, b, iters=20 * n, tol=tol)
    x_star = torch.linalg.solve(a, b)
    true_res = float((b - a @ res.x).norm())

    assert res.iters < 20 * n  # stopped on the tolerance, not the cap
    assert len(calls) == res.iters  # one product per iteration
    assert res.residual < math.sqrt(tol)
    assert true_res <= 1.05 * math.sqrt(tol)
    # The reported residual is ‖b − A x‖, up to the recursion's rounding drift (< 1% of it
    # here, or 1e-3 of the tolerance when the system is solved to machine precision).
    assert abs(res.residual - true_res) <= 0.05 * true_res + 1e-3 * math.sqrt(tol)
    # ‖x − x*‖ = ‖A⁻¹ r‖ ≤ ‖r‖ / λ_min, plus x*'s own rounding (≈ ε·cond·‖x*‖).
    err = float((res.x - x_star).norm())
    assert err <= 1.05 * true_res / float(eig[0]) + 1e-13 * cond * float(x_star.norm())
    # The iteration count is the first one that reached the tolerance.
    if res.iters > 1:
        before = conjugate_gradient(lambda v: a @ v, b, iters=res.iters - 1, tol=tol)
        assert before.residual >= math.sqrt(tol)


@pytest.mark.parametrize("n,cond", [(30, 1e2), (100, 1e4), (100, 1e6)])
def test_cg_capped_reports_true_residual_and_iters(n, cond):
    gen = torch.Generator().manual_seed(3)
    a, _ = spd_matrix(n, cond, gen)
    b = torch.randn(n, generator=gen, dtype=F64)
    res = conjugate_gradient(lambda v: a @ v, b, iters=n // 3, tol=1e-30)
    true_res = float((b - a @ res.x).norm())
    assert res.iters == n // 3
    assert true_res > 1e-6  # genuinely unconverged
    assert res.residual == pytest.approx(true_res, rel=1e-9)


def test_cg_converges_in_as_many_iterations_as_distinct_eigenvalues():
    # Exact arithmetic: CG terminates in k steps for k distinct eigenvalues (Nocedal & Wright, Thm 5.4).
    gen = torch.Generator().manual_seed(11)
    n = 60
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    eig = torch.tensor([1.0, 3.0, 10.0], dtype=F64).repeat(n // 3)
    a = q @ torch.diag(eig) @ q.T
    b = torch.randn(n, generator=gen, dtype=F64)
    res = conjugate_gradient(lambda v: a @ v, b, iters=50, tol=1e-20)
    assert res.iters == 3
    assert torch.allclose(res.x, torch.linalg.solve(a, b), rtol=0, atol=1e-10)


def test_cg_identity_one_iteration_and_zero_rhs():
    b = torch.arange(1.0, 6.0, dtype=F64)
    res = conjugate_gradient(lambda v: v, b, iters=10)
    assert res.iters == 1
    assert torch.equal(res.x, b)
    assert res.residual == 0.0
    zero = conjugate_gradient(lambda v: 2 * v, torch.zeros(4, dtype=F64), iters=10)
    assert zero.iters == 0 and zero.residual == 0.0 and torch.equal(zero.x, torch.zeros(4, dtype=F64))


# --------------------------------------------------------------- Fisher-vector products
@pytest.mark.parametrize("kind,activation", POLICIES)
@pytest.mark.parametrize("mode", ["autograd", "analytic"])
@pytest.mark.parametrize("damping", [0.0, 0.37])
def test_fvp_equals_explicit_kl_hessian(kind, activation, mode, damping):
    policy, obs = small_policy(kind, activation, seed=5)
    h = kl_hessian(policy, obs)
    n = h.shape[0]
    with torch.no_grad():
        old = policy(obs).detach()
    fvp = make_fvp(policy, obs, old, damping, mode)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(n, generator=gen, dtype=F64)
        expected = h @ v + damping * v
        assert rel_err(fvp(v), expected) < 1e-6
    # relu: the Hessian is still J^T M J (the KL's output gradient vanishes at θ_old), not zero.
    assert float(h.abs().max()) > 1e-3


@pytest.mark.parametrize("kind,activation", [("gaussian", "tanh"), ("categorical", "relu")])
@pytest.mark.parametrize("mode", ["autograd", "analytic"])
def test_fvp_on_subsample_equals_hessian_over_subsample(kind, activation, mode):
    policy, obs = small_policy(kind, activation, seed=8, batch=20)
    idx = subsample_indices(obs.shape[0], 0.3)
    assert idx is not None and idx.numel() == 6
    with torch.no_grad():
        old = policy(obs).detach()
    fvp = make_fvp(policy, obs[idx], old.index(idx), 0.1, mode)
    h_sub = kl_hessian(policy, obs[idx])
    h_full = kl_hessian(policy, obs)
    v = torch.randn(h_sub.shape[0], generator=torch.Generator().manual_seed(2), dtype=F64)
    assert rel_err(fvp(v), h_sub @ v + 0.1 * v) < 1e-6
    # ... and it is a different matrix from the full batch's, so the subsample is really used.
    assert rel_err(h_full @ v + 0.1 * v, h_sub @ v + 0.1 * v) > 1e-2


@pytest.mark.parametrize("n,fraction,expected", [(20, 0.3, 6), (2048, 0.1, 205), (7, 0.01, 1), (10, 0.5, 5),
                                                   (100, 0.07, 7), (1000, 0.29, 290)])
def test_subsample_indices_evenly_spaced(n, fraction, expected):
    idx = subsample_indices(n, fraction)
    # ceil(fraction · n), without floating-point excess: 0.07 · 100 = 7.000000000000001 → 7, not 8.
    assert idx.numel() == expected
    assert int(idx[0]) == 0 and int(idx[-1]) < n
    assert bool((idx[1:] > idx[:-1]).all())  # distinct, sorted
    gaps = idx[1:] - idx[:-1]
    assert gaps.numel() == 0 or int(gaps.max() - gaps.min()) <= 1  # evenly spaced
    assert subsample_indices(n, 1.0) is None


@pytest.mark.parametrize("kind,activation", POLICIES)
def test_kl_and_its_gradient_vanish_at_theta_old(kind, activation):
    policy, obs = small_policy(kind, activation, seed=9)
    params = policy.param_list()
    with torch.no_grad():
        old = policy(obs).detach()
    kl = mean_kl(policy, obs, old)
    grad = flat_grad(kl, params)
    assert abs(kl.item()) <= 1e-15
    assert float(grad.abs().max()) <= 1e-14
    # Away from θ_old both are non-zero: the test above is not vacuous.
    set_flat_params(params, flat_params(params) + 0.05)
    kl_away = mean_kl(policy, obs, old)
    assert kl_away.item() > 1e-6
    assert float(flat_grad(kl_away, params).norm()) > 1e-4


@pytest.mark.parametrize("kind,activation", POLICIES)
@pytest.mark.parametrize("mode", ["autograd", "analytic"])
def test_fisher_is_symmetric_psd(kind, activation, mode):
    policy, obs = small_policy(kind, activation, seed=4)
    with torch.no_grad():
        old = policy(obs).detach()
    n = flat_params(policy.param_list()).numel()
    f = fisher_matrix(make_fvp(policy, obs, old, 0.0, mode), n)
    assert float((f - f.T).abs().max()) <= 1e-10
    eig = torch.linalg.eigvalsh((f + f.T) / 2)
    assert float(eig.min()) >= -1e-10
    assert float(eig.max()) > 1e-3  # and not the zero matrix


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_fvp_modes_agree_on_real_batch_float32(kind):
    """Default sizes (64, 64) in float32 on observations from a real environment rollout."""
    import gymnasium as gym

    env_id = "Hopper-v5" if kind == "gaussian" else "CartPole-v1"
    env = gym.make(env_id)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(2048):
        rows.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    obs = torch.as_tensor(np.stack(rows), dtype=torch.float32)
    obs = (obs - obs.mean(0)) / (obs.std(0) + 1e-8)
    torch.manual_seed(0)
    if kind == "gaussian":
        policy = GaussianPolicy(obs.shape[1], 3, [64, 64], "tanh", -0.5)
    else:
        policy = CategoricalPolicy(obs.shape[1], 2, [64, 64], "tanh")
    params = policy.param_list()
    # A few TRPO-sized random steps away from the 0.01-gain init, as after some training.
    set_flat_params(params, flat_params(params) + 0.05 * torch.randn(flat_params(params).shape))
    with torch.no_grad():
        old = policy(obs).detach()
    fa = make_fvp(policy, obs, old, 0.1, "analytic")
    fb = make_fvp(policy, obs, old, 0.1, "autograd")
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(flat_params(params).numel(), generator=gen)
        assert rel_err(fa(v), fb(v)) < 1e-4
    # ... and CG on either gives the same search direction.
    g = torch.randn(flat_params(params).numel(), generator=gen)
    sa = conjugate_gradient(fa, g, 10).x
    sb = conjugate_gradient(fb, g, 10).x
    assert rel_err(sa, sb) < 1e-3


def test_make_fvp_rejects_unknown_mode():
    policy, obs = small_policy("gaussian", "tanh", seed=0)
    with pytest.raises(ValueError, match="'analytic', 'autograd' or 'empirical'"):
        make_fvp(policy, obs, policy(obs).detach(), 0.1, "exact")
    with pytest.raises(ValueError, match="needs the sampled actions"):
        make_fvp(policy, obs, policy(obs).detach(), 0.1, "empirical")


# ------------------------------------------------------------------- the empirical Fisher
def torch_dist(policy, obs):
    """π(·|s) as a torch.distributions object, from the policy's own parameters."""
    p = policy(obs)
    if policy.discrete:
        return Categorical(logits=p.main)
    return Independent(Normal(p.main, p.log_std.exp().expand_as(p.main)), 1)


def sample_actions(policy, obs, gen: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        p = policy(obs)
        if policy.discrete:
            return torch.multinomial(torch.softmax(p.main, -1), 1, generator=gen).squeeze(-1).to(F64)
        return p.main + p.log_std.exp() * torch.randn(p.main.shape, generator=gen, dtype=F64)


def score_matrix(policy, obs, actions) -> torch.Tensor:
    """Per-sample gradients g_i = ∇θ log π(a_i|s_i), one backward pass per sample, (B, P),
    with log π from torch.distributions (not the policy's own log_prob or score)."""
    params = policy.param_list()
    rows = [flat_grad(torch_dist(policy, obs[i: i + 1]).log_prob(actions[i: i + 1]).sum(), params)
            for i in range(obs.shape[0])]
    return torch.stack(rows)


@pytest.mark.parametrize("kind,activation", POLICIES)
@pytest.mark.parametrize("damping", [0.0, 0.37])
def test_empirical_fvp_equals_explicit_outer_product(kind, activation, damping):
    policy, obs = small_policy(kind, activation, seed=5)
    actions = sample_actions(policy, obs, torch.Generator().manual_seed(3))
    g = score_matrix(policy, obs, actions)
    n = g.shape[1]
    f_hat = g.T @ g / obs.shape[0]  # (1/B) Σ g_i g_iᵀ
    with torch.no_grad():
        old = policy(obs).detach()
    fvp = make_fvp(policy, obs, old, damping, "empirical", actions=actions)
    # Every column: the whole matrix the products stand for, damping included.
    assert rel_err(fisher_matrix(fvp, n), f_hat + damping * torch.eye(n, dtype=F64)) < 1e-10
    # A batch of 12 samples: F̂ has rank ≤ 12 < P, unlike the exact Fisher, from which it differs.
    assert int(torch.linalg.matrix_rank(f_hat)) <= obs.shape[0] < n
    assert rel_err(f_hat, kl_hessian(policy, obs)) > 0.1


@pytest.mark.parametrize("kind,activation", [("gaussian", "tanh"), ("categorical", "relu")])
def test_empirical_fvp_on_subsample_uses_the_subsample_actions(kind, activation):
    policy, obs = small_policy(kind, activation, seed=8, batch=20)
    actions = sample_actions(policy, obs, torch.Generator().manual_seed(4))
    idx = subsample_indices(obs.shape[0], 0.3)
    with torch.no_grad():
        old = policy(obs).detach()
    fvp = make_fvp(policy, obs[idx], old.index(idx), 0.1, "empirical", actions=actions[idx])
    g_sub = score_matrix(policy, obs[idx], actions[idx])
    g_full = score_matrix(policy, obs, actions)
    v = torch.randn(g_sub.shape[1], generator=torch.Generator().manual_seed(2), dtype=F64)
    expected = g_sub.T @ (g_sub @ v) / idx.numel() + 0.1 * v
    assert rel_err(fvp(v), expected) < 1e-10
    assert rel_err(g_full.T @ (g_full @ v) / obs.shape[0] + 0.1 * v, expected) > 1e-2


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_empirical_fisher_estimates_the_fisher_only_at_the_policys_own_actions(kind):
    """E_{a∼π}[g gᵀ] = F: with actions drawn from π the empirical matrix converges to the exact
    Fisher at the Monte Carlo rate, 1/√(samples). With actions from another distribution (here
    the mean or the most likely action, as when the data came from an older policy) it converges
    to something else (Kunstner et al. 2019)."""
    policy, states = small_policy(kind, "tanh", seed=6, batch=4)
    f_exact = kl_hessian(policy, states)  # the mean KL's Hessian over the 4 states (checked above to be F)
    n = f_exact.shape[0]
    gen = torch.Generator().manual_seed(0)
    errors = []
    for repeats in (100, 10_000):
        obs = states.repeat(repeats, 1)
        actions = sample_actions(policy, obs, gen)
        with torch.no_grad():
            old = policy(obs).detach()
        f_hat = fisher_matrix(make_fvp(policy, obs, old, 0.0, "empirical", actions=actions), n)
        errors.append(rel_err(f_hat, f_exact))
    assert errors[1] < 0.04
    assert errors[1] < errors[0] / 3  # 100× the samples: ≈ 10× smaller error (one draw: 4-13× over seeds)
    # At actions π does not sample from in proportion, no sample size closes the gap.
    obs = states.repeat(250, 1)
    with torch.no_grad():
        old = policy(obs).detach()
        modal = old.main.argmax(-1).to(F64) if policy.discrete else old.main + 0.0
    f_modal = fisher_matrix(make_fvp(policy, obs, old, 0.0, "empirical", actions=modal), n)
    assert rel_err(f_modal, f_exact) > 0.3
