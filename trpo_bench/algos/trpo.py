"""TRPO's update, in the order of Schulman et al. 2015, Appendix C.

Natural PG (``trpo_bench.algos.npg``) is this function with ``line_search=False``:
the same direction and step length, taken in full.
"""

from __future__ import annotations

import math

import torch

from trpo_bench.algos.common import PolicyBatch, PolicyStats, after_step, ratio, surrogate
from trpo_bench.config import TrustRegionSettings
from trpo_bench.linalg import conjugate_gradient, flat_grad, flat_params, make_fvp, set_flat_params, subsample_indices
from trpo_bench.policies import DistParams, Policy


def update(policy: Policy, batch: PolicyBatch, settings: TrustRegionSettings) -> PolicyStats:
    """One trust-region step: maximize L(θ) subject to KL(π_old ‖ π_θ) ≤ δ, the KL's mean over
    the batch's states (``kl_bound="mean"``) or its maximum (``"max"``, line search only)."""
    if settings.kl_bound not in ("mean", "max"):
        raise ValueError(f"unknown kl_bound {settings.kl_bound!r}: use 'mean' or 'max'")
    params = policy.param_list()
    theta_old = flat_params(params)
    # One forward pass at θ_old, with its graph, serves π_old (detached), the surrogate's
    # gradient and the analytic Fisher-vector products; every later forward pass is one
    # line-search trial (the same numbers as separate passes, fewer of them).
    dist = policy(batch.obs)
    old = dist.detach()
    with torch.no_grad():
        logp_old = policy.log_prob(old, batch.actions)
        surr_old = float((batch.advantages).mean())  # L(θ_old): every ratio is 1

    # 1. Gradient of the surrogate at θ_old.
    g = flat_grad(surrogate(policy, batch, logp_old, dist), params, retain_graph=True)

    # 2. Search direction s ≈ F⁻¹ g by conjugate gradient with Fisher-vector products,
    #    optionally on a subsample of the states (App. C.1).
    idx = subsample_indices(batch.obs.shape[0], settings.fvp_fraction)
    fvp_obs, fvp_old, fvp_act = ((batch.obs, old, batch.actions) if idx is None
                                 else (batch.obs[idx], old.index(idx), batch.actions[idx]))
    fvp = make_fvp(policy, fvp_obs, fvp_old, settings.cg_damping, settings.fvp,
                   output=dist.main if idx is None else None, actions=fvp_act)
    cg = conjugate_gradient(fvp, g, settings.cg_iters, settings.cg_tol)
    s = cg.x

    # 3. Step length from the quadratic model ½ βs ᵀF βs = δ: β = √(2δ / sᵀFs).
    sHs = float(s @ fvp(s))
    stats = PolicyStats(
        grad_norm=float(g.norm()), cg_residual=cg.residual, cg_iters=float(cg.iters), sHs=sHs,
        natural_grad_norm=math.sqrt(max(float(g @ s), 0.0)),
    )
    if not (math.isfinite(sHs) and sHs > 0.0):
        # No usable direction (zero gradient or a broken model): keep θ_old.
        searched = settings.line_search
        return _finish(stats, policy, batch, old, accepted=False, step=None, g=g, surr_old=surr_old,
                       logp_old=logp_old, fraction=0.0 if searched else None, backtracks=0 if searched else None)
    beta = math.sqrt(2.0 * settings.max_kl / sHs)
    full_step = beta * s
    stats.step_size = beta

    if not settings.line_search:
        # Natural PG: the full step, unchecked (Kakade 2001; Rajeswaran et al. 2017's normalised step).
        # No line search, so its diagnostics (fraction, backtracks) do not apply.
        set_flat_params(params, theta_old + full_step)
        return _finish(stats, policy, batch, old, accepted=True, step=full_step, g=g, surr_old=surr_old,
                       logp_old=logp_old, fraction=None, backtracks=None)

    # 4. Backtracking line search: shrink the step until the KL bound holds (mean over states,
    #    or with kl_bound="max" the largest, Theorem 1's D_KL^max) and the surrogate improves;
    #    non-finite values count as failures.
    for j in range(settings.max_backtracks + 1):
        fraction = settings.backtrack_coef**j
        set_flat_params(params, theta_old + fraction * full_step)
        with torch.no_grad():
            new = policy(batch.obs)
            kl_per_state = policy.kl(old, new)
            kl = float(kl_per_state.max() if settings.kl_bound == "max" else kl_per_state.mean())
            improve = float(surrogate(policy, batch, logp_old, new)) - surr_old
        if math.isfinite(kl) and math.isfinite(improve) and kl <= settings.max_kl and improve > 0.0:
            return _finish(stats, policy, batch, old, accepted=True, step=fraction * full_step, g=g,
                           surr_old=surr_old, logp_old=logp_old, fraction=fraction, backtracks=j, new=new)

    # 5. No acceptable step: revert to θ_old.
    set_flat_params(params, theta_old)
    return _finish(stats, policy, batch, old, accepted=False, step=None, g=g, surr_old=surr_old,
                   logp_old=logp_old, fraction=0.0, backtracks=settings.max_backtracks)


def _finish(stats: PolicyStats, policy: Policy, batch: PolicyBatch, old, *, accepted: bool,
            step: torch.Tensor | None, g: torch.Tensor, surr_old: float, logp_old: torch.Tensor,
            fraction: float | None, backtracks: int | None, new: DistParams | None = None) -> PolicyStats:
    """Diagnostics at the final parameters; ``new`` is ``policy(batch.obs)`` there when the
    caller has it (the accepted line-search trial)."""
    with torch.no_grad():
        if new is None:
            new = policy(batch.obs)
        stats.kl, stats.kl_max, stats.entropy = after_step(policy, batch, old, new)
        stats.surrogate_actual = float(surrogate(policy, batch, logp_old, new)) - surr_old
    stats.accepted = float(accepted)
    stats.step_fraction = fraction
    stats.backtracks = None if backtracks is None else float(backtracks)
    stats.step_norm = 0.0 if step is None else float(step.norm())
    stats.surrogate_expected = 0.0 if step is None else float(g @ step)
    stats.improvement_ratio = ratio(stats.surrogate_actual, stats.surrogate_expected)
    return stats
