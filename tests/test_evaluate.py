"""trpo-bench evaluate: the final policy's deterministic return, written to eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trpo_bench.cli import main
from trpo_bench.config import build_config
from trpo_bench.envs import VecEnv
from trpo_bench.evaluate import EVAL_SEED_OFFSET, evaluate_policy
from trpo_bench.store import RunStore
from trpo_bench.train import Agent

QUICK = ["--set", "steps_per_update=512", "--set", "num_envs=4", "--wandb", "disabled", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--env", "CartPole-v1", "--steps", "4096", "--seed", "1", "--out", str(out), *QUICK]) == 0
    (run,) = [p.parent for p in out.rglob("status.json")]
    return run


def test_eval_json_holds_the_deterministic_returns_of_the_final_policy(trained, capsys):
    assert main(["evaluate", str(trained), "--episodes", "3"]) == 0
    assert "1 evaluated, 0 already current, 0 skipped" in capsys.readouterr().out
    record = json.loads((trained / "eval.json").read_text())
    assert record["deterministic"] is True and record["episodes"] == 3 and record["update"] == 8
    assert len(record["returns"]) == len(record["lengths"]) == 3
    # CartPole pays 1 per step: each return equals its episode's length
    assert record["returns"] == [float(n) for n in record["lengths"]]
    assert record["return_mean"] == pytest.approx(np.mean(record["returns"]))

    # the same numbers from the checkpoint by hand: mean action, the run's seed + offset
    saved = RunStore(trained).read_config()
    cfg, problems = build_config(saved["config"])
    assert not problems
    venv = VecEnv(cfg.env_id, 1, cfg.seed)
    agent = Agent(cfg, venv)
    venv.close()
    agent.load_state_dict(RunStore(trained).load_checkpoint()["agent"])
    returns, lengths = evaluate_policy(agent, cfg.env_id, 3, cfg.seed + EVAL_SEED_OFFSET)
    assert (returns, lengths) == (record["returns"], record["lengths"])


def test_a_current_evaluation_is_kept_and_force_repeats_it_identically(trained, capsys):
    assert main(["evaluate", str(trained), "--episodes", "2"]) == 0
    first = (trained / "eval.json").read_bytes()
    mtime = (trained / "eval.json").stat().st_mtime_ns
    assert main(["evaluate", str(trained.parent), "--episodes", "2"]) == 0
    assert "0 evaluated, 1 already current" in capsys.readouterr().out
    assert (trained / "eval.json").stat().st_mtime_ns == mtime
    assert main(["evaluate", str(trained), "--episodes", "2", "--force"]) == 0
    assert (trained / "eval.json").read_bytes() == first


def test_unfinished_runs_and_exported_copies_are_skipped(trained, tmp_path, capsys):
    assert main(["evaluate", str(trained), "--episodes", "2"]) == 0
    assert main(["export", str(trained.parent), str(tmp_path / "results")]) == 0
    copy = tmp_path / "results" / trained.name
    assert json.loads((copy / "eval.json").read_text())["episodes"] == 2  # export keeps eval.json
    capsys.readouterr()
    assert main(["evaluate", str(copy)]) == 0
    assert f"{trained.name}: skipped, no checkpoint.pt" in capsys.readouterr().out

    status = json.loads((copy / "status.json").read_text())
    (copy / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    assert main(["evaluate", str(copy)]) == 0
    assert "skipped, the run is interrupted" in capsys.readouterr().out


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "holds no runs" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--episodes", "0"]) == 2
    assert "--episodes must be >= 1" in capsys.readouterr().err


def test_an_evaluation_written_without_reward_terms_is_redone_with_the_same_returns(trained, capsys):
    assert main(["evaluate", str(trained), "--episodes", "2"]) == 0
    record = json.loads((trained / "eval.json").read_text())
    assert record["reward_terms"] == {}  # CartPole reports none
    (trained / "eval.json").write_text(json.dumps({k: v for k, v in record.items() if k != "reward_terms"}))
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--episodes", "2"]) == 0
    assert "1 evaluated, 0 already current" in capsys.readouterr().out
    assert json.loads((trained / "eval.json").read_text()) == record


def test_reward_terms_pass_the_env_through_and_add_up_to_each_episode_s_return():
    """Hopper-v5 with random actions over several episodes: the wrapped env gives the same bits
    as the bare one, and forward + ctrl + survive summed over an episode is its return."""
    from trpo_bench.envs import make_env
    from trpo_bench.evaluate import RewardTerms, mean_terms

    bare, wrapped = make_env("Hopper-v5"), RewardTerms(make_env("Hopper-v5"))
    rng = np.random.default_rng(0)
    returns, ret = [], 0.0
    for env in (bare, wrapped):
        env.reset(seed=3)
    while len(returns) < 4:
        a = rng.uniform(-1, 1, size=3)
        (o1, r1, te1, tr1, _), (o2, r2, te2, tr2, _) = bare.step(a), wrapped.step(a)
        assert np.array_equal(o1, o2) and (r1, te1, tr1) == (r2, te2, tr2)
        ret += r1
        if te1 or tr1:
            returns.append(ret)
            ret = 0.0
            bare.reset()
            wrapped.reset()
    assert [set(e) for e in wrapped.episodes] == [{"reward_forward", "reward_ctrl", "reward_survive"}] * 4
    for terms, r in zip(wrapped.episodes, returns):
        assert sum(terms.values()) == pytest.approx(r, rel=1e-12, abs=1e-9)
        assert terms["reward_ctrl"] < 0 < terms["reward_survive"]
    mean = mean_terms(wrapped.episodes)
    assert mean["reward_forward"] == pytest.approx(np.mean([e["reward_forward"] for e in wrapped.episodes]))


def test_a_mujoco_run_s_evaluation_records_where_its_return_comes_from(tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--env", "Hopper-v5", "--steps", "1024", "--out", str(out), *QUICK]) == 0
    (run,) = [p.parent for p in out.rglob("status.json")]
    assert main(["evaluate", str(run), "--episodes", "2"]) == 0
    record = json.loads((run / "eval.json").read_text())
    assert set(record["reward_terms"]) == {"reward_forward", "reward_ctrl", "reward_survive"}
    assert sum(record["reward_terms"].values()) == pytest.approx(record["return_mean"], rel=1e-12)
