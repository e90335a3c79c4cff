"""Fitting the value network to the GAE returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trpo_bench.config import ValueSettings
from trpo_bench.policies import ValueNet


@dataclass
class ValueStats:
    loss: float  # mean squared error over the last epoch's minibatches
    explained_variance: float  # of the values used for GAE, before this fit

    def metrics(self) -> dict[str, float]:
        return {"value/loss": self.loss, "value/explained_variance": self.explained_variance}


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Var[target − pred] / Var[target]; NaN when the target is constant."""
    var = float(target.var())
    return float("nan") if var == 0.0 else 1.0 - float((target - pred).var()) / var


def fit(value: ValueNet, optimizer: torch.optim.Optimizer, obs: torch.Tensor, returns: torch.Tensor,
        settings: ValueSettings, generator: torch.Generator) -> ValueStats:
    """Adam over ``epochs`` shuffled passes of ``minibatches`` minibatches. obs (B, D), returns (B,)."""
    with torch.no_grad():
        ev = explained_variance(value(obs), returns)
    n = obs.shape[0]
    losses: list[float] = []
    for _ in range(settings.epochs):
        perm = torch.randperm(n, generator=generator)
        losses = []
        for idx in torch.tensor_split(perm, settings.minibatches):
            loss = ((value(obs[idx]) - returns[idx]) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
    if not losses:
        with torch.no_grad():
            losses = [((value(obs) - returns) ** 2).mean()]
    return ValueStats(loss=float(torch.stack(losses).mean()), explained_variance=ev)
