"""Vanilla policy gradient: Adam steps on the same importance-sampled surrogate."""

from __future__ import annotations

import torch

from trpo_bench.algos.common import PolicyBatch, PolicyStats, after_step, ratio, surrogate
from trpo_bench.config import PGSettings
from trpo_bench.linalg import flat_grad, flat_params
from trpo_bench.policies import Policy


def update(policy: Policy, optimizer: torch.optim.Optimizer, batch: PolicyBatch, settings: PGSettings) -> PolicyStats:
    """``settings.epochs`` full-batch Adam steps ascending L(θ). With one epoch this is REINFORCE
    with a baseline (Williams 1992; Sutton et al. 2000), since ∇L(θ_old) is the policy gradient."""
    params = policy.param_list()
    theta_old = flat_params(params)
    with torch.no_grad():
        old = policy(batch.obs).detach()
        logp_old = policy.log_prob(old, batch.actions)
        surr_old = float(batch.advantages.mean())
    g = None
    for _ in range(settings.epochs):
        loss = -surrogate(policy, batch, logp_old)
        if g is None:
            g = -flat_grad(loss, params, retain_graph=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    step = flat_params(params) - theta_old
    stats = PolicyStats(step_size=settings.lr, grad_norm=float(g.norm()), step_norm=float(step.norm()), accepted=1.0)
    with torch.no_grad():
        new = policy(batch.obs)
        stats.surrogate_actual = float(surrogate(policy, batch, logp_old, new)) - surr_old
    stats.kl, stats.kl_max, stats.entropy = after_step(policy, batch, old, new)
    stats.surrogate_expected = float(g @ step)
    stats.improvement_ratio = ratio(stats.surrogate_actual, stats.surrogate_expected)
    return stats
