"""The code behind a run's numbers: every definition its numbers can depend on, found from the
source, digested and combined into the record's ``code.key``.

A run's numbers come from the runner's entry point and the run config (:data:`CORE_ROOTS`), the
method's class and whatever they use. Starting there, the closure follows every name a
definition uses (functions, classes, module constants, names imported from other project
modules or from a plugin's own helper modules) through the source files, never into a module
that only decides *which* runs happen or *where* results go (:data:`NOT_NUMERICS`: records, the
store, the executor, the report...), nor into third-party packages (their versions are in the
record's ``environment``). Registrations (``ARCHS.add("mlp", ...)``,
``@SCHEDULES.register("linear")``, ``register_dataset(DatasetSpec("ptb", ...))``) are followed
only for the names the run's config or the reached code mention, so a change to the CelebA loader
leaves Fashion-MNIST records alone; a reached module's other top-level statements always count.

Each definition is digested from its syntax tree without docstrings, comments, formatting, the
module paths of imports, a method's descriptive class attributes and the ranges and docs of
``setting`` fields, so reformatting, reordering imports, rewording a doc, tightening a range or
moving a function to another module changes no key; any change to the code of a
reached definition does. The record keeps the digest of every definition (``code.units``), so a
stale record says which definitions changed. Reaching a definition that does not matter to a
given run (e.g. a branch it never takes) only ever reruns a run; missing one would keep a wrong
number, so the closure errs on the side of reaching.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import RunConfig
from ..discovery import METHODS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The project's own top-level package: an absolute import resolves to project code only under it
# (an installed package's root is site-packages, which holds every third-party package too).
PROJECT_PACKAGES = ("benchmark",)
# An installed package (wheel) carries the repository's methods/ as benchmark/methods/: labelled
# as in a checkout (methods/NAME.py), so records of both read alike.
INSTALLED_METHODS = "benchmark/methods/"
# Where every run's numbers start: the runner (data, seeds, models, training, evaluation) and the
# run config (the seed of each random stream derives from it). Paths relative to the project root.
CORE_ROOTS = (("benchmark/execution/runner.py", "execute_pack"), ("benchmark/config.py", "RunConfig"))
# Modules whose code decides which runs happen, where their results go or how they are shown,
# never what a run computes: the closure does not enter them.
NOT_NUMERICS = frozenset({
    "benchmark/__init__.py", "benchmark/__main__.py", "benchmark/arguments.py", "benchmark/cli.py",
    "benchmark/discovery.py", "benchmark/errors.py", "benchmark/planning/grid.py", "benchmark/planning/headline.py",
    "benchmark/planning/pack_plan.py",
    "benchmark/ranges.py", "benchmark/registry.py", "benchmark/execution/checkpoint.py", "benchmark/execution/checkpoint_every.py",
    "benchmark/planning/code_key.py",
    "benchmark/execution/executor.py", "benchmark/execution/memory.py", "benchmark/results/plan.py", "benchmark/planning/prepare.py",
    "benchmark/execution/progress.py", "benchmark/results/provenance.py", "benchmark/results/record.py",
    "benchmark/results/store.py", "benchmark/results/table.py"})
NOT_NUMERICS_FOLDERS = ("benchmark/report/", "benchmark/tools/")
# Definitions only a pack executes (each is chosen for K >= 2 runs only: ``make_step`` builds a
# StackStep, ``execute_pack`` calls the other two): the closure of a run trained alone does not
# enter them, so a change to the packed path leaves the records of runs trained alone done.
# Labels as (display path, top-level name).
PACKED_ONLY = frozenset({("benchmark/ml/pack_step.py", "StackStep"), ("benchmark/execution/runner.py", "make_pack_trainer"),
                         ("benchmark/execution/runner.py", "evaluate_pack"),
                         ("benchmark/execution/runner.py", "pack_curve_points")})
# Class attributes that only describe or check a method, never change what it computes.
DESCRIPTIVE_ATTRIBUTES = frozenset({"requires", "packable", "pack_scalars", "pack_refusal", "guarantees"})
# Arguments of ``setting(default, valid, doc=...)`` that only describe or check a field.
DESCRIPTIVE_SETTING_ARGUMENTS = frozenset({"valid", "doc"})
Import = tuple[str, "str | None", "str | None"]  # (local name, module file or None, attribute or None: a module)


@dataclass(frozen=True)
class Unit:
    """One top-level statement of a module: a definition (``name``: the first name it binds) or
    another statement (``name``: ``<register 'key'>`` or ``<statement digest>``). ``refs``: names
    it uses; ``attrs``: (name, attribute) pairs it uses (``metrics.kl``); ``strings``: its string
    constants; ``imports``: the imports inside it; ``key``: what it registers something under."""

    module: str  # display path
    name: str
    digest: str
    refs: frozenset[str]
    attrs: frozenset[tuple[str, str]]
    strings: frozenset[str]
    imports: tuple[Import, ...]
    key: str | None = None
    binds: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.module}:{self.name}"


@dataclass
class Module:
    """A parsed source file: its units, the unit binding each top-level name, and its imports."""

    path: str  # display path (relative to the root when inside it)
    units: list[Unit]
    file: str = ""  # the source file (resolved)
    names: dict[str, Unit] = field(default_factory=dict)
    imports: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # name -> (file, attribute)


class _Normalise(ast.NodeTransformer):
    """Drops what cannot change a number: docstrings, the module paths of imports, a method's
    descriptive class attributes (:data:`DESCRIPTIVE_ATTRIBUTES`) and the range and doc of a
    ``setting(...)`` field (:data:`DESCRIPTIVE_SETTING_ARGUMENTS`)."""

    def _strip_docstring(self, node: ast.AST) -> ast.AST:
        node.body = _without_docstring(node.body)  # type: ignore[attr-defined]
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = _strip_docstring

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = [item for item in node.body if not _binds_any(item, DESCRIPTIVE_ATTRIBUTES)] or [ast.Pass()]
        return self._strip_docstring(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name == "setting":
            node.args = node.args[:1]  # setting(default, valid): the range goes
            node.keywords = [k for k in node.keywords if k.arg not in DESCRIPTIVE_SETTING_ARGUMENTS]
        return self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        node.module, node.level = "<module>", 0
        return node


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _binds_any(node: ast.AST, names: frozenset[str]) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return any(isinstance(t, ast.Name) and t.id in names for t in targets)


def _copy(node: ast.stmt) -> ast.stmt:
    return ast.parse(ast.unparse(node)).body[0]


def _digest(node: ast.stmt) -> str:
    tree = _Normalise().visit(_copy(node))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


def _display(path: Path, root: Path) -> str:
    if not path.is_relative_to(root):
        return str(path)
    shown = path.relative_to(root).as_posix()
    return shown[len("benchmark/"):] if shown.startswith(INSTALLED_METHODS) else shown


def _resolve_module(name: str, level: int, importer: Path, root: Path) -> Path | None:
    """The source file of module ``name`` imported from ``importer`` (``level`` dots), when it is
    project code (under ``root``) or a plugin's sibling module; None for anything else."""
    if level:
        base = importer.parent
        for _ in range(level - 1):
            base = base.parent
        candidates = [base.joinpath(*name.split(".")) if name else base]
    else:
        parts = name.split(".")
        candidates = [root.joinpath(*parts)] if parts[0] in PROJECT_PACKAGES else []
        candidates.append(importer.parent.joinpath(*parts))
    for candidate in candidates:
        for path in (candidate.with_suffix(".py"), candidate / "__init__.py"):
            if path.is_file():
                return path.resolve()
    return None


def _import_targets(node: ast.Import | ast.ImportFrom, importer: Path, root: Path) -> list[Import]:
    """What each name an import binds refers to: a project module file (attribute None), a name in
    one, or something outside the project (file None)."""
    out: list[Import] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            path = _resolve_module(alias.name, 0, importer, root)
            out.append((alias.asname or alias.name.split(".")[0], str(path) if path and alias.asname else None, None))
        return out
    module = _resolve_module(node.module or "", node.level, importer, root)
    for alias in node.names:
        full = f"{node.module}.{alias.name}" if node.module else alias.name
        sub = _resolve_module(full, node.level, importer, root)
        local = alias.asname or alias.name
        out.append((local, str(sub), None) if sub is not None else (local, str(module) if module else None, alias.name))
    return out


def _registration_key(node: ast.stmt) -> str | None:
    """The name a statement registers something under: the first string argument of the call it
    is (``REG.add("k", ...)``, ``register(Spec("k", ...))``) or of a decorator call."""
    calls: list[ast.expr] = []
    if isinstance(node, ast.Expr):
        calls = [node.value]
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        calls = list(node.decorator_list)
    for call in calls:
        while isinstance(call, ast.Call) and call.args:
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                return first.value
            call = first
    return None


def _uses(node: ast.stmt) -> tuple[set[str], set[tuple[str, str]], set[str], list[ast.Import | ast.ImportFrom]]:
    """Names, (name, attribute) pairs and string constants ``node`` uses (annotations and
    docstrings left out: they change no number), and the imports inside it."""
    names: set[str] = set()
    attrs: set[tuple[str, str]] = set()
    strings: set[str] = set()
    imports: list[ast.Import | ast.ImportFrom] = []

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            imports.append(n)
            return
        if isinstance(n, ast.Name):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            attrs.add((n.value.id, n.attr))
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            strings.add(n.value)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            n = _copy(n)
            n.body = _without_docstring(n.body)  # type: ignore[attr-defined]
        for name, child in ast.iter_fields(n):
            if name in ("annotation", "returns"):
                continue
            for item in (child if isinstance(child, list) else [child]):
                if isinstance(item, ast.AST):
                    visit(item)

    visit(node)
    return names, attrs, strings, imports


def _bound_names(node: ast.stmt) -> tuple[str, ...]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (node.name,)
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return tuple(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))


def _imports_only(node: ast.stmt) -> bool:
    """An import, or an ``if TYPE_CHECKING:`` / ``try: import x`` block of imports only."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    return isinstance(node, (ast.If, ast.Try)) and all(
        isinstance(n, (ast.Import, ast.ImportFrom, ast.Pass)) for n in ast.walk(node) if isinstance(n, ast.stmt)
        and n is not node)


@functools.lru_cache(maxsize=None)
def _parse(path: str, mtime_ns: int, root: Path) -> Module:
    source = Path(path)
    tree = ast.parse(source.read_text(), filename=path)
    module = Module(_display(source, root), [], file=str(source))
    for node in _without_docstring(tree.body):
        if _imports_only(node):
            for imp in (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))):
                for local, file, attr in _import_targets(imp, source, root):
                    module.imports[local] = (file, attr)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a bare string: an attribute's docstring
        names, attrs, strings, imports = _uses(node)
        digest, key, binds = _digest(node), _registration_key(node), _bound_names(node)
        name = binds[0] if binds else f"<register {key!r}>" if key is not None else f"<statement {digest[:8]}>"
        unit = Unit(module.path, name, digest, frozenset(names), frozenset(attrs), frozenset(strings),
                    tuple(t for imp in imports for t in _import_targets(imp, source, root)), key, binds)
        module.units.append(unit)
        for bound in binds:
            module.names[bound] = unit
    return module


def parse_module(path: str | Path, root: Path = PROJECT_ROOT) -> Module:
    """The units of the Python file at ``path`` (parsed once per process while unchanged)."""
    resolved = Path(path).resolve()
    return _parse(str(resolved), resolved.stat().st_mtime_ns, root)


@functools.lru_cache(maxsize=None)
def is_numerics(path: str, root: Path = PROJECT_ROOT) -> bool:
    """Whether the closure may enter the (resolved) file ``path``: project or plugin code outside
    :data:`NOT_NUMERICS`."""
    display = _display(Path(path), root)
    return display not in NOT_NUMERICS and not display.startswith(NOT_NUMERICS_FOLDERS)


def config_strings(value: Any) -> set[str]:
    """Every string in a config (nested dicts and lists, keys and values)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(config_strings(k) | config_strings(v) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return set().union(*(config_strings(v) for v in value))
    return set()


def closure(roots: Iterable[tuple[str | Path, str]], wanted: Iterable[str] = (),
            root: Path = PROJECT_ROOT, skip: frozenset[tuple[str, str]] = frozenset()) -> tuple[list[Unit], set[str]]:
    """Every unit the top-level definitions ``roots`` ((file, name) pairs) can depend on, with
    registrations followed for the names in ``wanted`` and in the reached code, sorted by label;
    and the files read to find them. ``root``: the project folder; ``skip``: (display path, name)
    of definitions not to enter (e.g. :data:`PACKED_ONLY` for a run trained alone)."""
    wanted = set(wanted)
    included: dict[tuple[str, str], Unit] = {}
    parsed: dict[str, Module] = {}
    queue: list[tuple[Module, Unit]] = []

    def module_at(file: str) -> Module:
        if file not in parsed:
            parsed[file] = parse_module(file, root)
        return parsed[file]

    def bind(file: str | None, name: str) -> None:
        """Queue the unit ``name`` is bound to in module ``file`` (following imports)."""
        seen = set()
        while file is not None and is_numerics(file, root) and (file, name) not in seen:
            seen.add((file, name))
            module = module_at(file)
            if name in module.names:
                if (module.path, name) not in skip:
                    queue.append((module, module.names[name]))
                return
            file, attr = module.imports.get(name, (None, None))
            if attr is None:  # outside the project, or a module itself (its attributes are followed)
                return
            name = attr

    def include(module: Module, unit: Unit) -> None:
        included[(module.path, unit.name)] = unit
        wanted.update(unit.strings)
        file = module.file
        local = {name: (target, attr) for name, target, attr in unit.imports}
        for name in unit.refs:
            if name in local:
                target, attr = local[name]
                if attr is not None:
                    bind(target, attr)
            else:
                bind(file, name)
        for base, attr in unit.attrs:
            target, inner = local.get(base, module.imports.get(base, (None, None)))
            if target is not None and inner is None:  # `module.attribute`
                bind(target, attr)

    for file, name in roots:
        bind(str(Path(file).resolve()), name)
    while queue:
        while queue:
            module, unit = queue.pop()
            if (module.path, unit.name) not in included:
                include(module, unit)
        for module in list(parsed.values()):  # the other statements of every module reached
            reached = {u.name for (path, _), u in included.items() if path == module.path}
            if not reached:
                continue
            for unit in module.units:
                if (module.path, unit.name) in included or unit.binds and unit.key is None:
                    continue  # included already, or a plain definition (included when used)
                if unit.key is None or unit.key in wanted:
                    queue.append((module, unit))
    return sorted(included.values(), key=lambda u: u.label), set(parsed)


def key_of(units: Iterable[Unit]) -> str:
    """16 hex digits combining the units' names and digests (not their modules: moving a
    definition to another module changes no key)."""
    basis = ",".join(sorted(f"{u.name}={u.digest}" for u in units))
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def run_code(config: RunConfig, packed: bool = False) -> dict[str, Any]:
    """The ``code`` of a record of run ``config`` trained alone or in a pack: see :func:`code_version`."""
    return code_version(METHODS[config.method], config.to_dict(), packed=packed)


def setting_identity(config: RunConfig) -> tuple[int, ...]:
    """The objects ``config`` holds besides its seed, by identity: two configs (both alive) with the
    same tuple differ at most in their seed. The runs of a setting that
    :meth:`benchmark.planning.grid.Grid.runs` makes share these objects."""
    return tuple(id(getattr(config, f.name)) for f in dataclasses.fields(config) if f.name != "seed")


def run_codes(configs: Iterable[RunConfig], packed: bool = False) -> list[dict[str, Any]]:
    """:func:`run_code` of each of ``configs`` (all alone or all ``packed``), found once per
    setting. A run's code depends on its config only through its method and the strings in it
    (:func:`code_version`), so configs with the same method and strings share it, and so do
    configs holding the same objects besides their seed (:func:`setting_identity`) whose seeds hold the same strings (none: a number)."""
    by_strings: dict[tuple[str, frozenset[str]], dict[str, Any]] = {}
    # the config is kept with its code: the ids in the key stay its objects' while the loop runs
    by_objects: dict[tuple[Any, ...], tuple[RunConfig, dict[str, Any]]] = {}
    codes = []
    for config in configs:
        same = (setting_identity(config), frozenset(config_strings(config.seed)))
        hit = by_objects.get(same)
        if hit is None:
            values = config.to_dict()
            key = (config.method, frozenset(config_strings(values)))
            if key not in by_strings:
                by_strings[key] = code_version(METHODS[config.method], values, packed=packed)
            hit = by_objects[same] = (config, by_strings[key])
        codes.append(hit[1])
    return codes


def code_version(method_class: type, config: dict[str, Any], root: Path = PROJECT_ROOT,
                 packed: bool = False) -> dict[str, Any]:
    """The ``code`` of a record of a run of ``method_class`` with ``config`` (a RunConfig's dict),
    trained in a pack (``packed``) or alone (the closure then skips :data:`PACKED_ONLY`): ``key``
    and the digest of every unit its numbers can depend on (``units``, by label)."""
    roots = (*((str(root / f), n) for f, n in CORE_ROOTS),
             (str(Path(inspect.getsourcefile(method_class) or "").resolve()), method_class.__qualname__.split(".")[0]))
    units = cached_closure(roots, frozenset(config_strings(config)), root, frozenset() if packed else PACKED_ONLY)
    return {"key": key_of(units), "units": {u.label: u.digest for u in units}}


_CLOSURES: dict[tuple[Any, ...], tuple[list[Unit], dict[str, int]]] = {}


def cached_closure(roots: tuple[tuple[str, str], ...], wanted: frozenset[str], root: Path = PROJECT_ROOT,
                   skip: frozenset[tuple[str, str]] = frozenset()) -> list[Unit]:
    """:func:`closure`, kept per process while none of the files it read has changed."""
    hit = _CLOSURES.get((roots, wanted, root, skip))
    if hit is not None and all(_mtime(path) == mtime for path, mtime in hit[1].items()):
        return hit[0]
    units, files = closure(roots, wanted, root, skip)
    _CLOSURES[(roots, wanted, root, skip)] = (units, {path: _mtime(path) for path in files})
    return units


def _mtime(path: str) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return -1


def changed_units(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Labels of the definitions whose digest differs between two records' ``code.units``
    (matched by name, so a move to another module is no change), and those only one has."""
    def by_name(units: dict[str, str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for label, digest in units.items():
            out.setdefault(label.rsplit(":", 1)[1], set()).add(digest)
        return out

    before, after = by_name(old), by_name(new)
    labels = {label.rsplit(":", 1)[1]: label for label in [*old, *new]}
    return sorted(labels[name] for name in before.keys() | after.keys() if before.get(name) != after.get(name))
