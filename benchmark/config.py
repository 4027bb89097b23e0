"""Run configurations as plain data: what a run uses, its stable id and the seeds derived from it.

No torch here: the report, the grid parser and the tools read these without building a model.
Each section round-trips through ``to_dict`` / ``from_dict`` (the JSON of a record's ``config``).
A run's id hashes its config; which hyperparameters were added after runs were recorded is
looked up in the method's ``Config`` (:data:`benchmark.discovery.METHODS`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .discovery import METHODS
from .ranges import DOC, RANGE, Interval

MI_CAP_MARGIN = 0.25  # nats: an MI estimate this close to its cap log M is flagged "at cap"
# The random streams of a run, each seeded by RunConfig.stream_seed (recorded under `seeds`).
STREAMS = ("data", "init", "order", "train", "curves", "eval")
ADDED = "added"  # field metadata key: the change that added the field (left out of run ids at its default)
PosteriorVariance = Literal["logvar", "softplus-logvar"]


def setting(default: Any = dataclasses.MISSING, valid: str | None = None, *, doc: str = "",
            factory: Any = dataclasses.MISSING, added: str | None = None) -> Any:
    """A config field (a grid setting or a method's hyperparameter) with its valid range as
    interval text (``"[1, inf)"``; for a list, each item; checked when a grid is loaded,
    :func:`benchmark.ranges.field_problems`) and its ``doc`` (one line, shown by ``list
    methods``). ``factory`` for a mutable default. ``added`` names the change that added the
    field after runs were recorded: while it holds ``default`` (which must reproduce the
    behaviour from before the field existed) it is left out of the run id. Metadata only: no
    run id changes. Raises ValueError for a range that does not parse or a doc that is one."""
    metadata: dict[str, str] = {}
    if valid is not None:
        metadata[RANGE] = str(Interval.parse(valid))
    if doc:
        if _is_interval(doc):
            raise ValueError(f"doc {doc!r} is a range; pass it as `valid` (setting(default, {doc!r}, doc=...))")
        metadata[DOC] = doc
    if added is not None:
        metadata[ADDED] = added
    return field(default=default, default_factory=factory, metadata=metadata)


def _is_interval(text: str) -> bool:
    try:
        Interval.parse(text)
    except ValueError:
        return False
    return True


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(cls)


def plain(value: Any) -> Any:
    """``dataclasses.asdict`` for configs, several times faster (a run id is one per run): nested
    dataclasses as dicts, lists, tuples and dicts rebuilt, other values (numbers, strings, None) as
    they are. Configs hold nothing else (grid values are TOML)."""
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in _fields(type(value))}
    return value


def identity(config: Any) -> dict[str, Any]:
    """:func:`plain` ``(config)`` without the fields added later (``setting(added=...)``) at their
    default."""
    values = plain(config)
    for f in _fields(type(config)):
        if ADDED in f.metadata and values.get(f.name) == f.default:
            del values[f.name]
    return values


class ConfigSection:
    """A flat config section: ``to_dict`` gives its fields, ``from_dict`` takes them back."""

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        return cls(**data)


@dataclass
class DatasetConfig(ConfigSection):
    """Which data a run uses: a registered data set and optional random subset sizes."""

    name: str = "fashion-mnist"
    train_size: int | None = setting(None, "[1, inf)")  # None: the whole published training split
    # None: the whole published test split; at least 2 (AU's variance divides by N - 1)
    test_size: int | None = setting(None, "[2, inf)")


@dataclass
class ModelConfig(ConfigSection):
    """Resolved model settings of a run (the ``[model]`` table of a grid)."""

    arch: str = "mlp"
    latent_dim: int = setting(32, "[1, inf)")
    likelihood: str = "gaussian"
    posterior_variance: PosteriorVariance = "logvar"
    options: dict = field(default_factory=dict)  # the architecture's own options, resolved


@dataclass
class TrainConfig(ConfigSection):
    """Resolved training settings of a run (the ``[train]`` table of a grid)."""

    epochs: int = setting(10, "[1, inf)")
    batch_size: int = setting(128, "[1, inf)")
    lr: float = setting(1e-3, "(0, inf)")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"  # sgd: plain SGD (the text-VAE reference code's, lr 1.0)
    weight_decay: float = setting(0.0, "[0, inf)")
    # plateau: the text-VAE reference code's schedule: from epoch decay_start on, lr times
    # decay_factor after decay_patience epochs without a better validation -ELBO, the best weights
    # reloaded (and the optimiser restarted) at each decay; training stops after max_decays decays
    lr_schedule: Literal["constant", "cosine", "plateau"] = "constant"
    grad_clip: float = setting(0.0, "[0, inf)")  # max global gradient norm; 0 disables clipping
    decay_patience: int = setting(2, "[1, inf)", added="plateau schedule")
    decay_start: int = setting(15, "[0, inf)", added="plateau schedule")
    decay_factor: float = setting(0.5, "(0, 1)", added="plateau schedule")
    max_decays: int = setting(5, "[1, inf)", added="plateau schedule")
    # evaluate the weights of the epoch with the best validation -ELBO (beta = 1), not the last's
    select_best: bool = setting(False, added="model selection on the validation split")
    # the training step's arithmetic: fp32, tf32 (CUDA only) or bf16 autocast (benchmark/ml/precision.py)
    precision: Literal["fp32", "tf32", "bf16"] = setting("fp32", added="training precision")


@dataclass
class EvalConfig(ConfigSection):
    """Evaluation settings that change the reported numbers (recorded with every run);
    definitions in docs/metrics.md."""

    au_threshold: float = setting(0.01, "[0, inf)")
    mi_mixture: Literal["all", "batch"] = "all"
    mi_batch_size: int = setting(50, "[1, inf)")  # mixture size when mi_mixture = "batch"
    curve_every: int = setting(1, "[1, inf)")  # epochs between points of the AU / KL curves (on the test split)
    mi_curve_every: int = setting(5, "[0, inf)")  # epochs between MI points of the curves (0: none)
    nll_samples: int = setting(500, "[0, inf)")  # importance samples K of the IW-NLL (0: skip it)
    nll_examples: int = setting(1000, "[1, inf)")  # test examples (the first ones) the IW-NLL is averaged over
    geometry_points: int = setting(64, "[0, inf)")  # posterior means at which decoder Jacobians are taken (0: skip)
    pair_scale: float = setting(0.1, "(0, inf)")  # latent distance of the pairs of the bi-Lipschitz estimate
    noise_points: int = setting(64, "[0, inf)")  # posterior means decoded with noise (0: skip)
    noise_draws: int = setting(8, "[2, inf)")  # noise draws per point (the diversity needs pairs)
    # Which posteriors form the MI estimate (and its cap log N): the test split, or the training
    # split (a higher cap: log 60000 = 11.0 nats on the whole Fashion-MNIST training split).
    mi_split: Literal["test", "train"] = setting("test", added="MI on the training split")
    mi_examples: int | None = setting(None, "[2, inf)", added="MI on a subset")  # first N examples of mi_split; None: all
    # An MI estimate within this many nats of its cap is flagged `mi_at_cap` (cannot rank methods).
    mi_cap_margin: float = setting(MI_CAP_MARGIN, "[0, inf)", added="MI cap flag")


@dataclass
class RunConfig:
    """Everything that determines one training run; its hash is the run id.

    ``hyperparameters`` holds every field of the method's ``Config`` dataclass (defaults
    resolved) as plain values, so a config pickles and serialises without the plugin's code.
    """

    dataset: DatasetConfig
    method: str
    hyperparameters: dict[str, Any]
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        return cls(dataset=DatasetConfig.from_dict(data["dataset"]), method=data["method"],
                   hyperparameters=dict(data["hyperparameters"]), model=ModelConfig.from_dict(data["model"]),
                   train=TrainConfig.from_dict(data["train"]), eval=EvalConfig.from_dict(data["eval"]),
                   seed=data["seed"])

    def identity(self) -> dict[str, Any]:
        """What the run id hashes: :meth:`to_dict` without fields added later that are still at
        their defaults (``setting(added=...)``; method hyperparameters too)."""
        values = self.to_dict()
        values["eval"], values["dataset"], values["train"] = identity(self.eval), identity(self.dataset), identity(self.train)
        hp_fields = {f.name: f for f in dataclasses.fields(METHODS[self.method].Config)}
        values["hyperparameters"] = {k: v for k, v in self.hyperparameters.items()
                                     if not (ADDED in getattr(hp_fields.get(k), "metadata", {})
                                             and v == hp_fields[k].default)}
        return values

    @property
    def run_id(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of :meth:`identity`."""
        return _digest(self.identity())[:16]

    def stream_seed(self, stream: str) -> int:
        """Seed of one random stream (:data:`STREAMS`) of this run.

        The "data" stream (subset selection, toy-data generation) depends only on the data
        set config and the seed, so every method of a seed sees the same examples.
        """
        basis: Any = ([identity(self.dataset), self.seed] if stream == "data"
                      else [self.run_id, stream])
        return int(_digest(basis)[:15], 16)

    def label(self) -> str:
        """Short description naming the hyperparameters that differ from the method's
        defaults, e.g. ``beta-vae(beta=0.2) fashion-mnist seed 0``."""
        defaults = dataclasses.asdict(METHODS[self.method].Config())
        hp = ",".join(f"{k}={v}" for k, v in sorted(self.hyperparameters.items()) if defaults.get(k) != v)
        hp = hp or ("defaults" if defaults else "")
        return f"{self.method}({hp}) {self.dataset.name} seed {self.seed}"


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()
