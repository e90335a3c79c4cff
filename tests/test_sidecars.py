"""The batched MuJoCo path's sidecar processes (trpo_bench.sidecars): what they give is
what the calling thread would compute, their failures are named, and they neither outlive nor
break the run that forked them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from run_records import assert_same_checkpoint, metric_rows

from trpo_bench import sidecars
from trpo_bench.mujoco_batch import MujocoBatchEnv
from trpo_bench.sidecars import SidecarDied, shared

pytestmark = pytest.mark.skipif(not sidecars.PROCESSES, reason="sidecar processes run on x86-64 Linux")


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc), oldest first."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append((int(fields[19]), int(entry.name)))  # (start time, pid)
    return [p for _, p in sorted(found)]


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_sidecar_sleeps_when_idle_and_steps_on_with_the_same_bits(tmp_path):
    held = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT)  # as a run's lock: the sidecar must not keep it
    one, two = MujocoBatchEnv("HalfCheetah-v5", 4, 3), MujocoBatchEnv("HalfCheetah-v5", 4, 3, threads=2)
    os.close(held)
    assert len(two._sidecars) == 1 and two._sidecars[0].pid in children(os.getpid())
    two.reset()  # it has set itself up: of what it inherited it keeps stdio and its wake-up pipe
    fds = [fd for fd in os.listdir(f"/proc/{two._sidecars[0].pid}/fd") if int(fd) > 2]
    assert len(fds) == 1 and os.readlink(f"/proc/{two._sidecars[0].pid}/fd/{fds[0]}").startswith("pipe:")
    assert one.reset().tobytes() == two.reset().tobytes()
    rng = np.random.default_rng(0)
    for t in range(40):
        if t % 10 == 9:  # longer than the sidecar spins: it sleeps, and the next step wakes it
            end = time.time() + 10
            while two._sidecars[0]._ctl[sidecars._ASLEEP] != 1 and time.time() < end:
                time.sleep(0.01)
            assert two._sidecars[0]._ctl[sidecars._ASLEEP] == 1
        a = rng.uniform(-1, 1, (4, 6))
        x, y = one.step(a), two.step(a)
        assert x.obs.tobytes() == y.obs.tobytes() and x.reward.tobytes() == y.reward.tobytes(), t
    assert one.get_state()["physics"].tobytes() == two.get_state()["physics"].tobytes()
    pid = two._sidecars[0].pid
    two.close()
    assert not alive(pid)


def test_an_error_in_a_sidecar_reaches_the_caller_and_the_env_steps_on(monkeypatch):
    import trpo_bench.mujoco_batch as mb

    fail = shared((1,), np.int64)  # the pid of the process whose steps fail
    real = mb.mujoco.mj_step

    def step(m, d, n):
        if os.getpid() == fail[0]:
            raise ValueError("bad step")
        real(m, d, n)

    monkeypatch.setattr(mb.mujoco, "mj_step", step)  # before the fork: the sidecars inherit it
    env = MujocoBatchEnv("Hopper-v5", 6, 0, threads=3)
    env.reset()
    fail[0] = env._sidecars[1].pid
    with pytest.raises(RuntimeError, match=r"^in the process stepping envs 4-5: ValueError: bad step$"):
        env.step(np.zeros((6, 3)))
    # The other sidecar finished that step too: nothing is left pending.
    assert all(s._ctl[sidecars._DONE] == s._seq for s in env._sidecars)
    fail[0] = 0
    env.step(np.zeros((6, 3)))
    assert env.get_state()["physics"].shape[0] == 6
    env.close()


@pytest.mark.parametrize("sig, name", [(signal.SIGKILL, "SIGKILL"), (signal.SIGRTMIN + 6, "signal")])
def test_a_killed_sidecar_is_named_and_the_env_closes(sig, name):
    env = MujocoBatchEnv("Hopper-v5", 4, 0, threads=2)
    env.reset()
    pid = env._sidecars[0].pid
    os.kill(pid, sig)
    for _ in range(2):  # and again on the next call, not some other error
        with pytest.raises(SidecarDied, match=rf"envs 2-3 \(pid {pid}\) was killed by {name}.*; what it held is lost"):
            env.step(np.zeros((4, 3)))
    env.close()
    assert not alive(pid)


def test_a_closed_sidecar_is_not_written_to_and_a_forked_copy_leaves_it_alone(tmp_path):
    """After close, posting writes nowhere (its wake-up descriptor's number may be another file's
    by then); a forked copy of the creator that ends does not kill the creator's sidecar."""
    side = sidecars.Sidecar("a test sidecar", {1: lambda: None}, spin_s=0.0)
    pid = os.fork()
    if pid == 0:  # the copy runs the finalizer an exiting interpreter would run
        side._reap()
        os._exit(0)
    os.waitpid(pid, 0)
    side.post(1)
    side.wait()  # still alive and serving
    end = time.time() + 10
    while side._ctl[sidecars._ASLEEP] != 1 and time.time() < end:
        time.sleep(0.01)
    wake = side._wake_w
    side.close()
    fd = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT)
    os.dup2(fd, wake)  # another file under the closed descriptor's number
    side.post(1)
    os.close(wake)
    os.close(fd)
    assert (tmp_path / "other").read_bytes() == b""


def test_a_busy_sidecar_dies_with_its_parent(tmp_path):
    """The kernel kills it (PR_SET_PDEATHSIG): a handler that never returns to look at its
    parent dies all the same."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from trpo_bench.sidecars import Sidecar\n"
        "s = Sidecar('busy', {1: lambda: time.sleep(600)})\n"
        "s.post(1)\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    sidecar = int(proc.stdout.readline())
    time.sleep(0.2)  # into its handler
    assert alive(sidecar)
    proc.kill()
    proc.wait()
    end = time.time() + 5
    while alive(sidecar) and time.time() < end:
        time.sleep(0.05)
    assert not alive(sidecar)


def _train_cmd(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "trpo_bench.cli", "train", "--env", "Walker2d-v5", "--steps", str(steps),
            "--wandb", "disabled", "--quiet", "--out", str(out), "--set", "steps_per_update=512",
            "--set", "num_envs=4", "--set", "env_threads=2", "--set", "checkpoint_every=1"]


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int) -> Path:
    end = time.time() + 240
    while time.time() < end:
        metrics = list(out.rglob("metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) - 1 >= rows:
            return metrics[0].parent
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("the run logged too few updates")


@pytest.mark.parametrize("which, name", [(0, "the process stepping envs 2-3"),
                                         (1, "the process fitting the value network")])
def test_a_run_whose_sidecar_dies_fails_and_says_why(tmp_path, which, name):
    """A run on two CPUs has two sidecars: the env's (forked first) and the value fit's."""
    proc = subprocess.Popen(_train_cmd(tmp_path, 200_000), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=os.environ | {"TRPO_BENCH_CPUS": "2"})
    run_dir = _wait_for_rows(tmp_path, proc, 1)
    sidecars = children(proc.pid)
    assert len(sidecars) == 2
    os.kill(sidecars[which], signal.SIGKILL)
    assert proc.wait(timeout=60) != 0
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert f"{name} (pid {sidecars[which]}) was killed by SIGKILL" in status["error"]
    assert not any(alive(p) for p in sidecars)


def test_sidecars_die_with_their_run(tmp_path):
    proc = subprocess.Popen(_train_cmd(tmp_path, 200_000), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=os.environ | {"TRPO_BENCH_CPUS": "2"})
    _wait_for_rows(tmp_path, proc, 1)
    sidecars = children(proc.pid)
    assert len(sidecars) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.time() + 10
    while any(alive(p) for p in sidecars) and time.time() < end:
        time.sleep(0.05)
    assert not any(alive(p) for p in sidecars)


def test_sigterm_to_the_process_group_stops_a_run_that_then_resumes_bit_for_bit(tmp_path):
    """The sidecar ignores the signal its group receives, so the run can still save the
    envs' state, which lives partly in the sidecar."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert subprocess.run(_train_cmd(full, 16384), capture_output=True).returncode == 0
    proc = subprocess.Popen(_train_cmd(cut, 16384), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    run_dir = _wait_for_rows(cut, proc, 2)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted", status
    res = subprocess.run([sys.executable, "-m", "trpo_bench.cli", "train", "--resume", str(run_dir), "--quiet"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (full_dir,) = [p.parent for p in full.rglob("metrics.csv")]
    assert metric_rows(full_dir) == metric_rows(run_dir) and len(metric_rows(run_dir)) == 32
    assert_same_checkpoint(full_dir, run_dir)


# ---------------------------------------------------------------- the value fit beside the policy update
def _value_problem(seed: int = 0):
    import torch

    from trpo_bench.policies import ValueNet

    torch.manual_seed(seed)
    net = ValueNet(11, [64, 64], "tanh")
    optim = torch.optim.Adam(net.parameters(), lr=3e-4, foreach=True)
    return net, optim, torch.Generator().manual_seed(5)


def _value_batches(calls: int):
    import torch

    g = torch.Generator().manual_seed(1)
    for _ in range(calls):
        obs = torch.randn(2048, 11, generator=g)
        yield obs, 2.0 * torch.tanh(obs[:, 0]) + obs[:, 1] * obs[:, 2] + 0.1 * torch.randn(2048, generator=g)


def test_the_value_fit_beside_gives_the_bits_of_the_fit_in_line():
    """Four fits in a row: parameters, Adam's moments and step, loss, explained variance and the
    generator's state come out bit for bit as the in-line NumPy fit leaves them."""
    import torch

    from trpo_bench import value as value_fit
    from trpo_bench.config import ValueSettings

    settings = ValueSettings(backend="numpy")
    net_a, opt_a, gen_a = _value_problem()
    net_b, opt_b, gen_b = _value_problem()
    beside = value_fit.FitBeside(net_b, opt_b, settings, 2048, 11)
    for obs, returns in _value_batches(4):
        a = value_fit.fit(net_a, opt_a, obs, returns, settings, gen_a)
        beside.start(obs, returns, gen_b)
        b = beside.finish()
        assert (a.loss, a.explained_variance) == (b.loss, b.explained_variance)
        assert torch.equal(gen_a.get_state(), gen_b.get_state())
        for pa, pb in zip(net_a.parameters(), net_b.parameters()):
            assert torch.equal(pa, pb)
            for k in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(opt_a.state[pa][k], opt_b.state[pb][k]), k
    beside.close()


def test_a_value_fit_that_dies_beside_changes_nothing_and_is_named():
    import torch

    from trpo_bench import value as value_fit
    from trpo_bench.config import ValueSettings

    net, optim, gen = _value_problem()
    value_fit.fit(net, optim, *next(_value_batches(1)), ValueSettings(backend="numpy"), gen)  # Adam has state
    before = [p.detach().clone() for p in net.parameters()]
    moments = {k: [optim.state[p][k].clone() for p in net.parameters()] for k in ("exp_avg", "exp_avg_sq", "step")}
    beside = value_fit.FitBeside(net, optim, ValueSettings(backend="numpy", epochs=200), 2048, 11)
    obs, returns = next(_value_batches(1))
    beside.start(obs, returns, gen)
    os.kill(beside._sidecar.pid, signal.SIGKILL)
    with pytest.raises(SidecarDied, match="the process fitting the value network .* was killed by SIGKILL"):
        beside.finish()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    for k, saved in moments.items():
        assert all(torch.equal(a, optim.state[p][k]) for a, p in zip(saved, net.parameters())), k
    beside.close()


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "CartPole-v1"])
def test_a_run_fitting_its_value_beside_equals_one_fitting_in_line(tmp_path, monkeypatch, env_id):
    from trpo_bench import checkpoint
    from trpo_bench import value as value_fit
    from trpo_bench.config import RunConfig
    from trpo_bench.train import RunOptions, run

    monkeypatch.setenv("TRPO_BENCH_CPUS", "2")
    assert value_fit.fits_beside(value_fit.ValueSettings())
    made = []
    real = value_fit.FitBeside
    monkeypatch.setattr(value_fit, "FitBeside", lambda *a: made.append(real(*a)) or made[-1])

    def train(name: str):
        cfg = RunConfig(env_id=env_id, seed=4, total_steps=4 * 512, steps_per_update=512, num_envs=4)
        res = run(cfg, RunOptions(out=tmp_path, run_id=name, wandb="disabled", progress=False))
        return metric_rows(res.run_dir), checkpoint.load(res.run_dir / "checkpoint.pt")[0]["agent"]

    rows_b, agent_b = train("beside")
    assert len(made) == 1 and not alive(made[0]._sidecar.pid)  # it ran, and the run's end closed it
    monkeypatch.setattr(value_fit, "fits_beside", lambda settings: False)
    rows_i, agent_i = train("in-line")
    assert len(made) == 1 and len(rows_b) == 4 and rows_b == rows_i
    for part in ("policy", "value", "vf_optim"):
        assert same(agent_b[part], agent_i[part]), part


def same(a, b) -> bool:
    """Equal state dicts: the same keys, and tensors equal bit for bit."""
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("capture, restore", [(3, 1), (1, 3)])
def test_a_state_captured_on_one_split_restores_on_another(capture, restore):
    """Ant-v5 (which reads mj_rnePostConstraint's output) through resets: the state does not
    record who stepped which env."""
    rng = np.random.default_rng(0)
    a = MujocoBatchEnv("Ant-v5", 4, 2, threads=capture)
    a.reset()
    for _ in range(200):
        a.step(rng.uniform(-1, 1, (4, 8)))
    state = a.get_state()
    b = MujocoBatchEnv("Ant-v5", 4, 9, threads=restore)
    b.set_state(state)
    ends = 0
    for t in range(800):
        act = rng.uniform(-1, 1, (4, 8))
        x, y = a.step(act), b.step(act)
        assert x.obs.tobytes() == y.obs.tobytes() and x.reward.tobytes() == y.reward.tobytes(), t
        ends += len(x.episode_returns)
    assert ends >= 1
    with pytest.raises(ValueError, match=r"physics of shape \(4, \d+\); these 3 envs need \(3, \d+\)"):
        MujocoBatchEnv("Ant-v5", 3, 0, threads=restore).set_state(state)
    a.close()
    b.close()
