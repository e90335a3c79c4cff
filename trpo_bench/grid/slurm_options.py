"""SLURM options of a grid: the grid file's ``slurm:`` section and the command line, checked
against the cluster before anything is submitted (partition, time limit, CPUs, memory)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

# name in the grid file's ``slurm:`` section -> command-line option
OPTIONS = {"partition": "--partition", "time": "--time", "cpus_per_run": "--cpus-per-run", "mem": "--mem",
           "account": "--account", "qos": "--qos", "sbatch": "--sbatch"}
_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_MEM_UNIT_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}


@dataclass
class SlurmOptions:
    """What each array task asks SLURM for; ``origin`` names where each value was set."""

    partition: str | None = None
    time: str | None = None  # SLURM's syntax: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
    cpus_per_run: int = 1
    mem: str | None = None  # per run, SLURM's syntax: 4G, 500M
    account: str | None = None
    qos: str | None = None
    sbatch: list[str] = field(default_factory=list)  # extra #SBATCH lines: "--constraint=avx512"
    origin: dict[str, str] = field(default_factory=dict)

    def where(self, name: str) -> str:
        return self.origin.get(name, OPTIONS[name])


def time_minutes(text: str) -> float | None:
    """SLURM's time syntax in minutes (``D-HH:MM:SS`` and its shorter forms); None if unreadable."""
    m = _TIME.match(text.strip())
    if not m:
        return None
    d, a, b, c = (int(m.group(k)) if m.group(k) is not None else None for k in "dabc")
    if d is not None:  # D-HH[:MM[:SS]]
        return d * 1440 + a * 60 + (b or 0) + (c or 0) / 60
    if c is not None:  # HH:MM:SS
        return a * 60 + b + c / 60
    if b is not None:  # MM:SS
        return a + b / 60
    return float(a)  # minutes


def memory_mb(text: str) -> float | None:
    if not _MEM.match(text.strip()):
        return None
    number = re.match(r"[\d.]+", text.strip()).group(0)
    unit = text.strip()[len(number):][:1].upper() or "M"  # SLURM's default unit is megabytes
    return float(number) * _MEM_UNIT_MB[unit]


def _check_value(name: str, value: Any, where: str, problem: Callable[[str, str], None]) -> Any:
    """The value of one option, or None after reporting why it is unusable."""
    if name == "cpus_per_run":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problem(where, f"CPUs per run must be an integer >= 1; got {value!r}")
            return None
        return value
    if name == "sbatch":
        lines = value if isinstance(value, list) else [value]
        bad = [x for x in lines
               if not isinstance(x, str) or not x.strip().removeprefix("#SBATCH").strip().startswith("-")]
        if bad:
            problem(where, f"extra #SBATCH lines are sbatch options such as '--constraint=avx512'; got {bad[0]!r}")
            return None
        return [x.strip().removeprefix("#SBATCH").strip() for x in lines]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        problem(where, f"expected a non-empty string; got {value!r}")
        return None
    value = str(value).strip()
    if name == "time" and (time_minutes(value) or 0) <= 0:
        problem(where, f"time limit {value!r} is not a positive SLURM time "
                       "(minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
        return None
    if name == "mem" and memory_mb(value) is None:
        problem(where, f"memory {value!r} is not a SLURM size such as 4G or 500M")
        return None
    return value


def parse_section(data: Any, problem: Callable[[str, str], None]) -> SlurmOptions:
    """The grid file's ``slurm:`` section; problems go to ``problem(field, message)``."""
    opts = SlurmOptions()
    if data is None:
        return opts
    if not isinstance(data, Mapping):
        problem("slurm", f"expected a mapping of SLURM options ({', '.join(OPTIONS)}); got {type(data).__name__}")
        return opts
    for key, value in data.items():
        if key not in OPTIONS:
            problem(f"slurm.{key}", f"unknown SLURM option '{key}' (expected: {', '.join(OPTIONS)})")
            continue
        checked = _check_value(key, value, f"slurm.{key}", problem)
        if checked is not None:
            setattr(opts, key, checked)
            opts.origin[key] = f"slurm.{key}"
    return opts


def with_command_line(opts: SlurmOptions, args, source: str) -> tuple[SlurmOptions, list[str]]:
    """The grid file's options, overridden by those given on the command line; and the problems."""
    problems: list[str] = []
    out = SlurmOptions(**{f.name: getattr(opts, f.name) for f in fields(SlurmOptions)})
    out.origin = {k: f"{source}: {v}" for k, v in opts.origin.items()}
    for name, flag in OPTIONS.items():
        value = getattr(args, name, None)
        if value is None or value == []:
            continue
        checked = _check_value(name, value, flag, lambda where, msg: problems.append(f"{where}: {msg}"))
        if checked is not None:
            setattr(out, name, checked)
            out.origin[name] = flag
    return out, problems


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def partition_info(name: str | None) -> dict[str, str] | None:
    """``scontrol show partition`` of ``name`` (the default partition when None) as a dict."""
    res = _run(["scontrol", "show", "partition", "-o"] + ([name] if name else []))
    if res.returncode != 0:
        return None
    for line in res.stdout.splitlines():
        info = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if name or info.get("Default") == "YES":
            return info
    return None


def _node_limits(nodes: str) -> tuple[int, float]:
    """Largest CPU count and memory (MB) of one node in ``nodes`` (a SLURM host list)."""
    res = _run(["sinfo", "-h", "-N", "-n", nodes, "-o", "%c %m"])
    cpus, mem = 0, 0.0
    for line in res.stdout.split("\n"):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            cpus = max(cpus, int(parts[0]))
            mem = max(mem, float(parts[1].rstrip("+")) if parts[1].rstrip("+").isdigit() else 0.0)
    return cpus, mem


def check_cluster(opts: SlurmOptions) -> list[str]:
    """What the cluster would refuse, each naming the option; empty when it can be submitted.
    Ends with ``sbatch --test-only`` of the same options, which submits nothing."""
    missing = [c for c in ("sbatch", "squeue", "scontrol", "sinfo", "srun") if shutil.which(c) is None]
    if missing:
        return [f"--backend slurm: {', '.join(missing)} not found; launch from a node with the SLURM client commands"]
    info = partition_info(opts.partition)
    if info is None:
        res = _run(["sinfo", "-h", "-o", "%R"])
        known = sorted({p.strip() for p in res.stdout.split()}) if res.returncode == 0 else []
        what = f"unknown partition {opts.partition!r}" if opts.partition else "the cluster has no default partition"
        where = opts.where("partition")
        return [f"{where}: {what} (partitions: {', '.join(known) or 'none found'})"]
    problems = []
    part = info.get("PartitionName", opts.partition)
    max_time = info.get("MaxTime", "UNLIMITED")
    if opts.time is not None and max_time not in ("UNLIMITED", "INFINITE"):
        limit = time_minutes(max_time)
        if limit is not None and time_minutes(opts.time) > limit:
            problems.append(f"{opts.where('time')}: time limit {opts.time} exceeds partition {part}'s "
                            f"MaxTime {max_time}")
    cpus, mem = _node_limits(info.get("Nodes", ""))
    if cpus and opts.cpus_per_run > cpus:
        problems.append(f"{opts.where('cpus_per_run')}: {opts.cpus_per_run} CPUs per run, but the largest node of "
                        f"partition {part} has {cpus}")
    if opts.mem is not None and mem and memory_mb(opts.mem) > mem:
        problems.append(f"{opts.where('mem')}: {opts.mem} per run, but the largest node of partition {part} has "
                        f"{math.floor(mem)}M")
    if problems:
        return problems
    res = _run(["sbatch", "--test-only", *sbatch_flags(opts), "--wrap", "true"])
    if res.returncode != 0:
        reason = " ".join(line.strip() for line in res.stderr.splitlines() if line.strip())
        given = ", ".join(f"{opts.where(k)}" for k in OPTIONS if getattr(opts, k) not in (None, [], 1))
        return [f"sbatch --test-only refuses the SLURM options ({given or 'defaults'}): {reason}"]
    return []


def sbatch_flags(opts: SlurmOptions) -> list[str]:
    """The options as sbatch flags (for ``--test-only``; submission renders the same through submitit)."""
    flags = [f"--cpus-per-task={opts.cpus_per_run}"]
    for name in ("partition", "time", "mem", "account", "qos"):
        if getattr(opts, name) is not None:
            flags.append(f"--{name}={getattr(opts, name)}")
    return flags + list(opts.sbatch)


def submitit_parameters(opts: SlurmOptions) -> dict[str, Any]:
    """``submitit.SlurmExecutor.update_parameters`` arguments for these options."""
    extra: dict[str, Any] = {"requeue": True}  # preempted and requeued tasks start again (JobRequeue may be 0)
    extra["time"] = opts.time if opts.time is not None else _partition_default_time(opts.partition)
    if opts.mem is not None:
        extra["mem"] = opts.mem
    for line in opts.sbatch:
        key, _, value = line.lstrip("-").partition("=")
        extra[key] = value if value else True
    params: dict[str, Any] = {"cpus_per_task": opts.cpus_per_run, "additional_parameters": extra}
    for name in ("partition", "account", "qos"):
        if getattr(opts, name) is not None:
            params[name] = getattr(opts, name)
    return params


def _partition_default_time(partition: str | None) -> str:
    """No --time given: the partition's DefaultTime, else its MaxTime (submitit would ask for 5 minutes)."""
    info = partition_info(partition) or {}
    for key in ("DefaultTime", "MaxTime"):
        if info.get(key) not in (None, "NONE", "UNLIMITED", "INFINITE"):
            return info[key]
    return "UNLIMITED"


def add_slurm_arguments(parser) -> None:
    """``trpo-bench grid``'s SLURM options (each also settable in the grid file's ``slurm:`` section)."""
    g = parser.add_argument_group("SLURM (--backend slurm; the grid file's slurm: section sets the same)")
    g.add_argument("--partition", metavar="NAME", help="partition (default: the cluster's default partition)")
    g.add_argument("--time", help="time limit per run: minutes, HH:MM:SS or D-HH:MM (default: the partition's)")
    g.add_argument("--cpus-per-run", dest="cpus_per_run", type=int, metavar="N", help="CPUs per run (default: 1)")
    g.add_argument("--mem", help="memory per run, e.g. 4G (default: the cluster's)")
    g.add_argument("--account", help="account to charge")
    g.add_argument("--qos", help="quality of service")
    g.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                   help="an extra #SBATCH line, e.g. --sbatch=--constraint=avx512 (repeatable)")
    g.add_argument("--detach", action="store_true",
                   help="submit, print the job id and exit; the same command later attaches to the tasks")
