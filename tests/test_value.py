"""The value fit: the NumPy backend computes what autograd and torch.optim.Adam compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trpo_bench import value as value_fit
from trpo_bench.config import ValueSettings
from trpo_bench.policies import ValueNet


def _problem(activation: str, seed: int = 0):
    torch.manual_seed(seed)
    net = ValueNet(7, [32, 16], activation)
    obs = torch.randn(512, 7)
    returns = 3.0 * torch.sin(obs[:, 0]) + obs[:, 1] ** 2 + 5.0  # a target the net can fit
    return net, obs, returns


def _fit(backend: str, activation: str, settings: dict, calls: int = 1, net_state=None):
    net, obs, returns = _problem(activation)
    if net_state is not None:
        net.load_state_dict(net_state)
    optim = torch.optim.Adam(net.parameters(), lr=settings.get("lr", 3e-3), foreach=True)
    gen = torch.Generator().manual_seed(7)
    s = ValueSettings(backend=backend, **settings)
    stats = [value_fit.fit(net, optim, obs, returns, s, gen) for _ in range(calls)]
    return net, optim, stats, gen


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_gradient_equals_autograd(activation):
    net, obs, returns = _problem(activation)
    loss = ((net(obs) - returns) ** 2).mean()
    expected = torch.autograd.grad(loss, list(net.parameters()))

    fit = value_fit._NumpyFit(net, torch.optim.Adam(net.parameters()))
    params = [p.detach().numpy().copy() for p in net.parameters()]
    grads = [np.zeros_like(p) for p in params]
    got_loss = fit._gradient(obs.numpy(), returns.numpy(), params[0::2], params[1::2], grads[0::2], grads[1::2])

    assert got_loss == pytest.approx(float(loss.detach()), rel=1e-5)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_fit_follows_torch_adam(activation):
    """Three fits of 4 epochs x 4 minibatches: the same permutations, parameters, moments and
    step counts as autograd + torch.optim.Adam, up to float32 rounding."""
    settings = {"epochs": 4, "minibatches": 4}
    net_t, opt_t, stats_t, gen_t = _fit("torch", activation, settings, calls=3)
    net_n, opt_n, stats_n, gen_n = _fit("numpy", activation, settings, calls=3)

    assert torch.equal(gen_t.get_state(), gen_n.get_state())  # the same random draws, in the same order
    for a, b in zip(stats_t, stats_n):
        assert b.loss == pytest.approx(a.loss, rel=1e-4)
        assert b.explained_variance == pytest.approx(a.explained_variance, rel=1e-4, abs=1e-5)
    assert stats_n[-1].loss < 0.5 * stats_n[0].loss  # it does fit
    for pt, pn in zip(net_t.parameters(), net_n.parameters()):
        torch.testing.assert_close(pn, pt, rtol=1e-4, atol=1e-5)
        st, sn = opt_t.state[pt], opt_n.state[pn]
        assert float(sn["step"]) == float(st["step"]) == 48
        assert sn["step"].dtype == st["step"].dtype
        torch.testing.assert_close(sn["exp_avg"], st["exp_avg"], rtol=1e-3, atol=1e-6)
        torch.testing.assert_close(sn["exp_avg_sq"], st["exp_avg_sq"], rtol=1e-3, atol=1e-8)


def test_backends_hand_over_through_the_optimizer_state():
    """A fit may start from state the other backend left (a resumed run, a changed setting):
    torch then numpy gives what torch twice gives, and the state dict round-trips."""
    settings = {"epochs": 2, "minibatches": 4}
    net, obs, returns = _problem("tanh")
    ref_net, ref_opt, _, _ = _fit("torch", "tanh", settings, calls=2)

    optim = torch.optim.Adam(net.parameters(), lr=3e-3, foreach=True)
    gen = torch.Generator().manual_seed(7)
    value_fit.fit(net, optim, obs, returns, ValueSettings(backend="torch", **settings), gen)
    saved = optim.state_dict()
    optim = torch.optim.Adam(net.parameters(), lr=3e-3, foreach=True)
    optim.load_state_dict(saved)
    value_fit.fit(net, optim, obs, returns, ValueSettings(backend="numpy", **settings), gen)

    for p, q in zip(net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert float(optim.state_dict()["state"][0]["step"]) == 16


def test_zero_epochs_leaves_the_network_alone():
    net, opt, stats, _ = _fit("numpy", "tanh", {"epochs": 0, "minibatches": 4})
    fresh, _, _ = _problem("tanh")
    for p, q in zip(net.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
    assert np.isfinite(stats[0].loss) and not opt.state


def test_numpy_fit_refuses_an_optimizer_it_does_not_implement():
    net, obs, returns = _problem("tanh")
    optim = torch.optim.Adam(net.parameters(), weight_decay=1e-4)
    with pytest.raises(ValueError, match="plain Adam"):
        value_fit.fit(net, optim, obs, returns, ValueSettings(backend="numpy"), torch.Generator())
