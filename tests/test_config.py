"""Run configs (benchmark/config.py): run ids and labels are pinned, so moving code around cannot
change them; a config's dict is ``dataclasses.asdict`` of it; configs round-trip through their JSON.

``run_ids.json`` holds, for every named grid in ``benchmark/grids/``, the run id and label of each
run of its expansion (in order). A changed run id would orphan every record made before. (Code
keys follow the code by themselves, :mod:`benchmark.planning.code_key`;
tests/planning/test_code_key.py checks what changes them.)

Rewrite the pins only after a deliberate change of identities:
``.venv/bin/python tests/test_config.py --write``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark.config import DatasetConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from benchmark.planning.grid import grid_names, load_grid  # noqa: E402

PINS = Path(__file__).resolve().parent / "run_ids.json"


def current() -> dict:
    grids = {name: [[run.run_id, run.label()] for run in load_grid(name).expand()] for name in grid_names()}
    return {"grids": grids}


def test_every_named_grid_keeps_its_run_ids_and_labels():
    pinned, now = json.loads(PINS.read_text())["grids"], current()["grids"]
    assert set(pinned) <= set(now), f"named grids gone: {sorted(set(pinned) - set(now))}"  # new grids may be unpinned
    for name in pinned:
        assert now[name] == pinned[name], f"grid {name}: run ids or labels changed"


def test_a_configs_dict_is_dataclasses_asdict_of_it():
    # config.plain replaces dataclasses.asdict (3x faster dry runs); the run id hashes its output
    import dataclasses
    for name in grid_names():
        for run in load_grid(name).expand()[:50]:
            assert run.to_dict() == dataclasses.asdict(run)
            assert [type(v) for v in run.to_dict()["model"].values()] == \
                   [type(v) for v in dataclasses.asdict(run)["model"].values()]


@pytest.mark.parametrize("grid", ["quick", "smoke"])
def test_configs_round_trip(grid):
    for run in load_grid(grid).expand():
        again = RunConfig.from_dict(json.loads(json.dumps(run.to_dict())))
        assert again == run and again.run_id == run.run_id and again.label() == run.label()
        for section, cls in ((run.dataset, DatasetConfig), (run.model, ModelConfig), (run.train, TrainConfig),
                             (run.eval, EvalConfig)):
            assert cls.from_dict(section.to_dict()) == section


if __name__ == "__main__" and "--write" in sys.argv:
    PINS.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS}")
