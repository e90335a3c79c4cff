"""Analysis of trpo-bench run stores: loading, statistics, figures, tables, report.

Reads only the run store (``runs/<grid>/<run_id>/``) or W&B history; of ``trpo_bench`` it
imports only ``trpo_bench.rundir``, the run-store contract. Modules: ``load`` and ``compare``
(run stores, W&B, baselines -> DataFrames), ``stats`` (rliable-style statistics over arrays),
``summary`` (methods; DataFrames -> arrays), ``results`` (every statistic once, results.csv),
``curves``, ``trust_region``, ``aggregates`` and ``style`` (figures), ``plots`` (``make_all``),
``tables``, ``report`` (``write_report``). Command line:
``python -m analysis plot|report SOURCE [SOURCE ...] [--baseline CSV]``.
"""
