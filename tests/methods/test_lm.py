"""The LSTM language model (methods/lm.py): it ignores z, its KL and MI are zero and its IW-NLL is
exact."""

from __future__ import annotations

import pytest
import torch

from text_methods import build, sentences


def test_the_language_model_ignores_z_its_kl_and_mi_are_zero_and_its_iw_nll_is_exact():
    from benchmark.evaluation import metrics

    method = build("lstm-lm").eval()
    model, x = method.model, sentences()
    with torch.no_grad():
        a = model.log_likelihood(x, torch.zeros(1, len(x), 4))
        b = model.log_likelihood(x, 5 * torch.randn(1, len(x), 4))
        out = model(x)
        iw = metrics.importance_weighted_log_likelihood(x, model.encode, model.log_likelihood, num_samples=7)
    torch.testing.assert_close(a, b)
    assert float(out.kl.abs().max()) == 0.0
    torch.testing.assert_close(iw, a[0].double(), rtol=1e-6, atol=1e-5)
    mu, logvar = model.encode(x)
    assert metrics.mutual_information(mu, logvar)["mi"] == pytest.approx(0.0, abs=1e-12)
