"""Policy distributions against torch.distributions, the hand-written tangent map against
torch.func.jvp, and the NumPy actor against the torch policy (float64)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from trpo_bench.linalg import flat_params, set_flat_params
from trpo_bench.policies import CategoricalPolicy, GaussianPolicy, NumpyActor, ValueNet, make_policy

F64 = torch.float64


def spread(policy, scale: float = 0.5, seed: int = 0):
    """Move the parameters off the small-output init so every term of the output matters."""
    params = policy.param_list()
    theta = flat_params(params)
    gen = torch.Generator().manual_seed(seed)
    set_flat_params(params, theta + scale * torch.randn(theta.shape, generator=gen, dtype=theta.dtype))
    return policy


def gaussian(activation="tanh", seed=0):
    torch.manual_seed(seed)
    return spread(GaussianPolicy(4, 3, [8, 6], activation, init_log_std=-0.5).double(), seed=seed)


def categorical(activation="tanh", seed=0):
    torch.manual_seed(seed)
    return spread(CategoricalPolicy(4, 5, [8, 6], activation).double(), seed=seed)


def torch_dist(policy, p):
    if policy.discrete:
        return Categorical(logits=p.main)
    return Independent(Normal(p.main, p.log_std.exp().expand_as(p.main)), 1)


@pytest.mark.parametrize("make", [gaussian, categorical])
def test_log_prob_entropy_kl_match_torch_distributions(make):
    policy = make(seed=1)
    obs = torch.randn(50, 4, dtype=F64)
    with torch.no_grad():
        p = policy(obs)
        d = torch_dist(policy, p)
        act = d.sample()
        assert torch.allclose(policy.log_prob(p, act), d.log_prob(act), rtol=0, atol=1e-12)
        assert torch.allclose(policy.entropy(p), d.entropy(), rtol=0, atol=1e-12)
        other = make(seed=2)
        q = other(obs)
        expected = kl_divergence(d, torch_dist(other, q))
        assert torch.allclose(policy.kl(p, q), expected, rtol=0, atol=1e-12)
        assert float(expected.min()) > 0.0


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # raised inside torch.func.jvp
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_tangent_equals_jvp(activation):
    torch.manual_seed(3)
    policy = gaussian(activation, seed=3)
    net = policy.net
    obs = torch.randn(40, 4, dtype=F64)
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]
    tangents = [torch.randn_like(p) for p in params]

    def f(*ps):
        return torch.func.functional_call(net, dict(zip(names, ps)), (obs,))

    _, expected = torch.func.jvp(f, tuple(p.detach() for p in params), tuple(tangents))
    got = net.forward_tangent(obs, tangents)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_detached_old_distribution_does_not_move_with_the_parameters():
    """Regression: ``old = policy(obs).detach()`` must keep θ_old's log-std after an in-place step."""
    policy = gaussian(seed=4)
    obs = torch.randn(10, 4, dtype=F64)
    old = policy(obs).detach()
    log_std_old = policy.log_std.detach().clone()
    params = policy.param_list()
    set_flat_params(params, flat_params(params) + 0.1)
    assert torch.equal(old.log_std, log_std_old)
    assert torch.equal(policy.log_std.detach(), log_std_old + 0.1)
    # KL(old ‖ new) now includes the log-std change: 0.1 per action dimension dominates.
    with torch.no_grad():
        kl = policy.kl(old, policy(obs)).mean()
        expected = kl_divergence(torch_dist(policy, old), torch_dist(policy, policy(obs))).mean()
    assert float(kl) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("make", [gaussian, categorical])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_actor_output_equals_torch(make, activation):
    policy = make(activation, seed=5)
    actor = NumpyActor(policy)
    obs = np.random.default_rng(0).standard_normal((64, 4)) * 2.0
    with torch.no_grad():
        expected = policy(torch.as_tensor(obs)).main.numpy()
    assert np.max(np.abs(actor.output(obs) - expected)) <= 1e-10
    mode = actor.mode(obs)
    if policy.discrete:
        assert np.array_equal(mode, expected.argmax(-1))
    else:
        assert np.max(np.abs(mode - expected)) <= 1e-10
        assert np.max(np.abs(actor.std - policy.log_std.detach().exp().numpy())) <= 1e-12


def test_numpy_actor_from_float32_policy_and_sync():
    torch.manual_seed(6)
    policy = spread(GaussianPolicy(4, 2, [16], "tanh", -0.5))  # float32, as in training
    actor = NumpyActor(policy)
    obs = np.random.default_rng(1).standard_normal((32, 4))
    ref = GaussianPolicy(4, 2, [16], "tanh", -0.5).double()
    ref.load_state_dict({k: v.double() for k, v in policy.state_dict().items()})
    with torch.no_grad():
        assert np.max(np.abs(actor.output(obs) - ref(torch.as_tensor(obs)).main.numpy())) <= 1e-10
    # After a step, sync() picks up the new weights.
    set_flat_params(policy.param_list(), flat_params(policy.param_list()) + 0.01)
    stale = actor.output(obs)
    actor.sync(policy)
    ref.load_state_dict({k: v.double() for k, v in policy.state_dict().items()})
    with torch.no_grad():
        new = ref(torch.as_tensor(obs)).main.numpy()
    assert np.max(np.abs(actor.output(obs) - new)) <= 1e-10
    assert np.max(np.abs(stale - new)) > 1e-3


def test_numpy_actor_samples_follow_the_policy():
    n = 200_000
    rng = np.random.default_rng(7)
    cat = categorical(seed=7)
    actor = NumpyActor(cat)
    obs = np.tile(np.random.default_rng(8).standard_normal((1, 4)), (n, 1))
    with torch.no_grad():
        probs = torch.softmax(cat(torch.as_tensor(obs[:1])).main, -1).numpy()[0]
    freq = np.bincount(actor.sample(obs, rng), minlength=probs.size) / n
    # Binomial standard error sqrt(p(1-p)/n) ≤ 0.0012; allow 5 of them.
    assert np.max(np.abs(freq - probs)) < 5 * np.sqrt(0.25 / n)

    gau = gaussian(seed=7)
    actor = NumpyActor(gau)
    a = actor.sample(obs, rng)
    with torch.no_grad():
        mean = gau(torch.as_tensor(obs[:1])).main.numpy()[0]
    std = np.exp(gau.log_std.detach().numpy())
    assert np.max(np.abs(a.mean(0) - mean) / std) < 5 / np.sqrt(n)
    assert np.max(np.abs(a.std(0) / std - 1.0)) < 5 / np.sqrt(2 * n)


def test_make_policy_dispatches_on_action_space():
    obs_space = gym.spaces.Box(-1.0, 1.0, (6,))
    g = make_policy(obs_space, gym.spaces.Box(-1.0, 1.0, (2,)), [8], "tanh", -0.5)
    assert isinstance(g, GaussianPolicy) and g.log_std.shape == (2,)
    assert torch.equal(g.log_std.detach(), torch.full((2,), -0.5))
    assert g.net.layers[0].in_features == 6 and g.net.layers[-1].out_features == 2
    c = make_policy(obs_space, gym.spaces.Discrete(4), [8], "relu", -0.5)
    assert isinstance(c, CategoricalPolicy) and c.net.layers[-1].out_features == 4
    with pytest.raises(ValueError, match="MultiDiscrete is not supported.*Box.*Discrete"):
        make_policy(obs_space, gym.spaces.MultiDiscrete([2, 3]), [8], "tanh", -0.5)


def test_param_list_orders_flat_vectors_and_excludes_nothing():
    g = gaussian(seed=9)
    assert g.param_list()[-1] is g.log_std
    assert {id(p) for p in g.param_list()} == {id(p) for p in g.parameters()}
    c = categorical(seed=9)
    assert [id(p) for p in c.param_list()] == [id(p) for p in c.parameters()]
    # The value network is a separate module: no parameter in common with the policy.
    v = ValueNet(4, [8, 6], "tanh")
    assert not ({id(p) for p in v.parameters()} & {id(p) for p in g.parameters()})


def test_initial_outputs_are_small():
    # Last layer at gain 0.01 (Andrychowicz et al. 2021): near-uniform / near-zero-mean start.
    torch.manual_seed(0)
    c = CategoricalPolicy(4, 3, [64, 64], "tanh")
    obs = torch.randn(256, 4)
    with torch.no_grad():
        probs = torch.softmax(c(obs).main, -1)
    assert float((probs - 1 / 3).abs().max()) < 0.02
