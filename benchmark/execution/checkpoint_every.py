"""How often a run or pack saves its resumable checkpoint (``run --checkpoint-every``): a few
epochs, or a time (no torch import: the command line parses it)."""

from __future__ import annotations

from typing import NamedTuple


class CheckpointEvery(NamedTuple):
    """How often a pack saves its checkpoint: after every ``epochs``-th epoch, or (``minutes``)
    after the first epoch that ends at least that long after the last save (or the pack's
    start), so a pack of short epochs does not write its state every few seconds and one of long
    epochs saves after each; neither (0): never."""

    epochs: int = 0
    minutes: float = 0.0

    @classmethod
    def parse(cls, text: str) -> CheckpointEvery:
        """``E`` (epochs, 0 to 100000; 0: never) or ``Mm`` (minutes above 0, e.g. ``10m``).
        Raises ValueError naming the forms."""
        forms = "E (epochs, a whole number from 0 to 100000; 0: never) or Mm (minutes, e.g. 10m)"
        try:
            every = cls(minutes=float(text[:-1])) if text.endswith("m") else cls(epochs=int(text))
        except ValueError:
            raise ValueError(f"expected {forms}, got {text!r}") from None
        if not (0 <= every.epochs <= 100_000 and 0 <= every.minutes <= 100_000) or text.endswith("m") and not every.minutes > 0:
            raise ValueError(f"expected {forms}, got {text!r}")
        return every

    def due(self, epoch: int, seconds_since_last: float) -> bool:
        """Whether to save after ``epoch`` (1-based), ``seconds_since_last`` after the last save."""
        if self.epochs:
            return epoch % self.epochs == 0
        return bool(self.minutes) and seconds_since_last >= 60 * self.minutes

    def __str__(self) -> str:
        return (f"every {self.epochs} epochs" if self.epochs else f"every {self.minutes:g} minutes" if self.minutes
                else "never")
