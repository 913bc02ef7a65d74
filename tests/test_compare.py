"""``plasticity-plugins compare`` and ``list``: names, errors, output files, runner, probe."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from plasticity_plugins.cli import main
from plasticity_plugins.compare import KITS, METHODS, CompareConfig, Comparison
from plasticity_plugins.compare.probe import linear_probe
from plasticity_plugins.data import load_dataset

TINY = [
    "--dataset", "digits", "--train-size", "100", "--test-size", "60", "--steps", "4",
    "--hidden", "16", "--epochs", "1", "--batch-size", "50", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Every rule x every framework on the tiny setting, through the CLI."""
    out = tmp_path_factory.mktemp("compare")
    code = main(["compare", *TINY, "--out", str(out)])
    return code, out


def test_compare_writes_a_row_per_rule_and_framework(full_run):
    code, out = full_run
    assert code == 0
    payload = json.loads((out / "results.json").read_text())
    rows = payload["results"]
    assert {(r["rule"], r["framework"]) for r in rows} == {
        (rule, framework) for rule in METHODS for framework in KITS
    }
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert 0 <= row["accuracy"] <= 100
        assert row["ms_per_step"] > 0 and row["peak_mib"] >= 0
        assert row["accuracy_definition"] and row["framework_version"]
        assert row["curve"][-1][1] == row["accuracy"]
    assert payload["config"]["dataset"] == "digits"
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    for figure in ("learning_curves.png", "summary.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"


def test_compare_states_how_accuracy_is_defined(capsys, tmp_path):
    argv = ["--rules", "stdp", "decolle", "--frameworks", "snntorch", "--out", str(tmp_path)]
    assert main(["compare", *TINY, *argv]) == 0
    out = capsys.readouterr().out
    assert "accuracy of STDP: linear probe" in out
    assert "accuracy of DECOLLE: majority vote" in out


def test_an_unwritable_output_folder_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["compare", *TINY, "--out", str(blocker / "out")]) == 2
    assert str(blocker / "out") in capsys.readouterr().err


def test_the_three_frameworks_train_the_same_network(full_run):
    """Same seed, same data, matched neurons: BPTT ends at nearly the same accuracy."""
    rows = json.loads((full_run[1] / "results.json").read_text())["results"]
    bptt = [r["accuracy"] for r in rows if r["rule"] == "bptt"]
    assert max(bptt) - min(bptt) <= 5.0


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        (["--rules", "backprop"], "bptt, stllr, stllr-dfa, decolle, stdp"),
        (["--frameworks", "brian2"], "snntorch, spikingjelly, norse"),
        (["--dataset", "cifar"], "mnist-subset, digits, yinyang"),
    ],
)
def test_unknown_names_list_the_valid_ones(argv, listed, capsys, tmp_path):
    assert main(["compare", *TINY, *argv, "--out", str(tmp_path)]) == 2
    assert listed in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_bad_settings_are_clear_errors(capsys, tmp_path):
    assert main(["compare", *TINY, "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["compare", *TINY, "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_an_interrupted_run_keeps_what_finished(monkeypatch, tmp_path):
    original = Comparison.run
    calls = []

    def interrupted_on_the_second(self, method, framework):
        calls.append(method)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, method, framework)

    monkeypatch.setattr(Comparison, "run", interrupted_on_the_second)
    code = main(
        [
            "compare",
            *TINY,
            "--rules",
            "bptt",
            "stllr",
            "--frameworks",
            "snntorch",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 130
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [(r["rule"], r["status"]) for r in rows] == [("bptt", "ok")]


def test_quick_settings_and_their_overrides():
    quick = CompareConfig.quick(epochs=1)
    assert quick.epochs == 1 and quick.train_size == 1000 and quick.steps == 10
    with pytest.raises(ValueError, match="max_rate"):
        CompareConfig(max_rate=2.0)


def test_runs_see_the_same_spikes_and_untrained_probe_is_reported():
    config = CompareConfig(
        rules=("stdp",), frameworks=("snntorch",), dataset="digits", epochs=1, steps=4,
        hidden=(16,), batch_size=50,
    )  # fmt: skip
    dataset = load_dataset("digits", train_size=100, test_size=60)
    comparison = Comparison(config, dataset, progress=False)
    first, second = comparison.run("stdp", "snntorch"), comparison.run("stdp", "snntorch")
    assert first.status == "ok" and first.curve == second.curve
    assert first.curve[0][0] == 0.0 and len(first.curve) == 2


def test_linear_probe_matches_scikit_learn_ridge():
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(200, 12, generator=generator, dtype=torch.float64)
    labels = (train[:, :3].argmax(1) + (train[:, 3] > 1).long()) % 3
    test = torch.randn(80, 12, generator=generator, dtype=torch.float64)
    ours = linear_probe(train, labels, test, num_classes=3, ridge=5.0)
    scaler = preprocessing.StandardScaler().fit(train.numpy())
    targets = torch.nn.functional.one_hot(labels, 3).numpy()
    ridge = sklearn_linear.Ridge(alpha=5.0).fit(scaler.transform(train.numpy()), targets)
    theirs = ridge.predict(scaler.transform(test.numpy())).argmax(1)
    assert ours.tolist() == theirs.tolist()


def test_linear_probe_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        linear_probe(torch.zeros(4), torch.zeros(4), torch.zeros(2, 1), 2)


def test_list_shows_rules_adapters_with_versions_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (*METHODS, "DiehlCook", "FastAndDeep", "mnist-subset", "nmnist"):
        assert name in out
    for kit in KITS.values():
        assert f"{kit.distribution} {kit.version()}" in out


def test_python_dash_m_lists():
    result = subprocess.run(
        [sys.executable, "-m", "plasticity_plugins", "list"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "stllr" in result.stdout
