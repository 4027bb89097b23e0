"""How methods and hyperparameters look in the report's figures: a fixed colour, marker and line
style per method, the methods' display names (``display_name``, the tables' own from
:mod:`.format`) and hyperparameter symbols (β, α_T, λ, ...).

Built-in methods have a fixed entry of :data:`METHOD_STYLES`: fourteen different colours (the
seven Okabe-Ito colours without yellow, which are safe for the common colour-vision deficiencies,
then darker colours of Paul Tol's schemes and grey, none pale on white), fourteen different
markers and solid lines, so no two of them share a colour or a marker. Any other method (a plugin)
gets a (colour, marker) pair no built-in method has and a dashed / dotted line pattern, by its
place in the sorted names of the report's plugins (:func:`plugin_methods`): the same for the same
methods, and no two plugins of a report share their pair (up to :data:`PLUGIN_PAIRS`' 182 plugins).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .format import display_name  # noqa: F401  (the tables' names: one name per method everywhere)
from .format import HP_SYMBOLS as TABLE_SYMBOLS


class Style(NamedTuple):
    colour: str
    marker: str
    linestyle: object  # a matplotlib line style: "-" or an (offset, dashes) pattern


# colours, in the order the built-in methods take them
PALETTE = ["#000000", "#E69F00", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9",  # Okabe-Ito
           "#AA3377", "#999933", "#332288", "#663333", "#225555", "#666633", "#777777"]  # Tol's purple ... grey
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "h", "p", "<", ">", "d", "H", "*"]
BUILTIN = ["vae", "beta-vae", "lr-vae", "lid-vae", "il-lid-vae", "kl-annealing", "cyclical", "free-bits",
           "delta-vae", "bn-vae", "aggressive", "info-vae", "skip-vae", "lstm-lm"]
METHOD_STYLES = {m: Style(PALETTE[i], MARKERS[i], "-") for i, m in enumerate(BUILTIN)}

# a plugin's choices: any colour but black (the plain VAE's) with any marker, but never a built-in's
# pair, colours and markers both changing from one plugin to the next; a line pattern that is not solid
PLUGIN_COLOURS = PALETTE[1:]
PLUGIN_MARKERS = MARKERS + ["8"]  # matplotlib's filled markers (a hollow one marks a single seed)


def _plugin_pairs() -> list[tuple[str, str]]:
    """Every (colour, marker) pair of the plugins' choices but the built-in methods': the i-th
    pairs colour i mod 13 with marker (i mod 13 + 1 - i div 13) mod 15, so consecutive plugins
    differ in both."""
    builtin = {(style.colour, style.marker) for style in METHOD_STYLES.values()}
    n = len(PLUGIN_COLOURS)
    pairs = [(PLUGIN_COLOURS[i % n], PLUGIN_MARKERS[(i % n + 1 - i // n) % len(PLUGIN_MARKERS)])
             for i in range(n * len(PLUGIN_MARKERS))]
    return [pair for pair in pairs if pair not in builtin]


PLUGIN_PAIRS = _plugin_pairs()
PLUGIN_LINESTYLES = [(0, (5, 2)), (0, (1, 1.5)), (0, (5, 2, 1, 2)), (0, (8, 2, 1, 2, 1, 2)), (0, (3, 1)),
                     (0, (10, 3)), (0, (2, 2, 6, 2))]
_plugins: list[str] = []  # the sorted plugin methods of the report being drawn (plugin_methods)
# the further settings of one method in one panel: these patterns after the method's own
SERIES_LINESTYLES = ["-", (0, (5, 2)), (0, (1, 1.5)), (0, (5, 2, 1, 2)), (0, (8, 2, 1, 2, 1, 2)), (0, (3, 1))]

# hyperparameter names shown as symbols in figures: the tables' (format.HP_SYMBOLS) and a few more
HP_SYMBOLS = {**TABLE_SYMBOLS, "beta_max": "β_max", "beta_start": "β_start"}
GREEK_TEX = {"α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "λ": r"\lambda"}


@contextlib.contextmanager
def plugin_methods(methods: Iterable[str]) -> Iterator[None]:
    """Within the block, plugins (``methods`` without a fixed style) take their styles in sorted
    name order, so that no two of them look alike."""
    global _plugins
    previous, _plugins = _plugins, sorted({m for m in methods if m not in METHOD_STYLES})
    try:
        yield
    finally:
        _plugins = previous


def method_style(method: str) -> Style:
    """The method's colour, marker and line style: fixed for the built-in methods; for any other,
    by its place among the plugins of :func:`plugin_methods` (after them where it is not one)."""
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    i = _plugins.index(method) if method in _plugins else len(_plugins)
    colour, marker = PLUGIN_PAIRS[i % len(PLUGIN_PAIRS)]
    return Style(colour, marker, PLUGIN_LINESTYLES[i % len(PLUGIN_LINESTYLES)])


def hp_name(name: str) -> str:
    """A hyperparameter's name as shown: β, α_T, λ, δ, γ, ...; others as they are (one that takes
    two words, "α schedule", joined by a no-break space: never split when a label wraps)."""
    return HP_SYMBOLS.get(name, name).replace(" ", "\u00a0")


def part_text(column: str, text: str) -> str:
    """One ``name=value`` part of a setting label as figures show it: hyperparameters by symbol
    (β=0.2), the architecture by its value alone (mlp-deep), anything else as it is."""
    name, sep, value = text.partition("=")
    if not sep:
        return text
    if column.startswith("hp."):
        return f"{hp_name(name)}={value}"
    if column == "model.arch":
        return value
    return text


def tex(text: str) -> str:
    """Text for matplotlib: Greek symbols with a subscript (α_T, β_max) as math, ``$`` escaped."""
    text = text.replace("$", r"\$")
    return re.sub(r"([αβγδλ])_(\w+)", lambda m: rf"${GREEK_TEX[m.group(1)]}_{{\mathrm{{{m.group(2)}}}}}$"
                  if len(m.group(2)) > 1 else rf"${GREEK_TEX[m.group(1)]}_{m.group(2)}$", text)
