"""The run-store contract (trpo_bench/rundir.py): one home for names, detection, readers and writes."""

from __future__ import annotations

import os
import stat

import pytest

from analysis import load
from trpo_bench import rundir, store


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_write_respects_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        rundir.atomic_write_text(tmp_path / "a" / "f.json", "{}\n")
        rundir.write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    for p in (tmp_path / "a" / "f.json", tmp_path / "b.json"):
        assert stat.S_IMODE(p.stat().st_mode) == mode
    assert (tmp_path / "a" / "f.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.json", "f.json"]  # no temp file left


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    rundir.atomic_write_text(target, "old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rundir.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        rundir.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_one_copy_of_the_contract():
    assert store.METRIC_COLUMNS is rundir.METRIC_COLUMNS
    assert load.METRIC_COLUMNS is rundir.METRIC_COLUMNS
    assert store.is_run_dir is rundir.is_run_dir and store.atomic_write_bytes is rundir.atomic_write_bytes
    assert not hasattr(load, "atomic_write") and not hasattr(load, "read_metrics")


def test_run_dirs_found_alike_by_both_packages(tmp_path):
    for rel in ("g/run-a", "g/run-b", "other/deep/run-c"):
        rundir.write_json(tmp_path / rel / rundir.CONFIG, {"run_id": rel})
        rundir.write_json(tmp_path / rel / rundir.STATUS, {"state": "done"})
    rundir.write_json(tmp_path / "g" / "run-d" / rundir.CONFIG, {})  # no status.json: a partial run
    rundir.write_json(tmp_path / "g" / "figures" / "x" / rundir.CONFIG, {})
    rundir.write_json(tmp_path / "g" / "figures" / "x" / rundir.STATUS, {})
    expected = [tmp_path / r for r in ("g/run-a", "g/run-b", "other/deep/run-c")]
    assert list(rundir.iter_run_dirs(tmp_path)) == expected
    # analysis also lists the run whose status.json was never written (state unknown)
    assert load.find_run_dirs(tmp_path) == sorted([*expected, tmp_path / "g" / "run-d"])
    assert list(rundir.iter_run_dirs(tmp_path / "g" / "run-a")) == [tmp_path / "g" / "run-a"]


def test_metrics_rows_drop_a_cut_line(tmp_path):
    (tmp_path / rundir.METRICS).write_text("env_steps,update\n10,1\n20,2\n3")
    assert rundir.read_metrics_rows(tmp_path) == [{"env_steps": "10", "update": "1"},
                                                  {"env_steps": "20", "update": "2"}]
    frame = load.metrics_frame(tmp_path / rundir.METRICS)
    assert frame["env_steps"].tolist() == [10, 20]
