"""The performance bench: runs in quick mode, writes a well-formed JSON with positive, finite
ratios, and compares like with like. No wall-clock assertions: timings depend on the machine."""

import argparse
import json
import math
import sys

import pytest
import torch

from benchmark.discovery import METHODS
from benchmark.ml.method import TrainingProgress
from benchmark.tools.bench import common, loops, main, peer, speed, text


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    threads = torch.get_num_threads()
    code = main.main(parser.parse_args(["--quick", "--device", "cpu", "--out", str(out)]))
    assert torch.get_num_threads() == threads  # --quick's single thread does not leak
    return code, json.loads(out.read_text())


def test_quick_bench_writes_the_documented_json(quick_result):
    code, result = quick_result
    assert code == 0, result["errors"]
    assert result["bench_version"] == common.BENCH_VERSION
    machine = result["machine"]
    for key in ("cpu", "cpu_count", "torch_threads", "torch", "load_avg", "date", "device"):
        assert key in machine
    assert machine["torch"] == torch.__version__
    assert result["settings"]["quick"] is True
    assert isinstance(result["load_avg_after"], list)
    assert set(result["sections"]) == {"threads", "throughput", "metrics", "methods", "pythae", "seed_batching"}
    assert not result["errors"]
    for value in _numbers(result["sections"]):
        assert math.isfinite(value)


def test_quick_bench_throughput_ratios(quick_result):
    _, result = quick_result
    section = result["sections"]["throughput"]
    assert set(section["presets"]) == {p.name for p in common.QUICK_PRESETS}
    for entry in section["presets"].values():
        for arm in ("harness", "minimal"):
            assert _positive(entry["examples_per_s"][arm])
            assert len(entry["times_s"][arm]) == section["epochs_timed"] + 1 == 4 * result["settings"]["repeats"] + 1
        assert _positive(entry["harness_vs_minimal"]["ratio"])
        assert _positive(entry["harness_vs_minimal"]["ratio_of_medians"])
        assert isinstance(entry["meets_target"], bool)
        if section["fused_adam_supported"]:
            assert _positive(entry["fused_adam_vs_minimal"]["ratio"])


def test_quick_bench_metric_and_method_costs(quick_result):
    _, result = quick_result
    metrics = result["sections"]["metrics"]
    for name in ("encode_test_split", "active_units", "kl", "mutual_information", "curve_point", "evaluate"):
        assert _positive(metrics["metrics"][name]["seconds"]), name
        assert _positive(metrics["metrics"][name]["per_epoch"]), name
    grid = metrics["quick_grid"]
    if grid["available"]:
        assert _positive(grid["evaluate_share"]) and _positive(grid["evaluate_and_curves_share"])
        assert grid["method_ratios_used"] is True
    methods = result["sections"]["methods"]
    assert not methods["failed"]
    assert set(methods["methods"]) | set(methods["not_applicable"]) == set(METHODS.names())
    assert "vae" in methods["methods"] and "lstm-lm" in methods["not_applicable"]  # a text-only method
    assert methods["methods"]["vae"]["step_cost_vs_vae"] == pytest.approx(1.0)
    for entry in methods["methods"].values():
        for key in ("step_ms", "evaluate_s", "step_cost_vs_vae", "evaluate_cost_vs_vae"):
            assert _positive(entry[key]), key


def test_quick_bench_optional_sections(quick_result):
    _, result = quick_result
    pythae = result["sections"]["pythae"]
    if pythae["available"]:
        assert _positive(pythae["pythae_vs_harness"]["ratio"])
        assert _positive(pythae["examples_per_s"]["pythae"])
    else:
        assert "pythae" in pythae["reason"]
    seeds = result["sections"]["seed_batching"]
    assert seeds["seeds"] == 2 and _positive(seeds["speedup"]["ratio"])
    threads = result["sections"]["threads"]
    assert "skipped" in threads or _positive(threads["threads_vs_one"]["ratio"])


def test_table_names_every_section(quick_result):
    _, result = quick_result
    table = main.format_table(result)
    for text in ("harness/minimal", "evaluation cost", "cost per method", "pythae", "seed batching"):
        assert text in table


def test_pythae_missing_is_reported_not_fatal(monkeypatch):
    monkeypatch.setitem(sys.modules, "pythae", None)  # import pythae raises ImportError
    settings = common.Settings.quick_mode()
    x = torch.rand(8, 1, 28, 28)
    section = peer.bench_pythae(settings, x, torch.device("cpu"), common.Clock(torch.device("cpu")))
    assert section["available"] is False and "requirements-bench.txt" in section["reason"]


def test_minimal_loop_has_the_vae_plugins_math():
    preset = common.QUICK_PRESETS[0]
    method = loops.harness_method(preset, (1, 28, 28), torch.device("cpu"))
    minimal = loops.MinimalVAE.like(method.model, preset, 784)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        torch.manual_seed(0)
        harness_loss = method.loss(x, TrainingProgress(0, 0, 1))["loss"]
        torch.manual_seed(0)
        assert float(minimal(x)) == pytest.approx(float(harness_loss), rel=1e-5)


def test_batched_seeds_compute_each_seeds_loss():
    """The vmapped model of the seed_batching section is S copies of the minimal model."""
    preset = common.QUICK_PRESETS[1]
    torch.manual_seed(0)
    models = [loops.MinimalVAE(784, preset.hidden, preset.latent_dim) for _ in range(2)]
    params, _ = torch.func.stack_module_state(models)
    x = torch.rand(2, 4, 1, 28, 28)
    loss_fn = speed.batched_step_fn(models[0], randomness="same")  # same noise, to compare
    torch.manual_seed(1)
    batched = loss_fn(params, x).detach()
    for s, model in enumerate(models):
        torch.manual_seed(1)
        assert float(batched[s]) == pytest.approx(float(model(x[s]).detach()), rel=1e-5)


def test_compare_and_cost_drop_the_warm_up():
    # arm A twice as fast as B after a slow warm-up
    ratio = common.compare([10.0, 1.0, 1.0], [10.0, 2.0, 2.0])
    assert ratio["ratio"] == pytest.approx(2.0) and ratio["ratio_of_medians"] == pytest.approx(2.0)
    assert common.cost([10.0, 1.0, 3.0], [1.0, 1.0, 1.0]) == pytest.approx(2.0)
    assert common.cost([1.0, 3.0], [1.0, 1.0], warmup=False) == pytest.approx(2.0)


def test_eval_set_parses_eval_config_fields():
    assert main.parse_eval_set("nll_samples=0, mi_mixture=batch") == {"nll_samples": 0, "mi_mixture": "batch"}
    with pytest.raises(SystemExit, match="no_such_field"):
        main.parse_eval_set("no_such_field=1")


def quick_bench(tmp_path, *args: str) -> dict:
    """The JSON of ``bench --quick --device cpu ARGS`` (which must exit 0)."""
    out = tmp_path / "bench.json"
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    code = main.main(parser.parse_args(["--quick", "--device", "cpu", *args, "--out", str(out)]))
    result = json.loads(out.read_text())
    assert code == 0, result["errors"]
    return result


def test_the_packing_section_times_packs_against_one_run_through_the_harness(tmp_path, capsys):
    result = quick_bench(tmp_path, "--sections", "packing", "--pack-sizes", "1,3", "--pack-methods", "vae,lid-vae")
    section = result["sections"]["packing"]
    assert section["pack_sizes"] == [1, 3]
    for preset in section["presets"].values():
        assert set(preset) == {"vae", "lid-vae"}
        for rows in preset.values():
            row = rows["3"]
            assert _positive(row["speed"]) and len(row["ratios"]) == result["settings"]["repeats"]
            assert all(_positive(t) for t in row["epoch_s"].values())
    assert "packing: speed of a pack of K runs" in capsys.readouterr().out


def test_the_pack_host_section_times_a_packs_step_against_one_runs_on_a_tiny_model(tmp_path, capsys):
    result = quick_bench(tmp_path, "--sections", "pack_host", "--pack-sizes", "1,3", "--pack-methods", "vae,kl-annealing")
    section = result["sections"]["pack_host"]
    assert section["pack_sizes"] == [3] and set(section["methods"]) == {"vae", "kl-annealing"}
    for rows in section["methods"].values():
        assert _positive(rows["1"]["step_s"]) and _positive(rows["3"]["step_s"]) and _positive(rows["3"]["ratio"])
        assert len(rows["3"]["times_s"]) == result["settings"]["repeats"] + 1  # the warm-up repetition kept, not used
    assert "pack host cost per step" in capsys.readouterr().out


def test_the_pack_eval_section_times_a_packs_evaluation_in_lockstep_against_one_after_another(tmp_path, capsys):
    result = quick_bench(tmp_path, "--sections", "pack_eval", "--pack-sizes", "1,3", "--pack-methods", "vae")
    section = result["sections"]["pack_eval"]
    assert section["pack_sizes"] == [3] and section["eval"]["nll_samples"] == 4  # --quick's evaluation settings
    row = section["methods"]["vae"]["3"]
    assert _positive(row["speed"]) and all(_positive(t) for t in row["seconds"].values())
    assert len(row["times_s"]["lockstep"]) == result["settings"]["repeats"] + 1
    assert "pack evaluation" in capsys.readouterr().out


def test_bench_rejects_bad_pack_sizes():
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    with pytest.raises(SystemExit, match="--pack-sizes"):
        main.settings_from_args(parser.parse_args(["--quick", "--pack-sizes", "0,4"]))


def test_bench_pack_presets_are_named_presets():
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    settings = main.settings_from_args(parser.parse_args(["--pack-presets", "conv64,mlp-4x512"]))
    assert [p.name for p in settings.pack_presets] == ["conv64", "mlp-4x512"]
    assert settings.pack_presets[0].model_config().arch == "conv64"
    with pytest.raises(SystemExit, match="--pack-presets"):
        main.settings_from_args(parser.parse_args(["--pack-presets", "conv128"]))


def test_the_tables_section_times_the_update_against_the_rebuild(tmp_path, capsys):
    out = tmp_path / "tables.json"
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    code = main.main(parser.parse_args(["--quick", "--sections", "tables", "--table-records", "12", "--out", str(out)]))
    result = json.loads(out.read_text())
    assert code == 0, result["errors"]
    section = result["sections"]["tables"]
    assert section["records"] == 12 and list(section["points"]) == ["12"] and section["tables_match"] is True
    point = section["points"]["12"]
    assert len(point["rebuild_s"]) == len(point["incremental_s"]) == result["settings"]["repeats"]
    assert all(_positive(v) for v in (point["rebuild_ms"], point["incremental_ms"], point["added_ms"],
                                      point["rebuild_vs_incremental"]["ratio"], *section["new_process_ms"].values()))
    assert section["sequence"]["updates"] == 12 and _positive(section["sequence"]["incremental_total_s"])
    assert "tables: one update of runs.csv + summary.csv" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--table-records"):
        main.settings_from_args(parser.parse_args(["--table-records", "0"]))


# --- text (LSTM) section ----------------------------------------------------------------------


def _fake_ptb_root(tmp_path):
    from fakes import write_fake_ptb

    write_fake_ptb(tmp_path / "ptb", n=(40, 4, 4))
    return tmp_path


def test_the_text_section_times_the_harness_against_a_minimal_lstm_vae(tmp_path, capsys):
    root = _fake_ptb_root(tmp_path)
    result = quick_bench(tmp_path, "--sections", "text", "--data-root", str(root), "--text-sentences", "24", "--text-epochs", "2")
    section = result["sections"]["text"]
    assert set(result["sections"]) == {"text"}
    assert section["sentences"] == 24 and section["batch_size"] == 32 and section["bound"] == common.TEXT_STEP_BOUND
    assert set(section["presets"]) == {"lstm-ptb", "lstm-small"}
    ptb = section["presets"]["lstm-ptb"]
    assert (ptb["embed"], ptb["hidden"]) == (256, 256)
    for entry in section["presets"].values():
        for arm in ("harness", "minimal"):
            assert len(entry["times_s"][arm]) == section["epochs_timed"] + 1 == 3
            assert _positive(entry["step_ms"][arm])
        assert _positive(entry["harness_vs_minimal"]["ratio"])
        assert entry["harness_step_cost"] == pytest.approx(1 / entry["harness_vs_minimal"]["ratio"])
        assert isinstance(entry["meets_bound"], bool)
    assert "text (LSTM) step" in capsys.readouterr().out


def test_the_text_section_is_skipped_without_ptb(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    out = tmp_path / "text.json"
    code = main.main(parser.parse_args(["--quick", "--device", "cpu", "--sections", "text", "--data-root",
                                        str(tmp_path / "empty"), "--out", str(out)]))
    result = json.loads(out.read_text())
    assert code == 0 and not result["errors"]
    assert "ptb not available" in result["sections"]["text"]["skipped"]
    assert "text (LSTM) step: skipped: ptb not available" in capsys.readouterr().out


@pytest.mark.parametrize("arch", ["lstm-ptb", "lstm-small"])
def test_minimal_lstm_vae_has_the_harness_math(tmp_path, arch):
    """Same weights, batch (a length bucket) and noise (the global RNG seeded alike,
    dropout active): the minimal loop's first-step loss and gradients are the harness's."""
    from benchmark.config import TrainConfig
    from benchmark.ml.train import Trainer, length_buckets

    settings = common.Settings(data_root=str(_fake_ptb_root(tmp_path)), text_sentences=40)
    device = torch.device("cpu")
    (x, lengths, shape), why = text.load_text(settings, device)
    assert why is None
    method = text.harness_text_method(arch, 32, shape, device)
    minimal = text.MinimalLSTMVAE.like(method.model, text.text_model_config(arch, 32), shape)
    trainer = Trainer([method], [x], TrainConfig(epochs=1, batch_size=16), [torch.Generator().manual_seed(1)],
                      lengths=lengths)
    # a length bucket of short sentences (the batch is trimmed to its longest)
    index = min(length_buckets(lengths, 16, torch.Generator().manual_seed(1)), key=lambda b: int(lengths[b].max()))
    longest = int(lengths[index].max())
    assert longest < x.shape[1]  # the harness trims the padding itself
    torch.manual_seed(5)
    harness_loss = trainer.step(x[index].unsqueeze(0), TrainingProgress(0, 0, 1))["loss"]
    minimal.train()
    torch.manual_seed(5)
    minimal_loss = minimal(x[index, :longest], lengths[index])
    minimal_loss.backward()
    assert float(minimal_loss.detach()) == pytest.approx(float(harness_loss.detach()), rel=1e-6)
    # trainer.step took its optimiser step: compare the gradients it used
    for (name, p), q in zip(method.named_parameters(), minimal.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7), name
