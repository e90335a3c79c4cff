"""Write the speed table of README.md and docs/performance.md from the committed benchmark figures.

    python benchmarks/throughput.py --only raw train --json benchmarks/throughput_batched.json \\
        > benchmarks/throughput_batched_output.txt
    python docs/speed.py            # rewrite the table in both files
    python docs/speed.py --check    # exit 1 when a table is not what the figures say

Every number in the table is read from ``benchmarks/throughput_batched.json``, which the
benchmark writes beside its printed output; tests/test_docs.py fails when a table differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trpo_bench.rundir import atomic_write_text  # noqa: E402

FIGURES = ROOT / "benchmarks" / "throughput_batched.json"
DOCS = (ROOT / "README.md", ROOT / "docs" / "performance.md")
BEGIN = "<!-- speed: written by docs/speed.py from benchmarks/throughput_batched.json; do not edit by hand -->"
END = "<!-- speed: end -->"
TASKS = ("Hopper-v5", "HalfCheetah-v5")
TARGETS = {"physics": {"Hopper-v5": 0.75, "HalfCheetah-v5": 0.55}, "envpool": 1.0}


def _rate(x: dict | None) -> str:
    return "-" if x is None else f"{x['sps']:,.0f}"


def _ratio(r: dict, key: str) -> str:
    x = r["ratios"].get(key)
    return "-" if x is None else f"{x['best']:.2f} ({x['median']:.2f})"


def _ms(r: dict) -> str:
    t = r["train"]
    per = 1e3 * t["settings"]["steps_per_update"] / t["steps"]
    return " / ".join(f"{per * t['phases'][k]:.0f}" for k in ("collect", "policy_update", "value_fit", "other"))


def table(figs: dict) -> str:
    m, rs = figs["machine"], [figs[t] for t in TASKS]
    envs = rs[0]["train"]["settings"]["num_envs"]
    cpus = rs[0]["train"]["settings"]["env_threads"]
    envpool = rs[0]["envpool"]["version"]

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        f"`{figs['command']}` on {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, torch {m['torch']}, "
        f"NumPy {m['numpy']}, gymnasium {m['gymnasium']}, MuJoCo {m['mujoco']}; load "
        + ", ".join(f"{r['load'].removeprefix('load ')} ({t})" for t, r in zip(TASKS, rs))
        + f". Steps per wall-clock second, best of {figs['rounds']} interleaved rounds; TRPO runs "
        f"{figs['steps']:,} steps at the defaults. Ratios: best over best (median of the rounds' own pairs).",
        "",
        "| steps/s | " + " | ".join(TASKS) + " |",
        "| --- | " + " | ".join("---:" for _ in TASKS) + " |",
        row("MuJoCo physics alone (gymnasium's simulator call, timed inside random-action steps)",
            [_rate(r["raw"]["physics"]) for r in rs]),
        row(f"EnvPool {envpool}, {envs} envs, random actions, 1 thread", [_rate(r["envpool"]) for r in rs]),
        row(f"EnvPool {envpool}, {envs} envs, random actions, {cpus} threads",
            [_rate(r.get("envpool_threads")) for r in rs]),
        row(f"batched MuJoCo path, {envs} envs, random actions, 1 CPU", [_rate(r["raw"]["batched"]) for r in rs]),
        row(f"batched MuJoCo path, {envs} envs, random actions, {cpus} CPUs",
            [_rate(r["raw"]["batched_threads"]) for r in rs]),
        row(f"**trpo-bench TRPO, defaults ({cpus} CPUs: env slices and the value fit in sidecars)**",
            [f"**{_rate(r['train'])}**" for r in rs]),
        row("trpo-bench TRPO, defaults, on 1 CPU (`TRPO_BENCH_CPUS=1`, a grid worker's share)",
            [_rate(r.get("train_one_thread")) for r in rs]),
        row("trpo-bench TRPO, defaults, gymnasium's envs (`env_backend: gymnasium`)",
            [_rate(r.get("train_gymnasium")) for r in rs]),
        row("**TRPO / physics alone**; target " + " / ".join(f"{TARGETS['physics'][t]}" for t in TASKS),
            [f"**{_ratio(r, 'train/raw:physics')}**" for r in rs]),
        row("**TRPO / EnvPool, 1 thread**; target above 1", [f"**{_ratio(r, 'train/envpool')}**" for r in rs]),
        row(f"TRPO / EnvPool, {cpus} threads", [_ratio(r, "train/envpool_threads") for r in rs]),
        row("TRPO on 1 CPU / physics alone", [_ratio(r, "train_one_thread/raw:physics") for r in rs]),
        row("TRPO on 1 CPU / EnvPool, 1 thread", [_ratio(r, "train_one_thread/envpool") for r in rs]),
        row("ms per update, defaults: collect / policy update / value fit beyond it / other", [_ms(r) for r in rs]),
    ]
    return "\n".join(lines)


def block_of(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a table differs")
    args = parser.parse_args(argv)
    new = table(json.loads(FIGURES.read_text()))
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        if block_of(text) == new:
            continue
        stale.append(doc)
        if not args.check:
            start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
            atomic_write_text(doc, text[:start] + "\n" + new + "\n" + text[end:])
            print(doc)
    if args.check and stale:
        print(f"{' and '.join(str(d.relative_to(ROOT)) for d in stale)} differ from {FIGURES.relative_to(ROOT)}: "
              "run python docs/speed.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
