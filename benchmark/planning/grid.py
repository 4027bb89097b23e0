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

``run --set KEY=VALUE`` (:func:`apply_overrides`) changes the parsed TOML before any of these
checks, so an override is checked exactly as the same value in the file would be, and its
errors say which ``--set`` gave the value.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig
from ..data.catalog import DATASETS
from ..discovery import METHODS
from ..errors import BenchmarkError, GridError, PackagingError, UnknownNameError, check_grid_name
from .headline import Entry, headline_entries
from ..ranges import field_problems
from ..ml.likelihoods import LIKELIHOODS
from ..ml.archs import ARCHS
from ..ml.method import model_problem, validation_fraction
from ..ml.schedules import SCHEDULES
from ..registry import Registry

GRID_DIR = Path(__file__).resolve().parents[1] / "grids"
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
    run_id: str  # config.run_id, computed once


@dataclass(frozen=True)
class Grid:
    """A parsed grid file; :meth:`expand` gives its runs (optionally narrowed), :meth:`runs` all of
    them with the hyperparameters each entry names."""

    name: str
    path: Path
    description: str
    data: dict[str, Any]
    # the --set overrides applied to ``data``, in order, and the grid fields each one set
    overrides: tuple[Override, ...] = ()

    def expand(self, methods: list[str] | None = None, datasets: list[str] | None = None,
               seeds: list[int] | None = None, epochs: int | None = None) -> list[RunConfig]:
        """Resolved run configs, optionally narrowed to some methods / data sets, with the
        seeds replaced and the epochs overridden. Unknown names raise UnknownNameError."""
        self.check_selection(methods, datasets)
        return [run.config for run in self.select(self.runs(seeds, epochs), methods, datasets)]

    @staticmethod
    def check_selection(methods: list[str] | None = None, datasets: list[str] | None = None) -> None:
        """Raise UnknownNameError for a method or data set name that is not registered."""
        for name in methods or []:
            METHODS[name]
        for name in datasets or []:
            DATASETS[name]

    @staticmethod
    def select(runs: list[GridRun], methods: list[str] | None = None,
               datasets: list[str] | None = None) -> list[GridRun]:
        """``runs`` narrowed to the given methods and data sets (None: all)."""
        return [run for run in runs if not (methods and run.config.method not in methods)
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
                    self._check_sizes(RunConfig(dataset, name, hp, model, train, evaluation), ds_index, where)
                    for seed in seeds if seeds is not None else self._seeds():
                        run = RunConfig(dataset, name, hp, model, train, evaluation, seed)
                        run_id = run.run_id
                        runs.setdefault(run_id, GridRun(run, named, run_id))
        return list(runs.values())

    def headline(self, runs: list[GridRun] | None = None) -> tuple[Entry, ...]:
        """The grid's pre-registered headline settings (``headline``, see :mod:`benchmark.planning.headline`),
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
        given = [o.text for o in self.overrides if o.sets(field)]
        where = f" (the value of --set {given[-1]})" if given else ""
        return GridError(f"grid file {self.path}: field `{shown}`{where}: {problem}")

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
        combos = []
        for combo in itertools.product(*axes):
            values = dataclasses.asdict(self._build(cls, dict(combo), where, context=name))
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
        return model_problem(name, hp, model)

    def _check_applies(self, name: str, hp: dict[str, Any], model: ModelConfig, where: str, ds_index: int) -> None:
        """Refuse a method on a model it does not apply to (``Method.check_model``)."""
        why = self._refusal(name, hp, model)
        if why is not None:
            raise self.error(where, f"{name} does not apply to the model of datasets[{ds_index}] "
                                    f"(arch {model.arch!r}): {why}")

    def _check_sizes(self, config: RunConfig, ds_index: int, where: str) -> None:
        """Refuse a setting that asks for more examples than the data set's published splits hold
        (the loaders would quietly take fewer while the record keeps the number asked for); a
        data root's own copy is checked once loaded (:func:`benchmark.planning.prepare.launch`)."""
        spec = DATASETS[config.dataset.name]
        problems = size_problems(config, spec.train_size, spec.test_size, spec.valid_size is not None)
        if problems:
            setting, problem = problems[0]
            field = f"datasets[{ds_index}].{setting}" if setting in ("train_size", "test_size") else setting
            context = "" if setting in ("train_size", "test_size") else f" (datasets[{ds_index}] with {where})"
            raise self.error(field, f"{problem}{context}")

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

    def _build(self, cls: type, values: dict[str, Any], where: str, context: str = ""):
        """Instantiate dataclass ``cls`` from ``values``, checking names, types, ranges and
        ``Literal`` choices (:func:`~benchmark.ranges.field_problems`); ``context`` prefixes the
        messages."""
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
        for key, why in field_problems(config):
            raise self.error(f"{where}.{key}", f"{prefix}{why}")
        return config


def size_problems(config: RunConfig, train: int | None, test: int | None,
                  published_valid: bool) -> list[tuple[str, str]]:
    """(setting, problem and fix) for each setting of ``config`` that asks for more examples than
    its data hold, where the data pipeline would quietly use fewer (a subset, a minibatch, the
    first N of a split). ``train`` / ``test``: the examples of the data set's full splits (None:
    unknown, not checked); ``published_valid``: it has a validation split of its own (else a
    method asking for one holds its ``validation_fraction`` out of the training subset)."""
    dataset, name, problems = config.dataset, config.dataset.name, []
    for setting, asked, full, split in (("train_size", dataset.train_size, train, "training"),
                                        ("test_size", dataset.test_size, test, "test")):
        if asked is not None and full is not None and asked > full:
            problems.append((setting, f"{setting} = {asked} is more than the {full} examples of {name}'s {split} "
                                      f"split: lower it to at most {full}, or leave it out for the whole split"))
    if problems:
        return problems
    n_train, n_test = dataset.train_size or train, dataset.test_size or test
    trains_on, held = n_train, 0
    fraction = 0.0 if published_valid else validation_fraction(config.method, config.hyperparameters, config.model)
    if fraction and n_train is not None:
        held = max(2, round(fraction * n_train))  # as DataSplit.split holds out
        trains_on = n_train - held
        if trains_on < 1:
            return [("train_size", f"{config.method} holds out {held} of the {n_train} training examples of {name} "
                                   f"as its validation split (valid_fraction {fraction:g}) and keeps none to train on: "
                                   f"raise train_size")]
    fix_train = " or raise train_size" if dataset.train_size is not None and (train is None or n_train < train) else ""
    if trains_on is not None and config.train.batch_size > trains_on:
        examples = (f"the {trains_on} training examples of {name} a run trains on ({held} of {n_train} held out for "
                    f"validation)" if held else f"the {trains_on} training examples of {name}")
        problems.append(("train.batch_size", f"batch_size = {config.train.batch_size} is more than {examples}: "
                                             f"lower train.batch_size to at most {trains_on}{fix_train}"))
    evaluation = config.eval
    test_fix = " or raise test_size" if dataset.test_size is not None and (test is None or n_test < test) else ""
    pixels = DATASETS[name].kind != "sequence"  # decoder geometry and noise grids: not measured on sentences
    if n_test is not None:
        for setting, asked, used in (("nll_examples", evaluation.nll_examples, evaluation.nll_samples),
                                     ("geometry_points", evaluation.geometry_points, pixels),
                                     ("noise_points", evaluation.noise_points, pixels)):
            if used and asked > n_test:
                problems.append((f"eval.{setting}", f"{setting} = {asked} is more than the {n_test} examples of "
                                                    f"{name}'s test split: lower eval.{setting} to at most {n_test}"
                                                    f"{test_fix}"))
    mi_n, mi_fix = ((n_test, test_fix) if evaluation.mi_split == "test" else
                    (trains_on, fix_train))
    mi_what = (f"{name}'s test split" if evaluation.mi_split == "test" else
               f"{name}'s training split a run trains on" + (f" ({held} held out for validation)" if held else ""))
    if mi_n is not None and evaluation.mi_examples is not None and evaluation.mi_examples > mi_n:
        problems.append(("eval.mi_examples", f"mi_examples = {evaluation.mi_examples} is more than the {mi_n} examples "
                                             f"of {mi_what} (mi_split = {evaluation.mi_split!r}): lower "
                                             f"eval.mi_examples to at most {mi_n}{mi_fix}"))
    elif (mi_n is not None and evaluation.mi_mixture == "batch"
          and evaluation.mi_batch_size > (evaluation.mi_examples or mi_n)):
        n = evaluation.mi_examples or mi_n
        problems.append(("eval.mi_batch_size", f"mi_batch_size = {evaluation.mi_batch_size} is more than the {n} "
                                               f"posteriors the MI is estimated on (mi_mixture = 'batch'): lower "
                                               f"eval.mi_batch_size to at most {n}"))
    return problems


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
    if origin is typing.Literal:  # the choices are checked by field_problems, with the others' ranges
        _check_plain(value)
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
    if not GRID_DIR.is_dir():
        raise PackagingError(f"the built-in grids' folder {GRID_DIR} is missing: the package is installed "
                             "incompletely; reinstall it (pip install --force-reinstall .) or run from a checkout")
    return sorted(p.stem for p in GRID_DIR.glob("*.toml"))


# --- run --set KEY=VALUE -------------------------------------------------------------------------

SET_FORMS = ("train.KEY, model.KEY, eval.KEY, seeds, description, datasets.NAME.KEY, methods.NAME.KEY "
             "(NAME: an entry's name; KEY may be model.KEY or train.KEY there)")
SECTIONS = ("train", "model", "eval")


@dataclass(frozen=True)
class Override:
    """One ``--set KEY=VALUE``: ``key``, the parsed ``value`` and the grid fields it set (as
    grid errors name them: ``train.lr``, ``methods[3].alpha_T``, ``datasets[0].train_size``)."""

    key: str
    value: Any
    fields: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.key}={_toml_value(self.value)}"

    def sets(self, field: str) -> bool:
        return any(field == f or field.startswith(f + ".") or f.startswith(field + ".") for f in self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value): VALUE is read as a TOML value (``3e-4``, ``16``, ``true``,
    ``[64, 64]``, ``"linear"``), else taken as a string (``model.arch=conv``)."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise GridError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4 (keys: {SET_FORMS})")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if any(c in raw for c in "[]{}\"'=,"):
            raise GridError(f"--set {key}={raw}: the value is no TOML value (a number, true/false, a quoted "
                            "string, a [list] or an {inline = table}); quote strings: --set "
                            f"{key}='\"...\"'") from None
        value = raw  # a bare word: a string
    return key, value


def apply_overrides(data: dict[str, Any], given: list[str] | tuple[str, ...], path: Path) -> tuple[dict, tuple[Override, ...]]:
    """A copy of the grid file's parsed TOML ``data`` with each ``--set KEY=VALUE`` applied in
    order, and the overrides. ``train.KEY`` / ``model.KEY`` set the grid-wide section *and* the same
    key wherever a ``[[datasets]]`` / ``[[methods]]`` table overrides it, so the value holds for
    every run; ``datasets.NAME.KEY`` / ``methods.NAME.KEY`` set every entry of that name. A key
    of no such form, or a NAME no entry has, is an error naming the key and the forms. (The
    grid's ``headline`` is dropped by :func:`load_grid`: it was declared for the file's settings.)"""
    data = copy.deepcopy(data)
    done: list[Override] = []
    for text in given:
        key, value = parse_override(text)
        parts = key.split(".")

        def bad(why: str) -> GridError:
            return GridError(f"--set {key}: {why}; valid keys: {SET_FORMS}")

        fields: list[str] = []
        if len(parts) == 1:
            if parts[0] not in ("seeds", "description"):
                raise bad(f"no grid setting {key!r}" if parts[0] not in SECTIONS + ("datasets", "methods")
                          else f"name a setting inside it, e.g. {parts[0]}.KEY" if parts[0] in SECTIONS
                          else f"name an entry and a setting, e.g. {parts[0]}.NAME.KEY")
            data[parts[0]] = value
            fields.append(parts[0])
        elif parts[0] in SECTIONS:
            if len(parts) != 2:
                raise bad(f"{parts[0]} settings are one key deep ({parts[0]}.{parts[1]})")
            section = data.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise bad(f"the grid file's `{parts[0]}` is no table")
            section[parts[1]] = value
            fields.append(key)
            if parts[0] in OVERRIDE_KEYS:
                for kind in ("datasets", "methods"):
                    for entry in data.get(kind) or []:
                        inner = entry.get(parts[0]) if isinstance(entry, dict) else None
                        if isinstance(inner, dict) and parts[1] in inner:
                            inner[parts[1]] = value
        elif parts[0] in ("datasets", "methods"):
            if len(parts) < 3 or len(parts) > 4 or (len(parts) == 4 and parts[2] not in OVERRIDE_KEYS):
                raise bad(f"write {parts[0]}.NAME.KEY or {parts[0]}.NAME.model.KEY / {parts[0]}.NAME.train.KEY")
            entries = [(i, e) for i, e in enumerate(data.get(parts[0]) or [])
                       if isinstance(e, dict) and e.get("name") == parts[1]]
            if not entries:
                names = sorted({str(e.get("name")) for e in data.get(parts[0]) or [] if isinstance(e, dict)})
                raise bad(f"grid file {path} has no [[{parts[0]}]] entry named {parts[1]!r} (its entries: "
                          f"{', '.join(names) or '(none)'}); add one to a copy of the grid file to run another")
            if parts[1] == ALL_METHODS and parts[0] == "methods" and len(parts) == 3:
                raise bad('the `name = "*"` entry takes no hyperparameters: name the method, e.g. methods.vae.KEY, '
                          "with an entry of its own in the grid file")
            for index, entry in entries:
                if len(parts) == 3:
                    entry[parts[2]] = value
                    fields.append(f"{parts[0]}[{index}].{parts[2]}")
                else:
                    inner = entry.setdefault(parts[2], {})
                    if not isinstance(inner, dict):
                        raise bad(f"{parts[0]}[{index}].{parts[2]} of grid file {path} is no table")
                    inner[parts[3]] = value
                    fields.append(f"{parts[2]}.{parts[3]}")
        else:
            raise bad(f"no grid setting {parts[0]!r}")
        done.append(Override(key, value, tuple(fields)))
    return data, tuple(done)


def overrides_suffix(overrides: tuple[Override, ...]) -> str:
    """What ``--set`` adds to a grid's name (its results folder): ``-set-`` and 8 hex digits of
    the overrides, so results of a grid with overrides never mix with the grid's own."""
    basis = json.dumps([o.to_dict() for o in overrides], sort_keys=True)
    return f"-set-{hashlib.sha256(basis.encode()).hexdigest()[:8]}" if overrides else ""


def load_grid(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """A named grid (``benchmark/grids/NAME.toml``) or a grid file given by path, with the
    ``--set KEY=VALUE`` ``overrides`` applied (:func:`apply_overrides`; its name then ends in
    :func:`overrides_suffix`); its name (the file's stem) must be a folder name (:func:`check_grid_name`)."""
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
    applied: tuple[Override, ...] = ()
    if overrides:
        data, applied = apply_overrides(data, overrides, path)
        # the headline was declared for the file's settings: a grid with overrides is exploratory
        data.pop("headline", None)
    description = data.get("description", "")
    if applied and isinstance(description, str):
        description += f" (with --set {' '.join(o.text for o in applied)})"
    grid = Grid(check_grid_name(path.stem) + overrides_suffix(applied), path, str(description), data, applied)
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
