"""Grid files: parse a TOML grid and expand it into a flat, deterministic list of run configs.

A grid file::

    description = "what this grid is for"
    seeds = [0, 1]

    [train]            # TrainConfig fields
    epochs = 5
    [model]            # ModelConfig fields plus the architecture's own options
    arch = "mlp"
    hidden = [512, 512]
    [eval]             # EvalConfig fields

    [[datasets]]       # one table per data set; optional `model` / `train` overrides
    name = "fashion-mnist"
    train_size = 10000

    [[methods]]        # one table per method entry; optional `model` / `train` overrides
    name = "beta-vae"
    beta = [0.1, 0.2]  # a list sweeps (for a list-typed field: a list of lists)

    [[methods]]
    name = "*"         # every registered method (plugins included) that applies to the model, defaults

Expansion order: datasets x methods x hyperparameter combinations x seeds. Every field is checked
against the registries and the config dataclasses (``benchmark.config``) before anything runs:
names, types, the valid range of every number (declared on the config fields, the
architectures' options and the methods' ``ranges``; every float finite), each architecture
against each data set's shape, and the schedules a method names (a hyperparameter
``X_schedule`` with its options ``X_schedule_options``); errors name the file and the field.
The grid's runs, each with the hyperparameters its entry names (:meth:`Grid.runs`), are what
``run`` writes to ``plan.json`` for the report.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from .data.catalog import DATASETS
from .discovery import METHODS
from .errors import BenchmarkError, GridError, UnknownNameError, check_grid_name
from .headline import Entry, headline_entries
from .ranges import Interval, field_problems
from .ml.likelihoods import LIKELIHOODS
from .ml.archs import ARCHS
from .ml.schedules import SCHEDULES
from .registry import Registry

GRID_DIR = Path(__file__).resolve().parent / "grids"
SEQUENCE_LIKELIHOOD = "categorical"
TOP_LEVEL_KEYS = {"description", "seeds", "train", "model", "eval", "datasets", "methods", "headline"}
OVERRIDE_KEYS = {"model", "train"}
ALL_METHODS = "*"


@dataclass(frozen=True)
class GridRun:
    """One run of a grid and the hyperparameters its ``[[methods]]`` entry sets (a ``"*"`` entry
    sets none): the report names those in its setting labels."""

    config: RunConfig
    named: tuple[str, ...]


@dataclass(frozen=True)
class Grid:
    """A parsed grid file; :meth:`expand` gives its runs (optionally narrowed), :meth:`runs` all of
    them with the hyperparameters each entry names."""

    name: str
    path: Path
    description: str
    data: dict[str, Any]

    def expand(self, methods: list[str] | None = None, datasets: list[str] | None = None,
               seeds: list[int] | None = None, epochs: int | None = None) -> list[RunConfig]:
        """Resolved run configs, optionally narrowed to some methods / data sets, with the
        seeds replaced and the epochs overridden. Unknown names raise UnknownNameError."""
        for name in methods or []:
            METHODS[name]
        for name in datasets or []:
            DATASETS[name]
        return [run.config for run in self.runs(seeds, epochs)
                if not (methods and run.config.method not in methods)
                and not (datasets and run.config.dataset.name not in datasets)]

    def runs(self, seeds: list[int] | None = None, epochs: int | None = None) -> list[GridRun]:
        """Every run of the grid (seeds replaced, epochs overridden), in expansion order, each
        once (entries that resolve to the same config give one run), with the hyperparameters
        its method entry names."""
        runs: dict[str, GridRun] = {}
        method_entries = self._method_entries()
        for ds_index, ds_entry in enumerate(self.data.get("datasets", [])):
            dataset = self._dataset(ds_entry, ds_index)
            for m_index, m_entry, name in method_entries:
                where = f"methods[{m_index}]"
                model = self._model([self.data.get("model", {}), ds_entry.get("model", {}), m_entry.get("model", {})], where)
                self._check_shape(model, dataset, ds_index)
                train = self._section(TrainConfig, [self.data.get("train", {}), ds_entry.get("train", {}), m_entry.get("train", {})], "train")
                if epochs is not None:
                    train.epochs = epochs
                evaluation = self._section(EvalConfig, [self.data.get("eval", {})], "eval")
                named = tuple(k for k in m_entry if k not in OVERRIDE_KEYS | {"name"})
                every = m_entry.get("name") == ALL_METHODS
                for hp in self._sweep(name, m_entry, where):
                    if every and self._refusal(name, hp, model) is not None:
                        continue  # "*": every method that applies to this model
                    self._check_applies(name, hp, model, where, ds_index)
                    for seed in seeds if seeds is not None else self._seeds():
                        run = RunConfig(dataset, name, hp, model, train, evaluation, seed)
                        runs.setdefault(run.run_id, GridRun(run, named))
        return list(runs.values())

    def headline(self, runs: list[GridRun] | None = None) -> tuple[Entry, ...]:
        """The grid's pre-registered headline settings (``headline``, see :mod:`benchmark.headline`),
        checked against its runs (default: all of them)."""
        # The headline names methods and hyperparameters: one seed's runs hold every setting.
        configs = [r.config for r in (runs if runs is not None else self.runs(seeds=self._seeds()[:1]))]
        return headline_entries(self.data.get("headline"), configs, self.error)

    @property
    def builtin(self) -> bool:
        """Whether this is a named grid of ``benchmark/grids/``."""
        return self.path.resolve().parent == GRID_DIR

    @property
    def source(self) -> str:
        """The grid file: relative to the project for a named grid, else its absolute path (what
        tells two grid files of the same name apart)."""
        return f"benchmark/grids/{self.path.name}" if self.builtin else str(self.path.resolve())

    # -- pieces -----------------------------------------------------------------------
    def error(self, field: str, problem: str) -> GridError:
        """The one-line error about ``field`` (unprintable characters of keys shown escaped)."""
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in field)
        return GridError(f"grid file {self.path}: field `{shown}`: {problem}")

    def _seeds(self) -> list[int]:
        seeds = self.data.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
            raise self.error("seeds", f"expected a non-empty list of integers >= 0, got {seeds!r}")
        return seeds

    def _dataset(self, entry: Any, index: int) -> DatasetConfig:
        where = f"datasets[{index}]"
        self._registered_name(entry, where, DATASETS)
        fields = {k: v for k, v in entry.items() if k not in OVERRIDE_KEYS}
        return self._build(DatasetConfig, fields, where)

    def _method_entries(self) -> list[tuple[int, dict, str]]:
        """(index, entry, method name) per method table; ``name = "*"`` stands for every
        registered method with its default hyperparameters."""
        entries = []
        for index, entry in enumerate(self.data.get("methods", [])):
            if isinstance(entry, dict) and entry.get("name") == ALL_METHODS:
                extra = set(entry) - OVERRIDE_KEYS - {"name"}
                if extra:
                    raise self.error(f"methods[{index}]", f'`name = "*"` takes no hyperparameters, got {sorted(extra)}')
                entries += [(index, entry, name) for name in METHODS.names()]
            else:
                entries.append((index, entry, self._registered_name(entry, f"methods[{index}]", METHODS)))
        return entries

    def _registered_name(self, entry: Any, where: str, registry: Registry) -> str:
        """The ``name`` of a ``[[datasets]]`` / ``[[methods]]`` table, checked against ``registry``."""
        if not isinstance(entry, dict) or "name" not in entry:
            raise self.error(where, "expected a table with at least `name = \"...\"`")
        if not isinstance(entry["name"], str):
            raise self.error(f"{where}.name", f"expected a name (a string), got {entry['name']!r}")
        if entry["name"] not in registry:
            raise self.error(f"{where}.name", str(UnknownNameError(registry.kind, entry["name"], registry.names())))
        return entry["name"]

    def _sweep(self, name: str, entry: dict, where: str) -> list[dict[str, Any]]:
        """Every combination of the entry's hyperparameter values, resolved with defaults."""
        cls = METHODS[name].Config
        hints = typing.get_type_hints(cls)
        given = {k: v for k, v in entry.items() if k not in OVERRIDE_KEYS | {"name"}}
        axes = []
        for key, value in given.items():
            if key not in hints:
                valid = ", ".join(f.name for f in dataclasses.fields(cls)) or "(none)"
                raise self.error(f"{where}.{key}", f"{name} has no hyperparameter {key!r}; valid: {valid}")
            swept = isinstance(value, list) and not (_is_list_type(hints[key]) and not _is_nested_list(value))
            if swept and not value:
                raise self.error(f"{where}.{key}", "an empty list sweeps no value; give at least one")
            axes.append([(key, v) for v in value] if swept else [(key, value)])
        ranges = METHODS[name].hyperparameter_ranges()
        combos = []
        for combo in itertools.product(*axes):
            values = dataclasses.asdict(self._build(cls, dict(combo), where, context=name, ranges=ranges))
            self._check_schedules(name, values, where)
            combos.append(values)
        return combos

    def _check_schedules(self, name: str, values: dict[str, Any], where: str) -> None:
        """A hyperparameter ``X_schedule`` names a schedule of :mod:`benchmark.ml.schedules` and
        ``X_schedule_options`` (when the method has it) holds that schedule's options: both are
        checked here, as the method will build the schedule."""
        for key, kind in values.items():
            options_key = f"{key}_options"
            if not key.endswith("_schedule") or not isinstance(kind, str):
                continue
            if kind not in SCHEDULES:
                raise self.error(f"{where}.{key}", f"{name}: {UnknownNameError(SCHEDULES.kind, kind, SCHEDULES.names())}")
            options = values.get(options_key, {})
            if not isinstance(options, dict):
                continue
            if "target" in options:
                raise self.error(f"{where}.{options_key}", f"{name}: `target` is set by the method, not an option")
            self._build(SCHEDULES[kind], {"target": 0.0, **options}, f"{where}.{options_key}",
                        context=f"{name}: schedule {kind!r}")

    def _check_shape(self, model: ModelConfig, dataset: DatasetConfig, index: int) -> None:
        """The architecture must take the data set's examples: sentences for the LSTM archs,
        fixed-size examples for the others, of the shape the catalogue knows."""
        spec, arch = DATASETS[dataset.name], ARCHS[model.arch](**model.options)
        why = None
        if (spec.kind == "sequence") != (arch.kind == "sequence"):
            why = (f"{dataset.name!r} holds {'sentences of token ids' if spec.kind == 'sequence' else spec.kind + 's'} "
                   f"and arch {model.arch!r} takes {'sentences' if arch.kind == 'sequence' else 'fixed-size examples'}"
                   f": use {'an LSTM arch (lstm, lstm-ptb, lstm-yahoo, lstm-small)' if spec.kind == 'sequence' else 'mlp or conv'}")
        elif spec.shape is not None:
            why = arch.shape_problem(spec.shape)
        if why is not None:
            raise self.error("model.arch", f"arch {model.arch!r} cannot take data set {dataset.name!r} "
                                           f"(datasets[{index}]): {why}")

    @staticmethod
    def _refusal(name: str, hp: dict[str, Any], model: ModelConfig) -> str | None:
        """Why method ``name`` with ``hp`` does not apply to ``model`` (``Method.check_model``), or None."""
        cls = METHODS[name]
        return cls.check_model(cls.Config(**hp), model)

    def _check_applies(self, name: str, hp: dict[str, Any], model: ModelConfig, where: str, ds_index: int) -> None:
        """Refuse a method on a model it does not apply to (``Method.check_model``)."""
        why = self._refusal(name, hp, model)
        if why is not None:
            raise self.error(where, f"{name} does not apply to the model of datasets[{ds_index}] "
                                    f"(arch {model.arch!r}): {why}")

    def _model(self, layers: list[dict], where: str) -> ModelConfig:
        merged = {k: v for layer in layers for k, v in _table(layer, "model", self).items()}
        own = {f.name for f in dataclasses.fields(ModelConfig)} - {"options"}
        arch = merged.get("arch", ModelConfig.arch)
        if "likelihood" not in merged and arch in ARCHS and ARCHS[arch].kind == "sequence":
            merged["likelihood"] = SEQUENCE_LIKELIHOOD  # the only one a sentence model has
        config = self._build(ModelConfig, {k: v for k, v in merged.items() if k in own}, "model")
        for kind, registry, value in (("arch", ARCHS, config.arch), ("likelihood", LIKELIHOODS, config.likelihood)):
            if value not in registry:
                raise self.error(f"model.{kind}", str(UnknownNameError(registry.kind, value, registry.names())))
        arch_cls = ARCHS[config.arch]
        if (arch_cls.kind == "sequence") != (config.likelihood == SEQUENCE_LIKELIHOOD):
            raise self.error("model.likelihood", f"arch {config.arch!r} and likelihood {config.likelihood!r} do not go "
                             f"together: likelihood {SEQUENCE_LIKELIHOOD!r} scores sentences, for the LSTM archs only "
                             "(leave it out there), the others score fixed-size examples")
        options = {k: v for k, v in merged.items() if k not in own}
        for key in options:
            if key not in {f.name for f in dataclasses.fields(arch_cls)}:
                valid = sorted(own | {f.name for f in dataclasses.fields(arch_cls)})
                raise self.error(f"model.{key}", f"not a model setting of arch {config.arch!r}; valid: {', '.join(valid)}")
        config.options = dataclasses.asdict(self._build(arch_cls, options, "model"))
        return config

    def _section(self, cls: type, layers: list[dict], name: str):
        merged = {k: v for layer in layers for k, v in _table(layer, name, self).items()}
        return self._build(cls, merged, name)

    def _build(self, cls: type, values: dict[str, Any], where: str, context: str = "",
               ranges: Mapping[str, Interval] | None = None):
        """Instantiate dataclass ``cls`` from ``values``, checking names, types and ranges (the
        ones its fields declare, or ``ranges``: a method's); ``context`` prefixes the messages."""
        prefix = f"{context}: " if context else ""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        checked = {}
        for key, value in values.items():
            if key not in names:
                raise self.error(f"{where}.{key}", f"{prefix}unknown setting; valid: {', '.join(names)}")
            try:
                checked[key] = check_type(value, hints[key])
            except TypeError as exc:
                raise self.error(f"{where}.{key}", f"{prefix}{exc}") from None
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in checked and f.init
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise self.error(where, f"{prefix}missing {', '.join(missing)} (required)")
        try:
            config = cls(**checked)
        except (BenchmarkError, TypeError, ValueError) as exc:  # a missing required field, a check in __post_init__
            raise self.error(where, f"{prefix}{exc}") from None
        for key, why in field_problems(config, ranges):
            raise self.error(f"{where}.{key}", f"{prefix}{why}")
        return config


def _table(value: Any, name: str, grid: Grid) -> dict:
    if not isinstance(value, dict):
        raise grid.error(name, f"expected a table, got {value!r}")
    return value


def _is_list_type(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, tuple)


def _is_nested_list(value: list) -> bool:
    return bool(value) and all(isinstance(v, list) for v in value)


def _check_plain(value: Any) -> None:
    """Raise TypeError unless ``value`` is plain JSON data (what a run id can hash): strings,
    numbers, booleans, lists and tables of them (TOML's dates and times are not)."""
    if isinstance(value, dict):
        for item in value.values():
            _check_plain(item)
    elif isinstance(value, list):
        for item in value:
            _check_plain(item)
    elif not isinstance(value, (str, int, float)):
        raise TypeError(f"{value!r} is not a string, number, boolean, list or table")


def check_type(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to type ``tp`` (int -> float allowed) or raise TypeError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is dict or origin is dict:
        if (tp is not Any) and not isinstance(value, dict):
            raise TypeError(f"expected a table, got {value!r}")
        _check_plain(value)
        return value
    if origin is typing.Literal:
        if value not in args:
            raise TypeError(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return check_type(value, option)
            except TypeError:
                pass
        raise TypeError(f"{value!r} does not match {tp}")
    if tp is type(None):
        if value is not None:
            raise TypeError(f"expected nothing, got {value!r}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return [check_type(v, args[0]) for v in value] if args else list(value)
    if tp is float and type(value) in (int, float):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise TypeError(f"expected {getattr(tp, '__name__', tp)}, got {value!r}")


def grid_names() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.toml"))


def load_grid(name_or_path: str | Path) -> Grid:
    """A named grid (``benchmark/grids/NAME.toml``) or a grid file given by path; its name (the
    file's stem) must be a folder name (:func:`check_grid_name`)."""
    if str(name_or_path) == "":
        check_grid_name("")
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.exists()):
        if str(name_or_path) not in grid_names():
            raise UnknownNameError("grid", str(name_or_path), grid_names())
        path = GRID_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GridError(f"grid file {path} is not valid TOML: {exc}") from None
    grid = Grid(check_grid_name(path.stem), path, str(data.get("description", "")), data)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise grid.error(key, f"unknown top-level field; valid: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    if not isinstance(data.get("description", ""), str):
        raise grid.error("description", f"expected a string, got {data['description']!r}")
    for key in ("datasets", "methods"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise grid.error(key, f"expected at least one [[{key}]] table")
    grid._seeds()
    if "headline" in data:
        grid.headline()
    return grid
