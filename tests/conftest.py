"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a loaded machine.
    (Training runs set their own thread count from ``torch_threads``.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
