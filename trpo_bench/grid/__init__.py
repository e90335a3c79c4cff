"""Experiment grids: expand a YAML file into runs, check them all, train them in parallel.

A grid file (schema in docs/grids.md) is a base config, axes whose cartesian product gives
the combinations, include / exclude lists, per-combination overrides and seeds. Every run is
checked before anything starts; problems name the file and the field.

    spec       the grid file: reading, expansion, validation, selection of runs
    state      what the run store says about a grid's runs: states, summaries, locks, stop requests
    worker     what runs inside a worker process or task: one run, its output in train.log
    executors  the :class:`Executor` protocol the launcher schedules through; local process pool, Ray
    slurm      the SLURM executor (one submitit job array per launch) and what an array task runs
    slurm_options  the grid file's ``slurm:`` section and the command line's, checked against the cluster
    progress   the grid's progress line and summary table
    launch     the ``trpo-bench grid`` command: scheduling, retries, summary, analysis
"""

from trpo_bench.grid.launch import main
from trpo_bench.grid.spec import Grid, GridRun, expand, load_grid, select
from trpo_bench.grid.state import run_state
from trpo_bench.grid.worker import run_task

__all__ = ["Grid", "GridRun", "expand", "load_grid", "main", "run_state", "run_task", "select"]
