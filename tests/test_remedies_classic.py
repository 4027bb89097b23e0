"""The classic remedies: each method's defining property, tested numerically on small inputs.

kl-annealing and cyclical: the KL weight at every step; free-bits: no KL gradient below the
floor, the ordinary one above; delta-vae: every KL_j >= delta, at init and after training
against it; bn-vae: E_x[KL_j] >= gamma^2 / 2; aggressive: encoder-only steps until the block
loss rises, one decoder step, off when the held-out MI drops; info-vae: MMD ~0 for one
distribution, growing with a shift, and the alpha / lambda weights; skip-vae: z reaches the
output through every layer's skip path.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.config import ModelConfig, TrainConfig
from benchmark.discovery import METHODS
from benchmark.errors import GridError
from benchmark.ml.method import build_method
from benchmark.ml.train import Trainer

from image_methods import IMAGE, at, build, minimise_kl, module, per_dim_kl


# --- kl-annealing and cyclical: the weight at every step ----------------------------------------

@pytest.mark.parametrize("beta_start, warmup, total", [(0.0, 0.4, 37), (0.1, 1.0, 20), (0.0, 1.0, 2)])
def test_kl_annealing_linear_weight_at_every_step(beta_start, warmup, total):
    method = build("kl-annealing", beta_start=beta_start, warmup=warmup, beta_max=1.0)
    x = torch.rand(6, *IMAGE)
    for t in range(total):
        parts = method.loss(x, at(t, total))
        expected = beta_start + (1.0 - beta_start) * min(t / max(total - 1, 1) / warmup, 1.0)
        assert parts["beta"] == pytest.approx(expected, abs=1e-12), t
        torch.testing.assert_close(parts["loss"], parts["rec"] + expected * parts["kl"])
    assert method.loss(x, at(0, total))["beta"] == beta_start
    assert method.loss(x, at(total - 1, total))["beta"] == 1.0


def test_kl_annealing_sigmoid_weight_at_every_step():
    total, warmup, k = 41, 0.5, 10.0
    method = build("kl-annealing", schedule="sigmoid", warmup=warmup, steepness=k)
    x = torch.rand(6, *IMAGE)
    logistic = lambda v: 1 / (1 + math.exp(-k * (v - 0.5)))
    betas = [method.loss(x, at(t, total))["beta"] for t in range(total)]
    for t, beta in enumerate(betas):
        u = min(t / (total - 1) / warmup, 1.0)
        assert beta == pytest.approx((logistic(u) - logistic(0)) / (logistic(1) - logistic(0)), abs=1e-12), t
    assert betas[0] == 0.0 and betas[20:] == [1.0] * 21 and betas[10] == pytest.approx(0.5)


@pytest.mark.parametrize("total, cycles, ratio", [(40, 4, 0.5), (30, 3, 0.8), (50, 1, 0.5)])
def test_cyclical_weight_rises_over_the_first_ratio_of_each_cycle_then_holds(total, cycles, ratio):
    method = build("cyclical", cycles=cycles, ratio=ratio, beta_max=0.8)
    x = torch.rand(6, *IMAGE)
    length = total // cycles
    for t in range(total):
        parts = method.loss(x, at(t, total))
        within = (t % length) / length
        expected = 0.8 * min(within / ratio, 1.0)
        assert parts["beta"] == pytest.approx(expected, abs=1e-12), t
        torch.testing.assert_close(parts["loss"], parts["rec"] + expected * parts["kl"])
    starts = [method.loss(x, at(c * length, total))["beta"] for c in range(cycles)]
    assert starts == [0.0] * cycles  # every cycle starts again from 0


# --- free bits: the hinge's gradient ------------------------------------------------------------

def posteriors(b: int = 16, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors whose batch-mean KL is small in dims 0-2 (means ~0.1) and large in dims 3-5."""
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.1, 0.1, 0.1, 2.0, 2.0, 2.0])[:d]
    mu = (torch.randn(b, d, generator=generator, dtype=torch.float64) * scale).requires_grad_()
    logvar = (0.05 * torch.randn(b, d, generator=generator, dtype=torch.float64)).requires_grad_()
    return mu, logvar


def test_free_bits_gives_no_gradient_below_lam_and_the_kl_gradient_above():
    free_bits_kl = module("free-bits").free_bits_kl
    mu, logvar = posteriors()
    batch_kl = per_dim_kl(mu, logvar).mean(0)
    lam = 0.5
    assert (batch_kl[:3] < lam).all() and (batch_kl[3:] > lam).all()
    term = free_bits_kl(mu, logvar, lam)
    assert float(term.detach()) == pytest.approx(3 * lam + float(batch_kl[3:].detach().sum()))
    grad_mu, grad_logvar = torch.autograd.grad(term, (mu, logvar))
    plain_mu, plain_logvar = torch.autograd.grad(per_dim_kl(mu, logvar).sum(-1).mean(), (mu, logvar))
    assert (grad_mu[:, :3] == 0).all() and (grad_logvar[:, :3] == 0).all()
    torch.testing.assert_close(grad_mu[:, 3:], plain_mu[:, 3:])
    torch.testing.assert_close(grad_logvar[:, 3:], plain_logvar[:, 3:])


def test_free_bits_groups_and_per_example_hinge():
    free_bits_kl = module("free-bits").free_bits_kl
    mu, logvar = posteriors()
    kl = per_dim_kl(mu, logvar)
    grouped = free_bits_kl(mu, logvar, 1.0, group_size=3)  # groups {0,1,2} (small) and {3,4,5}
    assert float(grouped.detach()) == pytest.approx(1.0 + float(kl[:, 3:].sum(-1).mean().detach()))
    assert all(g is None or (g[:, :3] == 0).all()
               for g in torch.autograd.grad(grouped, (mu, logvar), allow_unused=True))
    per_example = free_bits_kl(mu, logvar, 0.01, hinge="example")
    assert float(per_example.detach()) == pytest.approx(float(kl.clamp(min=0.01).sum(-1).mean().detach()))
    (grad_mu,) = torch.autograd.grad(per_example, mu)
    assert ((grad_mu == 0) == (kl < 0.01)).all() and (kl < 0.01).any() and (kl > 0.01).any()


def test_free_bits_loss_and_group_size_check():
    method = build("free-bits", lam=0.3)
    parts = method.loss(torch.rand(8, *IMAGE), at(0, 10))
    torch.testing.assert_close(parts["loss"], parts["rec"] + parts["kl_free_bits"])
    assert float(parts["kl_free_bits"].detach()) >= 4 * 0.3
    with pytest.raises(GridError, match="group_size = 3 does not divide latent_dim = 4"):
        build("free-bits", group_size=3)


# --- delta-VAE: a committed rate for every input and dimension ----------------------------------

@pytest.mark.parametrize("delta", [0.01, 0.1, 1.0, 5.0])
def test_committed_variance_solves_the_rate_equation(delta):
    s = module("delta-vae").committed_variance(delta)
    assert 0 < s < 1 and 0.5 * (s - 1 - math.log(s)) == pytest.approx(delta, rel=1e-12)


def extreme_inputs(n: int = 64) -> torch.Tensor:
    """Inputs that drive the encoder's raw log-variance to both extremes."""
    torch.manual_seed(5)
    x = torch.rand(n, *IMAGE)
    return torch.cat([x, 30 * x, -30 * x, torch.zeros(1, *IMAGE)])


@pytest.mark.parametrize("delta", [0.1, 0.5])
def test_delta_vae_kl_is_at_least_delta_for_every_input_and_dimension(delta):
    method = build("delta-vae", delta=delta)
    x, extreme = extreme_inputs()[:64], extreme_inputs()
    for mode in (method.train, method.eval):
        mode()
        with torch.no_grad():
            assert per_dim_kl(*method.model.encode(extreme)).min() >= delta - 1e-6
    minimise_kl(method, x, steps=80)
    for mode in (method.train, method.eval):
        mode()
        with torch.no_grad():
            assert per_dim_kl(*method.model.encode(extreme)).min() >= delta - 1e-6
            kl = per_dim_kl(*method.model.encode(x))
        assert kl.min() >= delta - 1e-6 and kl.mean() < delta + 0.05  # pushed against the floor, not through
    extras = method.record_extras()
    assert extras["committed_kl_per_dim"] == pytest.approx(delta) and extras["sigma_upper"] < 1
    # the same training collapses a plain VAE's posteriors far below delta
    vae = build("vae")
    minimise_kl(vae, x, steps=80)
    with torch.no_grad():
        assert per_dim_kl(*vae.model.encode(x)).mean() < delta / 2


def test_delta_vae_refuses_the_softplus_variance():
    with pytest.raises(GridError, match='posterior_variance = "softplus-logvar"'):
        build_method("delta-vae", {}, ModelConfig(latent_dim=4, options={"hidden": [8]},
                                                  posterior_variance="softplus-logvar"), IMAGE)
    with pytest.raises(GridError, match="sigma_lower = 0.9 is not below sigma_u"):
        build("delta-vae", delta=0.5, sigma_lower=0.9)


# --- BN-VAE: E_x[KL_j] >= gamma^2 / 2 -------------------------------------------------------------

def raw_mean_variance(method, x: torch.Tensor) -> torch.Tensor:
    """Batch variance (N divisor, as batch norm) of the encoder's raw means [d]."""
    return method.model.encoder.encoder(x)[0].var(0, unbiased=False)


@pytest.mark.parametrize("gamma", [0.3, 0.6])
def test_bn_vae_expected_kl_per_dimension_is_at_least_gamma_squared_over_two(gamma):
    """In training mode E_batch[mu_j^2] = gamma^2 v_j / (v_j + eps) + b_j^2 exactly (v_j: the batch
    variance of the raw means, eps = 1e-5 of batch norm), so E[KL_j] >= gamma^2 / 2 whenever
    v_j >> eps, whatever the encoder and the learned shift b; a plain VAE has no such floor."""
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    floor = gamma ** 2 / 2
    for seed in range(3):
        method = build("bn-vae", seed=seed, gamma=gamma, latent=6)
        with torch.no_grad():
            method.model.encoder.shift.normal_()  # any learned shift only adds to the floor
        method.train()
        with torch.no_grad():
            mu, logvar = method.model.encode(x)
            v, b = raw_mean_variance(method, x), method.model.encoder.shift
            torch.testing.assert_close(mu.square().mean(0), gamma ** 2 * v / (v + 1e-5) + b.square(), rtol=1e-4, atol=1e-6)
            kl = per_dim_kl(mu, logvar).mean(0)
            assert (kl >= floor * v / (v + 1e-5) * (1 - 1e-5)).all()
            assert (v > 100 * 1e-5).all() and kl.min() >= floor * 0.99  # a fresh encoder: v >> eps
    vae = build("vae", latent=6)
    minimise_kl(vae, x, steps=50)
    with torch.no_grad():
        assert per_dim_kl(*vae.model.encode(x)).mean(0).max() < floor / 2


def test_bn_vae_floor_holds_in_evaluation_with_the_running_statistics():
    method = build("bn-vae", gamma=0.5, latent=6)
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    method.train()
    with torch.no_grad():
        for _ in range(100):  # the running statistics converge to the data's
            method.model.encode(x)
    method.eval()
    with torch.no_grad():
        assert per_dim_kl(*method.model.encode(x)).mean(0).min() >= 0.5 ** 2 / 2 * 0.99
    names = [name for name, _ in method.named_parameters()]
    assert "model.encoder.shift" in names and not any("norm" in n for n in names)  # gamma fixed, shift learned


def test_bn_vae_floor_needs_raw_mean_variance_above_the_batch_norm_eps():
    """The caveat, recorded in every run's method_extras: an optimiser that shrinks the raw
    means' batch variance below batch norm's eps takes the floor with it (here Adam on the KL
    alone drives it to 0 within a few dozen steps; the running variance follows)."""
    method = build("bn-vae", gamma=0.5, latent=6)
    x = torch.rand(256, *IMAGE, generator=torch.Generator().manual_seed(1))
    minimise_kl(method, x, steps=150)
    method.train()
    with torch.no_grad():
        mu, logvar = method.model.encode(x)
        v = raw_mean_variance(method, x)
    assert (v < 1e-6).any() and per_dim_kl(mu, logvar).mean(0).min() < 0.5 ** 2 / 2 * 0.1
    extras = method.record_extras()
    assert extras["dims_near_eps"] >= 1 and extras["raw_mean_running_var_min"] < 1e-3


# --- aggressive inference ----------------------------------------------------------------------

def test_block_rule_stops_when_a_block_mean_rises_or_at_the_cap():
    BlockStop = module("aggressive").BlockStop

    def steps(losses: list[float], block: int, cap: int) -> int:
        rule = BlockStop(block, cap)
        for loss in losses:
            if not rule.add(torch.tensor(loss), 4):
                break
        return rule.steps

    falling_then_up = [10.0] * 5 + [9.0] * 5 + [8.0] * 5 + [8.5] * 5 + [1.0] * 80
    assert steps(falling_then_up, block=5, cap=100) == 20  # the 4th block's mean exceeds the 3rd's
    assert steps([10.0 - 0.01 * k for k in range(200)], block=10, cap=100) == 100  # never rises: the cap
    assert steps([5.0] * 200, block=10, cap=37) == 37  # equal means do not stop
    assert steps([1e9] * 20 + [2e9] * 10, block=10, cap=100) == 30  # the first block is always kept


class SpyTools:
    """Step tools that record which parameters each step moves and count fresh batches."""

    def __init__(self, method, batch: int = 8):
        self.method, self.batch = method, batch
        self.optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
        self.stepped: list[set[str]] = []
        self.fresh = 0

    def step(self, loss, params=None):
        ids = None if params is None else {id(p) for p in params}
        self.stepped.append({n for n, p in self.method.named_parameters() if ids is None or id(p) in ids})
        self.optimizer.zero_grad()
        loss.backward()
        if ids is not None:
            for p in self.method.parameters():
                if id(p) not in ids:
                    p.grad = None
        self.optimizer.step()

    def fresh_batch(self):
        self.fresh += 1
        return torch.rand(self.batch, *IMAGE)


def test_aggressive_step_is_encoder_only_steps_then_one_decoder_step():
    method = build("aggressive", block=3, max_inner_steps=12)
    tools = SpyTools(method)
    parts = method.training_step(torch.rand(8, *IMAGE), at(0, 10), tools)
    encoder = {n for n, _ in method.named_parameters() if n.startswith("model.encoder.")}
    decoder = {n for n, _ in method.named_parameters() if n.startswith("model.decoder.")}
    inner = int(parts["inner_steps"])
    assert 3 <= inner <= 12 and parts["aggressive"] == 1.0
    assert tools.stepped == [encoder] * inner + [decoder]
    assert tools.fresh == inner - 1  # the first inner step reuses the decoder step's batch


def test_aggressive_mode_ends_when_held_out_mi_drops(monkeypatch):
    method = build("aggressive", mi_patience=1, block=2, max_inner_steps=6)
    mis = iter([0.5, 0.8, 0.7, 0.9])
    monkeypatch.setattr(method, "held_out_mi", lambda held_out: next(mis))
    tools = SpyTools(method)
    x = torch.rand(8, *IMAGE)
    history = []
    for epoch in range(4):
        parts = method.training_step(x, at(epoch, 10), tools)
        history.append((parts["aggressive"], parts["inner_steps"] > 0))
        method.on_epoch_end(epoch, x)
    assert history == [(1.0, True), (1.0, True), (1.0, True), (0.0, False)]
    assert len(tools.stepped[-1]) == len(list(method.parameters()))  # after: one joint step
    extras = method.record_extras()
    assert extras["aggressive_stopped_after_epoch"] == 3 and extras["held_out_mi_checks"] == [0.5, 0.8, 0.7]
    assert [n > 0 for n in extras["inner_steps_per_epoch"]] == [True, True, True, False]
    patient = build("aggressive", mi_patience=2)
    mis = iter([0.5, 0.8, 0.7, 0.9, 0.6, 0.6])
    monkeypatch.setattr(patient, "held_out_mi", lambda held_out: next(mis))
    for epoch in range(6):
        patient.on_epoch_end(epoch, x)
    assert patient.record_extras()["aggressive_stopped_after_epoch"] == 5  # the image code's counting


def test_aggressive_encoder_and_decoder_keep_separate_optimiser_state():
    method = build("aggressive", block=2, max_inner_steps=6)
    x = (torch.rand(64, *IMAGE) * 255).to(torch.uint8)
    trainer = Trainer([method], [x], TrainConfig(epochs=1, batch_size=16), [torch.Generator().manual_seed(0)],
                      [torch.rand(32, *IMAGE)])
    (parts,) = trainer.run_epoch()
    state = trainer.step.optimizer.state
    counts = method.record_extras()["inner_steps_per_epoch"]
    assert len(counts) == 1 and counts[0] == pytest.approx(4 * parts["inner_steps"])
    for p in method.model.encoder.parameters():
        assert int(state[p]["step"]) == counts[0]
    for p in method.model.decoder.parameters():
        assert int(state[p]["step"]) == 4  # one decoder step per batch
    assert len(method.record_extras()["held_out_mi_checks"]) == 1


# --- InfoVAE: the MMD term and the weights ------------------------------------------------------

@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_mmd_is_zero_for_one_distribution_and_grows_with_a_shift(kernel):
    mmd = module("info-vae").mmd
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(600, 4, generator=generator, dtype=torch.float64) for _ in range(2))
    same = float(mmd(a, b, kernel))
    assert abs(same) < 2e-3
    shifted = [float(mmd(a, b + s, kernel)) for s in (0.25, 0.5, 1.0, 2.0)]
    assert shifted == sorted(shifted) and shifted[0] > 5 * abs(same)
    biased = float(mmd(a, b, kernel, estimator="biased"))
    assert 0 <= biased < 5e-3 and biased > same  # the V-statistic's positive bias


@pytest.mark.parametrize("alpha, lam", [(1.0, 1.0), (1.0, 1000.0), (0.0, 10.0), (-0.5, 5.0)])
def test_info_vae_weights_kl_and_mmd_as_in_the_paper(alpha, lam):
    method = build("info-vae", alpha=alpha, lam=lam)
    parts = method.loss(torch.rand(16, *IMAGE), at(0, 10))
    expected = parts["rec"] + (1 - alpha) * parts["kl"] + (alpha + lam - 1) * parts["mmd"]
    torch.testing.assert_close(parts["loss"], expected)


def test_info_vae_refuses_a_negative_mmd_weight():
    with pytest.raises(GridError, match="MMD weight alpha \\+ lam - 1 = -0.5 is negative"):
        build("info-vae", alpha=0.0, lam=0.5)


# --- skip-VAE: z enters every decoder layer ----------------------------------------------------

SKIP_MODELS = [
    ("mlp", {"hidden": [16, 16]}, (1, 8, 8)),
    ("mlp-shallow", {"width": 16}, (1, 8, 8)),
    ("mlp-deep", {"width": 16, "depth": 3}, (1, 8, 8)),
    ("conv", {"channels": [4, 8], "hidden": 16}, (1, 8, 8)),
    ("conv28", {"channels": [4, 8], "hidden": 16}, (1, 28, 28)),
    ("conv64", {"channels": [4, 4, 8, 8], "hidden": 16}, (3, 64, 64)),
]


def isolated_jacobian_norm(decoder, keep: str | None, z: torch.Tensor) -> float:
    """||J v|| of ``decoder`` at z when z may only enter through skip ``keep`` (None: through no
    skip): the first layer's weight and every other skip map are zeroed, on a copy."""
    import copy

    decoder = copy.deepcopy(decoder).double()
    first = next(m for m in decoder.modules() if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d)))
    with torch.no_grad():
        first.weight.zero_()
        for name, skip in getattr(decoder, "skips", {}).items():
            if name != keep:
                skip.weight.zero_()
    v = torch.randn_like(z)
    _, jv = torch.autograd.functional.jvp(decoder, z, v)
    return float(jv.norm())


@pytest.mark.parametrize("arch, options, shape", SKIP_MODELS)
def test_skip_decoder_feeds_z_into_every_layer(arch, options, shape):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, latent_dim=3, options=options)
    decoder = build_method("skip-vae", {}, config, shape).model.decoder
    affine = [m for m in decoder.layers if isinstance(m, (torch.nn.Linear, torch.nn.ConvTranspose2d))]
    assert len(decoder.skips) == len(affine) - 1  # every layer after the first one
    z = torch.randn(2, 3, dtype=torch.float64)
    assert decoder.double()(z).shape == (2, *shape)
    for name in decoder.skips:
        assert isolated_jacobian_norm(decoder, name, z) > 1e-6, name
    assert isolated_jacobian_norm(decoder, None, z) == 0.0
    torch.manual_seed(0)
    plain = build_method("vae", {}, config, shape).model.decoder
    assert isolated_jacobian_norm(plain, None, z) == 0.0  # without skips, z has no other way in


def test_skip_output_false_leaves_the_output_layer_alone():
    method = build("skip-vae", hidden=(16, 16), skip_output=False)
    affine = [i for i, m in enumerate(method.model.decoder.layers) if isinstance(m, torch.nn.Linear)]
    assert sorted(int(k) for k in method.model.decoder.skips) == affine[1:-1]


@pytest.mark.parametrize("hidden, options, message", [
    ((), {}, "an mlp without hidden layers has no layer"),
    ((16,), {"skip_output": False}, "set skip_output = true"),
])
def test_skip_vae_refuses_a_decoder_without_layers_to_skip_into(hidden, options, message):
    with pytest.raises(GridError, match=message):
        build("skip-vae", hidden=hidden, **options)


def test_aggressive_decides_on_a_validation_split_held_out_from_training_never_the_test_split(monkeypatch):
    from benchmark.data.catalog import load_dataset
    from benchmark.planning.grid import load_grid
    from benchmark.execution.runner import execute_pack

    config = next(r for r in load_grid("smoke").expand() if r.method == "aggressive" and r.dataset.name == "pinwheel")
    seen: list[torch.Tensor] = []
    cls = METHODS["aggressive"]
    monkeypatch.setattr(cls, "held_out_mi", lambda self, held_out: seen.append(held_out.clone()) or 0.0)
    result = execute_pack([config], device="cpu", log=lambda line: None)[0]
    assert result.record.status == "ok" and seen
    data = load_dataset("pinwheel", seed=config.stream_seed("data"), train_size=config.dataset.train_size,
                        test_size=config.dataset.test_size)
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    held, test, train = rows(seen[0]), rows(data.test.x), rows(data.train.x)
    fraction = config.hyperparameters["valid_fraction"]
    assert len(seen[0]) == round(fraction * config.dataset.train_size)
    assert held <= train and not held & test  # drawn from the training examples, none from the test split
    assert result.record.data["valid"] == {"examples": len(seen[0]), "source": "held out from the training split"}
    assert "validation split" in result.record.method_extras["mi_data"]
