"""Analysis of trpo-bench run stores: loading, statistics, figures, tables, report.

Reads only the run store (``runs/<grid>/<run_id>/``) or W&B history; never
imports ``trpo_bench``. Modules: ``load`` (run store / W&B -> DataFrames),
``stats`` (rliable-style statistics over arrays), ``summary`` (DataFrames ->
arrays), ``plots`` (figures; ``make_all``), ``tables``, ``report``
(``write_report``). Command line: ``python -m analysis plot|report RUNS_DIR``.
"""
