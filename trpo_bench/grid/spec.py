"""Grid files: read, expand into runs, check every run, select runs (schema in docs/grids.md).

Every problem is reported at once, each naming the file and the field it comes from; a
problem found in many runs is reported once.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from trpo_bench.config import (
    DEFAULTS,
    SETTINGS,
    ConfigError,
    RunConfig,
    check,
    check_env_id,
    coerce,
    prepare,
    read_yaml,
    suggest,
)
from trpo_bench.grid.slurm_options import SlurmOptions, parse_section
from trpo_bench.store import make_run_id, safe_name

TOP_LEVEL_KEYS = ("name", "description", "base", "axes", "seeds", "include", "exclude", "overrides", "slurm")


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its id, its complete config and its values of the grid's axes."""

    run_id: str
    config: RunConfig
    axes: dict[str, Any]


@dataclass
class Grid:
    name: str
    source: str
    axes: dict[str, list[Any]]  # every axis (declared, or added by an include entry) -> values in order
    seeds: list[int]
    runs: list[GridRun]  # combination-major: all seeds of a combination together
    warnings: list[str] = field(default_factory=list)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)  # the file's ``slurm:`` section

    def record(self) -> dict[str, Any]:
        """The content of ``grid.json`` (read by the analysis package)."""
        return {"name": self.name, "source": self.source, "axes": self.axes, "seeds": self.seeds,
                "runs": [r.run_id for r in self.runs]}


class _Problems:
    """Ordered, de-duplicated ``<file>: <field>: <message>`` lines."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def add(self, where: str, message: str) -> None:
        line = f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}"
        if line not in self._seen:
            self._seen.add(line)
            self.lines.append(line)


_BAD = object()  # a value that failed its check (already reported)


def _plain(value: Any) -> Any:
    """JSON-friendly form of a setting value (tuples become lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def value_key(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True)


def _setting_value(key: Any, value: Any, where: str, problems: _Problems) -> Any:
    """The coerced value of one setting, or _BAD after reporting why."""
    if key == "seed":
        problems.add(where, "'seed' is set by the top-level 'seeds' (a count, or a list of seeds)")
        return _BAD
    if key not in SETTINGS:
        problems.add(where, f"unknown setting '{key}'{suggest(str(key))}")
        return _BAD
    try:
        return coerce(key, value)
    except ValueError as err:
        problems.add(where, f"'{key}': {err}")
        return _BAD


def _settings_map(data: Any, where: str, problems: _Problems, allow_empty: bool = True) -> dict[str, Any]:
    """A mapping of settings, each coerced; bad entries are reported and left out."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.add(where, f"expected a mapping of settings, got {type(data).__name__}")
        return {}
    if not data and not allow_empty:
        problems.add(where, "is empty")
    out = {}
    for key, value in data.items():
        v = _setting_value(key, value, f"{where}.{key}", problems)
        if v is not _BAD:
            out[key] = v
    return out


def _alternatives(key: str, value: Any) -> list[Any]:
    """A match value is one value or a list of alternatives. For list-valued settings
    (hidden_sizes) a list of lists is the alternatives, a list of numbers one value."""
    if isinstance(DEFAULTS.to_dict().get(key), list):
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
            return list(value)
        return [value]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _match_map(data: Any, where: str, problems: _Problems) -> dict[str, list[Any]]:
    """``{setting: value or [alternatives]}`` with every alternative coerced."""
    if not isinstance(data, Mapping) or not data:
        problems.add(where, "expected a non-empty mapping {setting: value or [values]}")
        return {}
    out: dict[str, list[Any]] = {}
    for key, value in data.items():
        alts = []
        for i, alt in enumerate(_alternatives(str(key), value)):
            sub = f"{where}.{key}" if len(_alternatives(str(key), value)) == 1 else f"{where}.{key}[{i}]"
            v = _setting_value(key, alt, sub, problems)
            if v is _BAD or not _valid_alone(key, v, sub, problems):
                break
            alts.append(v)
        else:
            out[key] = alts
    return out


def _valid_alone(key: str, value: Any, where: str, problems: _Problems) -> bool:
    """A match value no run could have (max_kl: -1, an unknown env id) is a typo, not a no-op."""
    own = [p.message for p in check(DEFAULTS.replace(**{key: value}), check_env=False) if key in p.fields]
    if key == "env_id":
        own += [m for m in [check_env_id(value)] if m]
    for m in own:
        problems.add(where, m)
    return not own


def _matches(match: Mapping[str, list[Any]], values: Mapping[str, Any]) -> bool:
    return all(value_key(values.get(k, getattr(DEFAULTS, k))) in {value_key(a) for a in alts}
               for k, alts in match.items())


def _seeds(data: Any, problems: _Problems) -> list[int]:
    if data is None:
        return [0]
    if isinstance(data, int) and not isinstance(data, bool):
        if data < 1:
            problems.add("seeds", f"a count of seeds must be >= 1; got {data}")
            return []
        return list(range(data))
    if isinstance(data, list) and data:
        out = []
        for i, s in enumerate(data):
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                problems.add(f"seeds[{i}]", f"a seed must be an integer >= 0; got {s!r}")
            elif s in out:
                problems.add(f"seeds[{i}]", f"seed {s} is listed twice")
            else:
                out.append(s)
        return out
    problems.add("seeds", f"expected a count (3) or a list of seeds ([0, 1, 2]); got {data!r}")
    return []


def _attribute(fields: tuple[str, ...] | list[str], where: dict[str, str]) -> str:
    """The places in the file that the settings of a config problem come from."""
    places = list(dict.fromkeys(where[n] for n in fields if n in where))
    return ", ".join(places) if places else "base"


def load_grid(path: str | Path, check_envs: bool = True) -> Grid:
    """Read and expand a grid file; raise ConfigError listing every problem."""
    source = str(path)
    data = read_yaml(path)
    return expand(data, source, default_name=Path(path).stem, check_envs=check_envs)


def expand(data: Any, source: str = "<grid>", default_name: str = "grid", check_envs: bool = True) -> Grid:
    """Expand a parsed grid file into its runs (see docs/grids.md); raise ConfigError."""
    problems = _Problems(source)
    warnings: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"{source}: expected a mapping at the top level (name, base, axes, seeds, ...), "
                           f"got {type(data).__name__}"], source)

    # --- structure: every section checked, every value coerced, all problems kept
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            if key in SETTINGS:
                hint = f" ('{key}' is a run setting: put it under 'base' or 'axes')"
            else:
                close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (expected: {', '.join(TOP_LEVEL_KEYS)})"
            problems.add(str(key), f"unknown top-level key '{key}'{hint}")

    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or safe_name(name) != name or name.startswith("."):
        problems.add("name", f"a grid name must be non-empty letters, digits and . _ = + - ; got {name!r}")
        name = safe_name(str(name)) or "grid"

    base = _settings_map(data.get("base"), "base", problems)

    axes_raw = data.get("axes") or {}
    axes: dict[str, list[tuple[int, Any]]] = {}  # axis -> [(index in the file, value)]
    if not isinstance(axes_raw, Mapping):
        problems.add("axes", f"expected a mapping {{setting: [values]}}, got {type(axes_raw).__name__}")
        axes_raw = {}
    for key, values in axes_raw.items():
        if not isinstance(values, list) or not values:
            problems.add(f"axes.{key}", f"expected a non-empty list of values, got {values!r}"
                         + (f" (write [{values}])" if not isinstance(values, list) else ""))
            continue
        good: list[tuple[int, Any]] = []
        for i, v in enumerate(values):
            c = _setting_value(key, v, f"axes.{key}[{i}]", problems)
            if c is _BAD:
                if key not in SETTINGS or key == "seed":
                    break  # one report for the axis name is enough
                continue
            if value_key(c) in {value_key(g) for _, g in good}:
                problems.add(f"axes.{key}[{i}]", f"value {v!r} is listed twice")
                continue
            good.append((i, c))
        if good and (key in SETTINGS and key != "seed"):
            axes[key] = good

    seeds = _seeds(data.get("seeds"), problems)
    slurm = parse_section(data.get("slurm"), problems.add)

    def entries(section: str) -> list[Any]:
        raw = data.get(section) or []
        if not isinstance(raw, list):
            problems.add(section, f"expected a list of mappings, got {type(raw).__name__}")
            return []
        return raw

    includes = [_settings_map(e, f"include[{i}]", problems, allow_empty=False)
                for i, e in enumerate(entries("include"))]
    excludes = [_match_map(e, f"exclude[{i}]", problems) for i, e in enumerate(entries("exclude"))]
    overrides: list[tuple[dict[str, list[Any]], dict[str, Any]]] = []
    for i, e in enumerate(entries("overrides")):
        where = f"overrides[{i}]"
        if not isinstance(e, Mapping):
            problems.add(where, f"expected a mapping {{match: {{...}}, set: {{...}}}}, got {type(e).__name__}")
            continue
        for k in e:
            if k not in ("match", "set"):
                problems.add(f"{where}.{k}", f"unknown key '{k}' (an override has 'match' and 'set')")
        match = _match_map(e.get("match"), f"{where}.match", problems)
        settings = _settings_map(e.get("set"), f"{where}.set", problems, allow_empty=False)
        for k in list(settings):
            if k in axes_raw:
                problems.add(f"{where}.set.{k}", f"'{k}' is a grid axis; an override would make runs of "
                                                 "different axis values identical")
                del settings[k]
        overrides.append((match, settings))

    # --- combinations: the product minus exclusions, plus inclusions
    combos: list[tuple[dict[str, Any], dict[str, str]]] = []  # (values, where each value comes from)
    names = list(axes)
    hits = [0] * len(excludes)
    for picks in itertools.product(*(axes[k] for k in names)):
        values = {k: v for k, (_, v) in zip(names, picks)}
        where = {k: f"axes.{k}[{i}]" for k, (i, _) in zip(names, picks)}
        full = {**base, **values}
        dropped = False
        for j, ex in enumerate(excludes):
            if ex and _matches(ex, full):
                hits[j] += 1
                dropped = True
        if not dropped:
            combos.append((values, where))
    for j, n in enumerate(hits):
        if n == 0 and excludes[j]:
            warnings.append(f"{source}: exclude[{j}] matches no combination of the axes")
    for i, inc in enumerate(includes):
        if inc:
            combos.append((dict(inc), {k: f"include[{i}].{k}" for k in inc}))

    # --- runs: base, then matching overrides, then the combination's own values, for every seed
    override_hits = [0] * len(overrides)
    candidates: list[tuple[RunConfig, dict[str, str]]] = []
    for values, where_combo in combos:
        merged, where = dict(base), {k: f"base.{k}" for k in base}
        full = {**base, **values}
        for j, (match, settings) in enumerate(overrides):
            if match and _matches(match, full):
                override_hits[j] += 1
                for k, v in settings.items():
                    if k not in values:
                        merged[k], where[k] = v, f"overrides[{j}].set.{k}"
        merged.update(values)
        where.update(where_combo)
        for seed in seeds:
            cfg = DEFAULTS.replace(**merged, seed=seed)
            for problem in check(cfg, check_env=False):
                problems.add(_attribute(problem.fields, where), problem.message)
            candidates.append((cfg, where))
    for j, n in enumerate(override_hits):
        if n == 0 and overrides[j][0]:
            warnings.append(f"{source}: overrides[{j}] matches no combination")
    if not candidates and not problems.lines:
        problems.add("", "the grid has no runs (every combination excluded?)")

    if check_envs:
        _check_envs(candidates, problems)

    # --- axes of the grid, run ids from the axes that vary
    grid_axes = list(names)
    for inc in includes:
        grid_axes += [k for k in inc if k not in grid_axes]
    axis_values: dict[str, list[Any]] = {k: [] for k in grid_axes}
    for cfg, _ in candidates:
        for k in grid_axes:
            v = _plain(getattr(cfg, k))
            if value_key(v) not in {value_key(x) for x in axis_values[k]}:
                axis_values[k].append(v)
    id_keys = [k for k in grid_axes if len(axis_values[k]) > 1]

    runs: dict[str, GridRun] = {}
    for cfg, where in candidates:
        rid = make_run_id(cfg, keys=id_keys)
        run = GridRun(rid, cfg, {k: _plain(getattr(cfg, k)) for k in grid_axes})
        if rid in runs:
            if runs[rid].config != cfg:
                problems.add(_attribute(list(where), where),
                             f"two combinations get the same run id '{rid}' with different settings")
            continue  # an include entry repeating a combination of the product
        runs[rid] = run

    if problems.lines:
        raise ConfigError(problems.lines, source)
    return Grid(name=name, source=source, axes=axis_values, seeds=seeds, runs=list(runs.values()), warnings=warnings,
                slurm=slurm)


def _check_envs(candidates: list[tuple[RunConfig, dict[str, str]]], problems: _Problems) -> None:
    """Each env id once: registered, and with spaces the policies support (config.prepare)."""
    seen: dict[str, str] = {}
    for cfg, where in candidates:
        seen.setdefault(cfg.env_id, where.get("env_id", "base.env_id"))
    for env_id, where in seen.items():
        problem = check_env_id(env_id)
        if problem:
            problems.add(where, problem)
            continue
        try:
            prepare(DEFAULTS.replace(env_id=env_id))
        except ConfigError as err:
            for p in err.problems:
                problems.add(where, p)
        except Exception as err:  # an env that cannot even be built
            problems.add(where, f"'env_id' {env_id!r} cannot be created: {type(err).__name__}: {err}")


def select(runs: list[GridRun], pattern: str | None) -> list[GridRun]:
    """Runs whose id matches ``pattern``: comma-separated globs; a pattern without
    ``* ? [`` matches as a substring (``--only trpo`` selects every TRPO run)."""
    if not pattern:
        return list(runs)
    globs = [p.strip() for p in pattern.split(",") if p.strip()]
    globs = [g if any(c in g for c in "*?[") else f"*{g}*" for g in globs]
    return [r for r in runs if any(fnmatch.fnmatchcase(r.run_id, g) for g in globs)]
