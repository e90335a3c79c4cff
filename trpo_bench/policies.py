"""Policies (Gaussian for Box actions, categorical for Discrete) and the value network.

A policy maps observations to the parameters of its action distribution
(``DistParams``); log-probabilities, their gradient in those parameters (``score``),
entropy and KL are plain functions of them, so the natural-gradient code can differentiate
them twice. ``fisher_vector_product`` is the analytic ``F v = J^T M J v`` with M the Fisher
of the output distribution; ``score`` gives the per-sample gradients of the empirical Fisher.

Collection runs through :class:`NumpyActor`, a NumPy copy of the policy network:
for a handful of observations per step, torch's per-call overhead exceeds the
arithmetic (measured in benchmarks/throughput.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


class MLP(nn.Module):
    """Linear layers with a hidden activation; the last layer is linear.

    ``forward_tangent`` propagates a parameter-space direction forward
    (forward-mode differentiation by hand: cheap, exact, no autograd graph).
    """

    def __init__(self, sizes: list[int], activation: str, out_gain: float = 1.0):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = activation
        # Orthogonal init, gain sqrt(2) hidden and a small last layer: sb3 / CleanRL practice
        # (Andrychowicz et al. 2021, "What matters in on-policy RL", Sec. 3.2).
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            nn.init.orthogonal_(layer.weight, gain=out_gain if last else math.sqrt(2.0))
            nn.init.zeros_(layer.bias)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) if self.activation == "tanh" else torch.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self._act(layer(x))
        return self.layers[-1](x)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inputs of every layer, [x, h1, ..., h_{L-1}], without a graph (for forward_tangent)."""
        acts = [x]
        with torch.no_grad():
            for layer in self.layers[:-1]:
                x = self._act(layer(x))
                acts.append(x)
        return acts

    def tangent_gains(self, acts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each hidden layer's activation derivative at ``acts`` (``self.activations(x)``):
        1 − h² for tanh, [h > 0] for ReLU; what :meth:`forward_tangent` multiplies by."""
        if self.activation == "tanh":
            return [1.0 - y * y for y in acts[1:]]
        return [(y > 0).to(y.dtype) for y in acts[1:]]

    def forward_tangent(self, x: torch.Tensor, dparams: list[torch.Tensor],
                        acts: list[torch.Tensor] | None = None,
                        gains: list[torch.Tensor] | None = None) -> torch.Tensor:
        """d output / d params · v, for ``dparams`` = v split like ``self.parameters()``.

        Shapes: x (B, in) -> (B, out). ``acts`` = ``self.activations(x)`` saves the forward pass,
        ``gains`` = ``self.tangent_gains(acts)`` the derivatives (the same products, computed once
        for the many tangents of one batch).
        """
        if acts is None:
            acts = self.activations(x)
        if gains is None:
            gains = self.tangent_gains(acts)
        dx = None
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            dW, db = dparams[2 * i], dparams[2 * i + 1]
            dpre = acts[i] @ dW.T + db
            if dx is not None:
                dpre = dpre + dx @ layer.weight.T
            if i == n - 1:
                return dpre
            dx = gains[i] * dpre
        raise AssertionError("unreachable")


@dataclass
class DistParams:
    """Distribution parameters for a batch: Gaussian ``(mean (B, A), log_std (A,))``
    or categorical ``(logits (B, K), None)``."""

    main: torch.Tensor
    log_std: torch.Tensor | None = None

    def detach(self) -> "DistParams":
        # clone(): for a Gaussian, log_std *is* the policy's parameter; a bare detach() shares
        # its storage, so the in-place step (set_flat_params, optimizer.step) would move "old" too.
        return DistParams(self.main.detach(), None if self.log_std is None else self.log_std.detach().clone())

    def index(self, idx: torch.Tensor) -> "DistParams":
        return DistParams(self.main[idx], self.log_std)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian with a state-independent log-std (Schulman et al. 2015, Sec. 8)."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], activation: str, init_log_std: float):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, act_dim], activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: torch.Tensor) -> DistParams:
        return DistParams(self.net(obs), self.log_std)

    def param_list(self) -> list[nn.Parameter]:
        """The policy's parameters in the order of every flat vector: network, then log-std."""
        return [*self.net.parameters(), self.log_std]

    @staticmethod
    def log_prob(p: DistParams, act: torch.Tensor) -> torch.Tensor:
        z = (act - p.main) * torch.exp(-p.log_std)
        return -0.5 * (z * z).sum(-1) - p.log_std.sum() - 0.5 * p.main.shape[-1] * LOG_2PI

    @staticmethod
    def score(p: DistParams, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """∇ log π(a|s) with respect to the mean, (a − μ)/σ², and to log σ, z² − 1; each (B, A)."""
        z = (act - p.main) * torch.exp(-p.log_std)
        return z * torch.exp(-p.log_std), z * z - 1.0

    @staticmethod
    def entropy(p: DistParams) -> torch.Tensor:
        per = (p.log_std + 0.5 * (1.0 + LOG_2PI)).sum()
        return per.expand(p.main.shape[0])

    @staticmethod
    def kl(old: DistParams, new: DistParams) -> torch.Tensor:
        """KL(old || new) per state, (B,)."""
        var_old = torch.exp(2.0 * old.log_std)
        var_new = torch.exp(2.0 * new.log_std)
        return (new.log_std - old.log_std + (var_old + (old.main - new.main) ** 2) / (2.0 * var_new) - 0.5).sum(-1)

    def fisher_vector_product(self, obs: torch.Tensor, old: DistParams, v: torch.Tensor,
                              mean_out: torch.Tensor | None = None, acts=None, gains=None) -> torch.Tensor:
        """Analytic F v = (1/B) Σ J_iᵀ M_i J_i v over the batch, v flat over ``parameters()``.

        For a Gaussian the output Fisher is diag(1/σ²) for the mean and 2 per dimension
        for a state-independent log σ, with no cross term.
        """
        net_params = list(self.net.parameters())
        dnet = _split(v[: -self.log_std.numel()], net_params)
        dlog_std = v[-self.log_std.numel():]
        jv = self.net.forward_tangent(obs, dnet, acts, gains)  # (B, A)
        m_jv = jv * torch.exp(-2.0 * old.log_std)
        if mean_out is None:
            mean_out = self.net(obs)
        grads = torch.autograd.grad(mean_out, net_params, grad_outputs=m_jv / obs.shape[0], retain_graph=True)
        return torch.cat([g.reshape(-1) for g in grads] + [2.0 * dlog_std])

    def output(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class CategoricalPolicy(nn.Module):
    """Softmax over logits from an MLP."""

    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, n_actions], activation, out_gain=0.01)

    def forward(self, obs: torch.Tensor) -> DistParams:
        return DistParams(self.net(obs))

    def param_list(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    @staticmethod
    def log_prob(p: DistParams, act: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(p.main, -1)
        return logp.gather(-1, act.long().reshape(-1, 1)).squeeze(-1)

    @staticmethod
    def score(p: DistParams, act: torch.Tensor) -> tuple[torch.Tensor, None]:
        """∇ log π(a|s) with respect to the logits, onehot(a) − softmax, (B, K); no log σ (None)."""
        onehot = torch.nn.functional.one_hot(act.long().reshape(-1), p.main.shape[-1]).to(p.main.dtype)
        return onehot - torch.softmax(p.main, -1), None

    @staticmethod
    def entropy(p: DistParams) -> torch.Tensor:
        logp = torch.log_softmax(p.main, -1)
        return -(logp.exp() * logp).sum(-1)

    @staticmethod
    def kl(old: DistParams, new: DistParams) -> torch.Tensor:
        lo = torch.log_softmax(old.main, -1)
        ln = torch.log_softmax(new.main, -1)
        return (lo.exp() * (lo - ln)).sum(-1)

    def fisher_vector_product(self, obs: torch.Tensor, old: DistParams, v: torch.Tensor,
                              mean_out: torch.Tensor | None = None, acts=None, gains=None) -> torch.Tensor:
        """Analytic F v with the logit-space Fisher M = diag(p) - p pᵀ."""
        params = self.param_list()
        jv = self.net.forward_tangent(obs, _split(v, params), acts, gains)  # (B, K)
        p = torch.softmax(old.main, -1)
        m_jv = p * jv - p * (p * jv).sum(-1, keepdim=True)
        if mean_out is None:
            mean_out = self.net(obs)
        grads = torch.autograd.grad(mean_out, params, grad_outputs=m_jv / obs.shape[0], retain_graph=True)
        return torch.cat([g.reshape(-1) for g in grads])

    def output(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


Policy = GaussianPolicy | CategoricalPolicy


class ValueNet(nn.Module):
    """State-value function V(s), its own module and optimizer (never shares the policy's)."""

    def __init__(self, obs_dim: int, hidden: list[int], activation: str):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, 1], activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def _split(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(flat[i: i + n].view_as(p))
        i += n
    return out


def make_policy(observation_space, action_space, hidden: list[int], activation: str, init_log_std: float) -> Policy:
    """Build the policy for a gymnasium action space; raises ValueError for other spaces."""
    import gymnasium as gym

    obs_dim = int(np.prod(observation_space.shape))
    if isinstance(action_space, gym.spaces.Box):
        return GaussianPolicy(obs_dim, int(np.prod(action_space.shape)), hidden, activation, init_log_std)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden, activation)
    raise ValueError(
        f"action space {type(action_space).__name__} is not supported: trpo-bench handles Box "
        "(Gaussian policy) and Discrete (categorical policy)"
    )


class NumpyActor:
    """The policy network's forward pass in NumPy (float64), for per-step action sampling.

    Noise comes from the ``np.random.Generator`` passed in, never a global RNG.
    """

    def __init__(self, policy: Policy):
        self.discrete = policy.discrete
        self.sync(policy)

    def sync(self, policy: Policy) -> None:
        """Copy the current torch weights (call after every policy update)."""
        with torch.no_grad():
            self.weights = [(layer.weight.double().numpy().T.copy(), layer.bias.double().numpy().copy())
                            for layer in policy.net.layers]
            self.std = None if self.discrete else np.exp(policy.log_std.double().numpy())
        self.activation = policy.net.activation

    def output(self, obs: np.ndarray) -> np.ndarray:
        # In-place bias and activation: the same bits as ``np.tanh(x @ W + b)`` with fewer
        # temporaries (this runs once per env step).
        act = np.tanh if self.activation == "tanh" else _relu
        x = obs
        for W, b in self.weights[:-1]:
            x = x @ W
            x += b
            act(x, out=x)
        W, b = self.weights[-1]
        x = x @ W
        x += b
        return x

    def sample(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actions for a batch of (normalized) observations. (B, obs_dim) -> (B, A) or (B,)."""
        out = self.output(obs)
        if self.discrete:
            z = out - out.max(-1, keepdims=True)
            p = np.exp(z)
            cdf = np.cumsum(p, -1)
            u = rng.random(out.shape[0])[:, None] * cdf[:, -1:]
            return np.minimum((cdf < u).sum(-1), out.shape[-1] - 1)
        noise = rng.standard_normal(out.shape)
        noise *= self.std
        noise += out  # out + std · noise (IEEE + and · commute: same bits)
        return noise

    def mode(self, obs: np.ndarray) -> np.ndarray:
        out = self.output(obs)
        return out.argmax(-1) if self.discrete else out


def _relu(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=out)
