"""Run records as `run` writes them, made up by the tests (with the PNG grids stored beside them):
the synthetic grid `synth` of tests/report/test_build.py (vae, beta-vae at two betas, lr-vae; seeds
0-2; a failed, a diverged and an old record), which the other report tests reuse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib.image
import numpy as np


GRID = "synth"
D = 4  # latent dims

# (method, hyperparameters, seed) -> AU fraction; other metrics derive from it
AU = {
    ("vae", (), 0): 0.25, ("vae", (), 1): 0.25, ("vae", (), 2): 0.5,
    **{("beta-vae", (("beta", 0.1),), seed): au for seed, au in enumerate([1.0, 0.75, 1.0])},
    **{("beta-vae", (("beta", 4.0),), seed): au for seed, au in enumerate([0.0, 0.25, 0.25])},
    ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 0): 1.0,
}
FAILED = ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 1)
DIVERGED = ("lr-vae", (("alpha_T", 1.0), ("beta", 0.2)), 2)
OLD = ("vae", (), 2)  # written before the new fields existed


def run_id(method: str, hp: tuple, seed: int) -> str:
    return hashlib.sha256(repr((method, hp, seed)).encode()).hexdigest()[:16]


def record(method: str, hp: tuple, seed: int, status: str = "ok") -> dict:
    au = AU.get((method, hp, seed), 0.0)
    rid = run_id(method, hp, seed)
    r = {
        "record_version": 1, "run_id": rid, "grid": GRID, "label": f"{method}{dict(hp)} fashion-mnist seed {seed}",
        "status": status, "error": None, "diverged_epoch": None, "device": "cpu (2 threads)",
        "wall_time_s": 10.0 + seed, "train_time_s": 9.0, "eval_time_s": 1.0, "started_at": "x", "finished_at": "y",
        "environment": {"python": "3.11", "platform": "linux", "packages": {},
                        "git": {"commit": "0123456789abcdef", "dirty": False}},
        "seeds": {}, "method_extras": {},
        "config": {"dataset": {"name": "fashion-mnist", "train_size": 1000, "test_size": 500}, "method": method,
                   "hyperparameters": dict(hp),
                   "model": {"arch": "mlp", "latent_dim": D, "likelihood": "gaussian", "posterior_variance": "logvar",
                             "options": {"hidden": [16], "activation": "relu"}},
                   "train": {"epochs": 3, "batch_size": 32, "lr": 0.001}, "eval": {"au_threshold": 0.01}, "seed": seed},
        "metrics": {}, "vectors": {}, "estimators": {}, "curves": [],
    }
    if status == "failed":
        r["error"] = {"type": "RuntimeError", "message": "CUDA out of memory\nsecond line", "traceback": "Traceback..."}
        return r
    if status == "diverged":
        r.update(diverged_epoch=2,
                 error={"type": "DivergedError", "message": "loss is nan at epoch 2", "traceback": None})
        return r
    r["metrics"] = {"au": au, "au_count": int(au * D), "kl": 2.0 + 10 * au + 0.1 * seed, "mi": 1.0 + 3 * au,
                    "rec": 30.0 - 10 * au + 0.2 * seed, "neg_elbo": 40.0 - au, "mse": 0.02,
                    "nll": 35.0 - 5 * au + 0.3 * seed, "kl_q50": 1.0}
    r["estimators"] = {"split": "test", "examples": 500, "au_threshold": 0.01, "nll_samples": 50}
    r["vectors"] = {"au_variances": [1.0, 0.5 * au + 0.001, 0.02 * au + 0.001, 0.0001],
                    "kl_per_dim": [1.0, 0.5, 0.1, 0.0]}
    r["curves"] = [{"epoch": e, "loss": 50.0 - e, "rec": 40.0 - e, "kl": 3.0 + e,
                    "test_au": min(1.0, au + 0.1 * (3 - e)), "test_au_count": 1, "test_kl": 2.0 + e * au,
                    **({"test_mi": 1.0 + au} if e == 3 else {})}  # MI only on the last epoch
                   for e in (1, 2, 3)]
    r["per_class"] = {"au": {str(c): min(1.0, au + 0.05 * c) for c in range(3)}, "kl": {str(c): 1.0 for c in range(3)}}
    r["noise"] = {"variances": [0.0, 0.5, 1.0], "distance": [0.0, 1.0 + au, 2.0 + au], "diversity": [0.0, 0.5, 0.9],
                  "draws": 8, "points": 16}
    r["artifacts"] = {name: f"{rid}.{name}.png" for name in ("reconstructions", "samples", "traversals")}
    r["estimators"]["latent_images"] = {"traversal_dims": [0, 1], "traversal_values": [-1.0, 1.0]}  # 2 rows
    if (method, hp, seed) == OLD:
        for key in ("per_class", "noise", "artifacts"):
            del r[key]
        del r["metrics"]["nll"]
        r["curves"] = [{k: v for k, v in p.items() if k != "test_mi"} for p in r["curves"]]
    return r


def grid_image(rows: int, tile: int = 8, nrow: int = 8) -> np.ndarray:
    """A grid PNG as the store writes it: ``rows`` x ``nrow`` tiles, 2 px of 0.5 grey around them."""
    image = np.full((rows * (tile + 2) + 2, nrow * (tile + 2) + 2), 0.5)
    for r in range(rows):
        for c in range(nrow):
            top, left = 2 + r * (tile + 2), 2 + c * (tile + 2)
            image[top:top + tile, left:left + tile] = (r + c) / 16
    return image


def write_records(runs: Path, records: list[dict]) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    for r in records:
        (runs / f"{r['run_id']}.json").write_text(json.dumps(r, indent=1, sort_keys=True))
        for name, filename in r.get("artifacts", {}).items():
            matplotlib.image.imsave(runs / filename, grid_image(3 if name == "noise" else 2), cmap="gray")
