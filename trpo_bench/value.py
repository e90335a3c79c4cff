"""Fitting the value network to the GAE returns."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from trpo_bench import sidecars
from trpo_bench.config import ValueSettings
from trpo_bench.envs import available_cpus
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
    """Adam over ``epochs`` shuffled passes of ``minibatches`` minibatches. obs (B, D), returns (B,).

    ``settings.backend`` picks the implementation: ``torch`` (autograd, ``optimizer.step()``) or
    ``numpy`` (the same gradients and Adam rule by hand, on the same parameter and optimizer
    state, so checkpoints and resume do not depend on it). Both draw the same permutations.
    """
    with torch.no_grad():
        ev = explained_variance(value(obs), returns)
    if settings.backend == "numpy" and settings.epochs > 0:
        loss = _NumpyFit(value, optimizer).run(obs.numpy(), returns.numpy(), settings, generator)
        return ValueStats(loss=loss, explained_variance=ev)
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


_FIT = 1


def fits_beside(settings: ValueSettings) -> bool:
    """Whether a run fits its value network in a sidecar (:class:`FitBeside`): the NumPy fit,
    with a second CPU to run it on, where sidecars run."""
    return settings.backend == "numpy" and settings.epochs > 0 and sidecars.PROCESSES and available_cpus() > 1


class FitBeside:
    """:func:`fit` with the NumPy backend, in a sidecar process, so that it runs on another CPU
    while the policy update runs. :meth:`start` reads the network, the optimizer's state and
    the shuffles from ``generator`` (drawn here, as :func:`fit` draws them) and hands the work
    over; :meth:`finish` waits for it and writes the result back into the network and the
    optimizer. Until then neither changes here (bar Adam's zero state, which a first fit
    creates as torch's first step would): a failure in between leaves them as they were. The
    sidecar runs :func:`fit`'s NumPy operations on the same inputs, so the bits are its; it
    took Adam's settings (learning rate, betas, epsilon) at the fork, and :meth:`start`
    refuses to go on if the optimizer's have changed since.

    ``batch``, ``obs_dim``: the size of every batch this fits (a run's ``steps_per_update``)."""

    def __init__(self, value: ValueNet, optimizer: torch.optim.Optimizer, settings: ValueSettings,
                 batch: int, obs_dim: int):
        self._fit, self._value, self._settings = _NumpyFit(value, optimizer), value, settings
        size = sum(math.prod(shape) for shape in self._fit.shapes)
        self._theta, self._m, self._v = (sidecars.shared((size,), np.float32) for _ in range(3))
        self._obs = sidecars.shared((batch, obs_dim), np.float32)
        self._returns = sidecars.shared((batch,), np.float32)
        self._perms = sidecars.shared((settings.epochs, batch), np.int64)
        self._out = sidecars.shared((2,), np.float64)  # the loss; Adam's step count, in and out
        self._ev = float("nan")
        # Once an update: it sleeps between fits rather than spin.
        self._sidecar = sidecars.Sidecar("the process fitting the value network", {_FIT: self._descend}, spin_s=0.0)

    def _descend(self) -> None:  # in the sidecar
        self._out[:] = self._fit.descend(self._theta, self._m, self._v, float(self._out[1]), self._obs,
                                         self._returns, self._perms, self._settings.minibatches)

    def start(self, obs: torch.Tensor, returns: torch.Tensor, generator: torch.Generator) -> None:
        group, fit = self._fit.optimizer.param_groups[0], self._fit
        if (group["lr"], tuple(group["betas"]), group["eps"]) != (fit.lr, (fit.beta1, fit.beta2), fit.eps):
            raise RuntimeError("the value optimizer's settings changed after its fit's sidecar was forked")
        with torch.no_grad():
            self._ev = explained_variance(self._value(obs), returns)
        self._theta[:], self._m[:], self._v[:], self._out[1] = self._fit.read()
        self._obs[...] = obs.numpy()
        self._returns[...] = returns.numpy()
        self._perms[...] = _NumpyFit.permutations(obs.shape[0], self._settings.epochs, generator)
        self._sidecar.post(_FIT)

    def finish(self) -> ValueStats:
        self._sidecar.wait()
        loss, step = self._out
        self._fit.write(self._theta, self._m, self._v, float(step))
        return ValueStats(loss=float(loss), explained_variance=self._ev)

    def close(self) -> None:
        self._sidecar.close()


class _NumpyFit:
    """Minibatch MSE regression of a ``ValueNet`` by hand-written backprop and Adam in NumPy.

    At a 2,048-state batch and 64x64 layers, autograd's per-op overhead and torch's tanh cost
    more than the arithmetic; NumPy does the same float32 computation 2-3x faster. The Adam
    rule is torch's (``torch.optim.Adam`` without weight decay or amsgrad): m ← m + (g − m)(1 − β1),
    v ← β2 v + (1 − β2) g², θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε). Parameters, moments
    and step counts are read from and written back to the torch module and ``optimizer.state``,
    in torch's own format, so a checkpoint does not record which backend ran.
    """

    def __init__(self, value: ValueNet, optimizer: torch.optim.Optimizer):
        group = optimizer.param_groups[0]
        if len(optimizer.param_groups) != 1 or group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            raise ValueError("the numpy value fit implements plain Adam over one parameter group")
        self.optimizer = optimizer
        self.params = list(value.parameters())
        self.lr, (self.beta1, self.beta2), self.eps = group["lr"], group["betas"], group["eps"]
        self.shapes = [tuple(p.shape) for p in self.params]
        self.activation = value.net.activation

    def _flat(self, tensors: list[torch.Tensor]) -> np.ndarray:
        return np.concatenate([t.detach().numpy().ravel() for t in tensors]).astype(np.float32, copy=False)

    def _views(self, flat: np.ndarray) -> list[np.ndarray]:
        out, i = [], 0
        for shape in self.shapes:
            k = int(np.prod(shape))
            out.append(flat[i:i + k].reshape(shape))
            i += k
        return out

    def run(self, obs: np.ndarray, returns: np.ndarray, settings: ValueSettings, generator: torch.Generator) -> float:
        theta, m, v, step = self.read()
        perms = self.permutations(obs.shape[0], settings.epochs, generator)
        loss, step = self.descend(theta, m, v, step, obs, returns, perms, settings.minibatches)
        self.write(theta, m, v, step)
        return loss

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Parameters, Adam's moments (flat float32) and its step count, from the module and optimizer."""
        state = self.optimizer.state
        for p in self.params:  # torch's lazily created Adam state, as its first step() would make it
            if p not in state or not state[p]:
                state[p] = {"step": torch.tensor(0.0),
                            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return (self._flat(self.params), self._flat([state[p]["exp_avg"] for p in self.params]),
                self._flat([state[p]["exp_avg_sq"] for p in self.params]), float(state[self.params[0]]["step"]))

    @staticmethod
    def permutations(n: int, epochs: int, generator: torch.Generator) -> np.ndarray:
        """Each epoch's shuffle, (epochs, n): the draws the torch backend makes, in its order."""
        return np.stack([torch.randperm(n, generator=generator).numpy() for _ in range(epochs)])

    def descend(self, theta: np.ndarray, m: np.ndarray, v: np.ndarray, step: float, obs: np.ndarray,
                returns: np.ndarray, perms: np.ndarray, minibatches: int) -> tuple[float, float]:
        """The Adam steps, on ``theta``, ``m`` and ``v`` in place; NumPy only, so it can run in
        another process. Returns the last epoch's mean loss and the new step count."""
        grad = np.zeros_like(theta)
        w, g = self._views(theta), self._views(grad)
        weights, biases, gw, gb = w[0::2], w[1::2], g[0::2], g[1::2]
        tmp = np.empty_like(theta)
        losses: list[float] = []
        for perm in perms:
            losses = []
            for idx in np.array_split(perm, minibatches):
                losses.append(self._gradient(obs[idx], returns[idx], weights, biases, gw, gb))
                step += 1
                self._adam(theta, grad, m, v, tmp, step)
        return float(np.mean(losses)), step

    def write(self, theta: np.ndarray, m: np.ndarray, v: np.ndarray, step: float) -> None:
        state = self.optimizer.state
        with torch.no_grad():
            for p, x in zip(self.params, self._views(theta)):
                p.copy_(torch.from_numpy(x))
            for p, mx, vx in zip(self.params, self._views(m), self._views(v)):
                state[p]["exp_avg"].copy_(torch.from_numpy(mx))
                state[p]["exp_avg_sq"].copy_(torch.from_numpy(vx))
                state[p]["step"].fill_(step)

    def _gradient(self, x, y, weights, biases, gw, gb) -> float:
        """Loss mean((V(x) − y)²); its gradient written into ``gw``/``gb`` (torch's (out, in) layout)."""
        acts = [x]
        h = x
        for W, b in zip(weights[:-1], biases[:-1]):
            h = h @ W.T
            h += b
            if self.activation == "tanh":
                np.tanh(h, out=h)
            else:
                np.maximum(h, 0.0, out=h)
            acts.append(h)
        err = h @ weights[-1].T
        err += biases[-1]
        err -= y[:, None]
        loss = float(np.mean(err * err))
        d = err * np.float32(2.0 / y.shape[0])  # dL/dV, (B, 1)
        for i in range(len(weights) - 1, -1, -1):
            np.matmul(d.T, acts[i], out=gw[i])
            np.add.reduce(d, axis=0, out=gb[i])
            if i:
                d = d @ weights[i]
                a = acts[i]
                if self.activation == "tanh":
                    a *= a
                    np.subtract(np.float32(1.0), a, out=a)
                    d *= a
                else:
                    d *= a > 0
        return loss

    def _adam(self, theta, grad, m, v, tmp, step: float) -> None:
        b1, b2 = self.beta1, self.beta2
        np.subtract(grad, m, out=tmp)
        tmp *= np.float32(1 - b1)
        m += tmp
        v *= np.float32(b2)
        np.multiply(grad, grad, out=tmp)
        tmp *= np.float32(1 - b2)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= np.float32(math.sqrt(1 - b2 ** step))
        tmp += np.float32(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= np.float32(self.lr / (1 - b1 ** step))
        theta -= tmp
