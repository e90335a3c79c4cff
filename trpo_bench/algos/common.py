"""What every policy update takes (a batch) and returns (its diagnostics)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trpo_bench.policies import DistParams, Policy
from trpo_bench.policy_stats import PolicyStats

__all__ = ["PolicyBatch", "PolicyStats", "after_step", "ratio", "surrogate"]


@dataclass
class PolicyBatch:
    """On-policy data for one update. obs (B, obs_dim), actions (B, A) or (B,), advantages (B,)."""

    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor


def surrogate(policy: Policy, batch: PolicyBatch, logp_old: torch.Tensor,
              dist: DistParams | None = None) -> torch.Tensor:
    """Importance-sampled surrogate L(θ) = mean[π_θ(a|s) / π_old(a|s) · A] (Schulman et al. 2015, Eq. 14).

    ``dist`` is ``policy(batch.obs)`` when the caller already has it (saves a forward pass).
    """
    logp = policy.log_prob(policy(batch.obs) if dist is None else dist, batch.actions)
    return (torch.exp(logp - logp_old) * batch.advantages).mean()


def after_step(policy: Policy, batch: PolicyBatch, old: DistParams,
               new: DistParams | None = None) -> tuple[float, float, float]:
    """Mean KL, max KL (over states) from ``old`` to the current policy, and its mean entropy.

    ``new`` is ``policy(batch.obs)`` at the current parameters when the caller already has it.
    """
    with torch.no_grad():
        if new is None:
            new = policy(batch.obs)
        kl = policy.kl(old, new)
        return float(kl.mean()), float(kl.max()), float(policy.entropy(new).mean())


def ratio(actual: float, expected: float) -> float | None:
    if expected == 0.0 or not math.isfinite(expected) or not math.isfinite(actual):
        return None
    return actual / expected
