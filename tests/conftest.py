"""Shared test set-up."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from slurm_cluster import SlurmCluster, unavailable


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a loaded machine.
    (Training runs set their own thread count from ``torch_threads``.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster on loopback (tests/slurm_cluster.py), up for the whole session;
    SLURM_CONF points the client commands at it. Skipped where it cannot start, except in CI."""
    why = unavailable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM tests: {why}")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))  # short: a Unix socket path lives in it
    cluster = SlurmCluster(root)
    cluster.start()
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fast_figures(monkeypatch):
    """Figures built but written as empty files: for tests of what a report or command writes,
    not of how figures render (test_analysis_plots and test_analysis_figures render them)."""
    from analysis import plots

    def save(fig, out_dir, name, formats=("png", "pdf")):
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{name}.{fmt}" for fmt in formats]
        for p in paths:
            p.write_bytes(b"")
        return paths

    monkeypatch.setattr(plots, "save_figure", save)
