"""Text VAEs (benchmark/ml/sequence.py): the LSTM models, their likelihood, every method's text form
and its defining property, and the grid's checks for text runs. (The language model's:
tests/methods/test_lm.py; the training loop's text parts: tests/ml/test_train.py.)"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from benchmark.cli import main
from benchmark.config import ModelConfig
from benchmark.data.vocabulary import BOS_ID, EOS_ID, PAD_ID
from benchmark.discovery import METHODS
from benchmark.ml import sequence
from benchmark.ml.method import model_problem
from benchmark.ml.sequence import LSTMEncoder, SequenceVAEModel, lengths_of, teacher_forced_soft_tokens

from text_methods import MODEL, SHAPE, build, sentences

TEXT_METHODS = [n for n in METHODS.names() if model_problem(n, {}, MODEL) is None]


def test_every_method_applies_to_text_or_says_why_not():
    assert set(TEXT_METHODS) == set(METHODS.names())  # every built-in method has a text form
    assert model_problem("lstm-lm", {}, ModelConfig()) is not None


def test_the_encoder_reads_each_sentence_up_to_its_last_token_whatever_the_padding():
    torch.manual_seed(0)
    encoder = LSTMEncoder(SHAPE.vocab_size, 8, 16, 4).eval()
    x = sentences()
    padded = torch.cat([x, torch.zeros(len(x), 5, dtype=torch.long)], dim=1)
    alone = torch.cat([encoder(x[i:i + 1, :int(lengths_of(x[i:i + 1]))])[0] for i in range(len(x))])
    torch.testing.assert_close(encoder(padded)[0], alone, rtol=1e-5, atol=1e-6)
    soft = torch.nn.functional.one_hot(x, SHAPE.vocab_size).float() * (x != PAD_ID)[..., None]
    torch.testing.assert_close(encoder(soft)[0], encoder(x)[0], rtol=1e-5, atol=1e-6)  # one-hot rows = the ids


def test_the_categorical_likelihood_is_the_sentence_cross_entropy_and_the_forward_agrees():
    method = build("vae").eval()
    model: SequenceVAEModel = method.model
    x = sentences()
    z = torch.randn(len(x), 4)
    with torch.no_grad():
        logits = model.decode_given(z, x)
    manual = torch.tensor([
        -sum(float(torch.log_softmax(logits[i, t], -1)[x[i, t + 1]]) for t in range(int(lengths_of(x[i:i + 1])) - 1))
        for i in range(len(x))])
    torch.testing.assert_close(model.likelihood.rec(logits, x).double(), manual.double(), rtol=1e-5, atol=1e-4)
    many = torch.randn(3, len(x), 4)  # log_likelihood scores S x B pairs in chunks: the same numbers
    with torch.no_grad():
        direct = torch.stack([model.likelihood.log_prob(model.decode_given(many[s], x), x) for s in range(3)])
        torch.testing.assert_close(model.log_likelihood(x, many), direct, rtol=1e-5, atol=1e-4)


def test_scoring_many_sentences_decodes_at_most_logit_tokens_at_a_time(monkeypatch):
    # One short sentence among long ones once put every pair in one chunk trimmed to the longest:
    # 12 GB of LID-decoder activations for 1000 PTB sentences instead of about 1.
    method = build("vae").eval()
    model: SequenceVAEModel = method.model
    long = torch.randint(EOS_ID + 1, SHAPE.vocab_size, (30, 12))
    long[:, 0], long[:, -1] = BOS_ID, EOS_ID
    short = torch.full((1, 12), PAD_ID)
    short[0, :3] = torch.tensor([BOS_ID, EOS_ID + 1, EOS_ID])
    x = torch.cat([short, long])
    monkeypatch.setattr(sequence, "LOGIT_TOKENS", 60)
    sizes = []
    decoder = model.decoder.forward
    monkeypatch.setattr(model.decoder, "forward", lambda z, xs: sizes.append(xs.numel()) or decoder(z, xs))
    z = torch.randn(2, len(x), 4)
    with torch.no_grad():
        chunked = model.log_likelihood(x, z)
        direct = torch.stack([model.likelihood.log_prob(decoder(z[s], x), x) for s in range(2)])
    assert sum(sizes) >= 2 * 30 * 12 and max(sizes) <= 60
    torch.testing.assert_close(chunked, direct, rtol=1e-5, atol=1e-4)
    assert [sequence.chunk_end([1, 5, 5, 9], 0, t) for t in (1, 10, 15, 36)] == [1, 2, 3, 4]


@pytest.mark.parametrize("name", [n for n in TEXT_METHODS if n != "lstm-lm"])
def test_every_text_decoder_depends_on_z_at_init(name):
    model = build(name).eval().model
    x = sentences()
    with torch.no_grad():
        a = model.log_likelihood(x, torch.zeros(1, len(x), 4))
        b = model.log_likelihood(x, 3 * torch.randn(1, len(x), 4))
    assert float((a - b).abs().max()) > 1e-4, f"{name}: log p(x|z) does not change with z at init"


def test_skip_vae_feeds_z_into_every_steps_output():
    model = build("skip-vae").eval().model
    assert model.decoder.z_output and model.decoder.output.in_features == 16 + 4
    with pytest.raises(Exception, match="skip_output"):
        build("skip-vae", skip_output=False)


def test_the_lid_sequence_decoder_is_injective_in_z_through_its_icnn_path_only():
    method = build("il-lid-vae", L=0.5, hidden_latent=16, hidden_data=16).eval()
    decoder, x = method.model.decoder, sentences(6)
    za, zb = torch.randn(len(x), 4), torch.randn(len(x), 4)
    la, lb = decoder(za, x), decoder(zb, x)
    gap = (la - lb).norm(dim=-1)  # [B, T - 1]: every position
    assert bool((gap >= decoder.inverse_lipschitz * (za - zb).norm(dim=-1)[:, None] - 1e-5).all())
    assert decoder.inverse_lipschitz == pytest.approx(0.5)
    state = decoder.init_state(torch.ones_like(za))  # the LSTM's state is the same for every z
    torch.testing.assert_close(state, decoder.init_state(torch.ones_like(zb)))


@pytest.mark.parametrize("decoding", ["teacher-forced", "free-running"])
def test_lr_vae_on_text_reaches_encoder_and_decoder_and_falls_when_trained(decoding):
    lr_module = sys.modules[METHODS["lr-vae"].__module__]
    method = build("lr-vae", sequence_decoding=decoding, decode_length=6)
    x = sentences(16)
    config = method.config
    out = method.model(x)
    decoded = lr_module.decode_for_lr(method.model, out.z, x, config)
    rows = decoded.sum(-1)
    assert bool((((rows - 1).abs() < 1e-5) | (rows == 0)).all())  # distributions, or padding
    loss = lr_module.latent_reconstruction(method.model, out, config, x)
    loss.backward()
    for part in (method.model.encoder, method.model.decoder):
        assert any(float(p.grad.abs().sum()) > 0 for p in part.parameters() if p.grad is not None)
    # Trained on L_LR alone with the same latents every step (a fixed seed), E_mu(D(z)) learns to
    # recover z: the term falls towards 0, its defining property.
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-2)
    first = float(loss.detach())
    for _ in range(200):
        torch.manual_seed(5)
        optimizer.zero_grad()
        lr_module.latent_reconstruction(method.model, method.model(x), config, x).backward()
        optimizer.step()
    torch.manual_seed(5)
    with torch.no_grad():
        last = float(lr_module.latent_reconstruction(method.model, method.model(x), config, x))
    assert last < 0.25 * first, f"L_LR {first:.3g} -> {last:.3g}: E_mu(D(z)) did not learn to recover z"


def test_teacher_forced_soft_tokens_follow_the_sentence():
    x = sentences(4)
    logits = torch.randn(4, x.shape[1] - 1, SHAPE.vocab_size)
    soft = teacher_forced_soft_tokens(logits, x)
    assert bool((soft[:, 0].argmax(-1) == BOS_ID).all())
    torch.testing.assert_close(lengths_of(soft), lengths_of(x))


TEXT_GRID = """
seeds = [0]
[train]
epochs = 1
batch_size = 16
[model]
arch = "{arch}"
latent_dim = 4
{model}
[eval]
nll_samples = 4
nll_examples = 8
[[datasets]]
name = "{dataset}"
train_size = 64
test_size = 16
[[methods]]
name = "{method}"
"""


@pytest.mark.parametrize("arch, dataset, model, method, message", [
    ("mlp", "ptb", "", "vae", "holds sentences of token ids and arch 'mlp' takes fixed-size examples"),
    ("lstm-small", "pinwheel", "", "vae", "takes sentences"),
    ("lstm-small", "ptb", 'likelihood = "gaussian"', "vae", "do not go together"),
    ("lstm-small", "ptb", "max_length = 40", "vae", "more than this model's max_length = 40"),
    ("mlp", "pinwheel", "", "lstm-lm", "a language model reads sentences"),
])
def test_text_and_image_mismatches_are_one_line_errors_before_anything_trains(tmp_path, capsys, arch, dataset,
                                                                               model, method, message):
    grid = tmp_path / "bad.toml"
    grid.write_text(TEXT_GRID.format(arch=arch, dataset=dataset, model=model, method=method))
    assert main(["run", "--grid", str(grid), "--results", str(tmp_path / "results"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "results" / "bad" / "runs").exists()


def test_a_text_run_records_what_the_literature_reports(tmp_path):
    grid = tmp_path / "tiny.toml"
    grid.write_text(TEXT_GRID.format(arch="lstm-small", dataset="ptb", model="embed = 8\nhidden = 16", method="vae"))
    results = tmp_path / "results"
    assert main(["run", "--grid", str(grid), "--results", str(results), "--device", "cpu", "--pack", "4"]) == 0
    import json

    (record,) = [json.loads(p.read_text()) for p in (results / "tiny" / "runs").glob("*.json")]
    m, est = record["metrics"], record["estimators"]
    assert {"ppl", "ppl_elbo", "nll", "neg_elbo", "kl", "mi", "au"} <= set(m) and "mse" not in m
    assert not any(k.startswith("geo_") for k in m) and record.get("noise") is None and not record.get("artifacts")
    assert set(est["not_applicable"]) == {"mse", "decoder_geometry", "noise_sensitivity", "images"}
    assert est["tokens"] > 16 and est["nll_tokens"] > 8 and "</s>" in est["tokens_counted"]
    assert m["ppl"] == pytest.approx(math.exp(m["nll"] * est["nll_examples"] / est["nll_tokens"]), rel=1e-9)
    assert len(record["texts"]["samples"]) == 8 and "=>" in record["texts"]["reconstructions"][0]
    assert record["data"]["kind"] == "package" and record["data"]["valid"]["source"] == "published"


def test_lstm_runs_cannot_pack_because_vmap_has_no_lstm_rule():
    """Why LSTM runs train alone (``pack_problem``): torch.func.vmap has no batching rule for the
    fused LSTM (checked on torch 2.14). When this test fails, torch has one: packing text runs
    becomes possible (make ``pack_problem`` let them through and test packed against alone)."""
    from torch.func import functional_call, stack_module_state, vmap

    from benchmark.ml.pack import pack_problem

    lstms = [torch.nn.LSTM(4, 8, batch_first=True) for _ in range(2)]
    params, buffers = stack_module_state(lstms)
    x = torch.randn(2, 3, 5, 4)
    with pytest.raises(Exception, match="(?i)batching rule|not implemented|lstm"):
        vmap(lambda p, b, xi: functional_call(lstms[0], (p, b), (xi,))[0])(params, buffers, x)
    assert "aten::lstm" in pack_problem(METHODS["vae"], MODEL)
