"""Flat-vector helpers, Fisher-vector products and conjugate gradient.

The Fisher matrix F of the policy is never formed: TRPO only needs products F v
(Schulman et al. 2015, App. C), computed either by double back-prop of the mean KL
(``autograd``) or as ``Jᵀ M J v`` through the network's Jacobian (``analytic``). The
``empirical`` mode replaces F by the mean outer product of the per-sample scores at the
sampled actions (see docs/trpo.md for how the two differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from trpo_bench.policies import DistParams, Policy


def flat_params(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_params(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[i: i + n].view_as(p))
            i += n


def flat_grad(output: torch.Tensor, params: list[torch.Tensor], **kwargs) -> torch.Tensor:
    grads = torch.autograd.grad(output, params, **kwargs)
    return torch.cat([g.reshape(-1) for g in grads])


def subsample_indices(n: int, fraction: float) -> torch.Tensor | None:
    """Evenly spaced ``ceil(fraction * n)`` indices of a batch (None for the whole batch).

    Deterministic, so no RNG is drawn (sb3 likewise takes every k-th sample).
    """
    if fraction >= 1.0:
        return None
    # round() first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceil is 8.
    m = max(1, math.ceil(round(fraction * n, 9)))
    return torch.div(torch.arange(m) * n, m, rounding_mode="floor")


def mean_kl(policy: Policy, obs: torch.Tensor, old: DistParams) -> torch.Tensor:
    """Mean over states of KL(π_old ‖ π_θ)."""
    return policy.kl(old, policy(obs)).mean()


def make_fvp(policy: Policy, obs: torch.Tensor, old: DistParams, damping: float,
             mode: str = "analytic", output: torch.Tensor | None = None,
             actions: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``v -> (F + damping·I) v`` at the current parameters, F the Fisher of π over ``obs``
    (``analytic``, ``autograd``) or the empirical Fisher, the mean of g gᵀ at ``actions``.

    ``old`` must hold the distribution at the current parameters, detached. ``output``, if
    given, is ``policy.output(obs)`` with its autograd graph alive (the caller's forward
    pass, reused by the analytic and empirical products instead of a new one). ``actions``,
    the actions sampled at ``obs``, are needed by the ``empirical`` mode only.
    """
    params = policy.param_list()
    if mode == "autograd":
        # ∇θ KL(π_old ‖ π_θ) with a graph, once; each product is one more backward pass:
        # F v = ∇θ (∇θ KL · v), the Hessian of the KL at θ_old (Schulman et al. 2015, App. C).
        grad_kl = flat_grad(mean_kl(policy, obs, old), params, create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            hv = flat_grad(grad_kl @ v, params, retain_graph=True)
            return hv + damping * v

        return fvp
    if mode == "analytic":
        # Forward once with a graph; each product is one backward pass through it.
        out = policy.output(obs) if output is None else output

        acts = policy.net.activations(obs)
        gains = policy.net.tangent_gains(acts)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return policy.fisher_vector_product(obs, old, v, mean_out=out, acts=acts, gains=gains) + damping * v

        return fvp
    if mode == "empirical":
        # F̂ = (1/B) Σ g_i g_iᵀ, g_i = ∇θ log π(a_i|s_i) = J_iᵀ d_i with d_i the score in the
        # distribution's parameters (and, for a Gaussian, its log σ part). F̂ v = (1/B) Σ g_i (g_i·v):
        # g_i·v for every i from one forward-mode product J v, then one backward pass.
        if actions is None:
            raise ValueError("the empirical Fisher-vector product needs the sampled actions")
        out = policy.output(obs) if output is None else output
        acts = policy.net.activations(obs)
        gains = policy.net.tangent_gains(acts)
        with torch.no_grad():
            d_out, d_log_std = policy.score(old, actions)  # (B, out), (B, A) or None
        net_params = list(policy.net.parameters())
        sizes = [p.numel() for p in net_params]
        n_net = sum(sizes)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                dnet = [c.view_as(p) for c, p in zip(torch.split(v[:n_net], sizes), net_params)]
                gv = (d_out * policy.net.forward_tangent(obs, dnet, acts, gains)).sum(-1)  # g_i·v, (B,)
                if d_log_std is not None:
                    gv = gv + d_log_std @ v[n_net:]
                w = gv / obs.shape[0]
            grads = torch.autograd.grad(out, net_params, grad_outputs=w[:, None] * d_out, retain_graph=True)
            parts = [g.reshape(-1) for g in grads]
            if d_log_std is not None:
                parts.append(d_log_std.T @ w)
            return torch.cat(parts) + damping * v

        return fvp
    raise ValueError(f"unknown Fisher-vector product mode {mode!r}: use 'analytic', 'autograd' or 'empirical'")


@dataclass
class CGResult:
    x: torch.Tensor
    residual: float  # ‖b − A x‖ (the recursion's residual)
    iters: int


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int = 10, tol: float = 1e-10) -> CGResult:
    """Solve A x = b for symmetric positive-definite A given only products A v.

    Stops after ``iters`` iterations or when ‖r‖² < ``tol`` (Nocedal & Wright, Alg. 5.2).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    done = 0
    for _ in range(iters):
        if rr < tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        done += 1
    return CGResult(x=x, residual=float(rr.sqrt()), iters=done)
