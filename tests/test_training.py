"""`nasplug train` and `nasplug compare` end to end, and the ResNet baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasplug.cli import main
from nasplug.core.types import Task
from nasplug.engine.baselines import ResidualMLP, ResNet, baseline
from nasplug.engine.memory import count_params

DATA = ["--data-opt", "train_per_class=20", "--data-opt", "test_per_class=10"]
TINY = [
    "--space-opt",
    "channels=4",
    "--space-opt",
    "layers=2",
    *DATA,
    "--batch-size",
    "32",
    "--device",
    "cpu",
    "--quiet",
]
TRAIN = ["--epochs", "1", "--batch-size", "32", "--device", "cpu", "--quiet"]


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A DARTS search, a random search, the derived network trained, and a ResNet baseline."""
    root = tmp_path_factory.mktemp("runs")
    paths = {k: root / k for k in ("darts", "random", "trained", "resnet")}
    assert main(["run", "--no-figures", *TINY, "--epochs", "1", "--out", str(paths["darts"])]) == 0
    assert (
        main(
            [
                "run",
                "--no-figures",
                "--strategy",
                "random",
                "--strategy-opt",
                "candidates=2",
                "--strategy-opt",
                "train_epochs=1",
                *TINY,
                "--epochs",
                "1",
                "--out",
                str(paths["random"]),
            ]
        )
        == 0
    )
    assert main(["train", str(paths["darts"]), *TRAIN, "--out", str(paths["trained"])]) == 0
    assert (
        main(
            [
                "train",
                "--baseline",
                "resnet",
                str(paths["darts"]),
                "--layers",
                "1",
                *TRAIN,
                "--out",
                str(paths["resnet"]),
            ]
        )
        == 0
    )
    return paths


def test_train_writes_metric_params_and_time(runs):
    res = json.loads((runs["trained"] / "train.json").read_text())
    assert 0.0 <= res["test_accuracy"] <= 1.0 and res["metric"] == "accuracy"
    assert res["params"] > 0 and res["seconds"] > 0 and res["epochs"] == 1
    assert res["genotype"] == json.loads((runs["darts"] / "genotype.json").read_text())
    config = json.loads((runs["trained"] / "config.json").read_text())
    # The network is built with the search run's space options, on its dataset.
    as_text = {axis: {k: str(v) for k, v in opts.items()} for axis, opts in config["opts"].items()}
    assert as_text == {
        "space": {"channels": "4", "layers": "2"},
        "data": {"train_per_class": "20", "test_per_class": "10"},
    }
    events = [json.loads(line)["event"] for line in (runs["trained"] / "events.jsonl").open()]
    assert "train_start" in events and "train_epoch" in events and "train_end" in events


def test_compare_makes_one_table_of_every_method(runs, capsys, tmp_path):
    out = tmp_path / "table.md"
    code, table, _ = _run(capsys, "compare", *runs.values(), "--out", out)
    assert code == 0 and out.read_text() == table
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| method | val accuracy | test accuracy | parameters | search s")
    body = lines[2:]
    assert len(body) == 6
    assert "continuous supernet" in body[0] and "darts" in body[0]
    # "DARTS discrete" of the study of DARTS on four datasets: the derived genotype one-hot,
    # without retraining.
    searched = json.loads((runs["darts"] / "metrics.json").read_text())
    assert "derived, one-hot in the supernet" in body[1]
    assert (
        f"{searched['val_accuracy_discrete']:.4f}" in body[1]
        and f"{int(searched['params']):,}" in body[1]
    )
    assert "derived, one-hot, BatchNorm re-estimated" in body[2]
    assert f"{searched['val_accuracy_discrete_recalibrated']:.4f}" in body[2]
    assert "random search (best of 2)" in body[3]
    assert "derived network, trained" in body[4]
    assert "resnet baseline" in body[5]
    assert body[5].split("|")[5].strip() == ""  # a baseline has no search cost
    assert "fashion-mnist-small (test_per_class=10, train_per_class=20)" in table
    trained = json.loads((runs["trained"] / "train.json").read_text())
    assert f"{trained['test_accuracy']:.4f}" in body[4] and f"{trained['params']:,}" in body[4]


def test_compare_mean_gives_one_row_per_method_with_mean_and_sd(runs, tmp_path, capsys):
    seed1 = tmp_path / "darts-seed1"
    assert (
        main(["run", "--no-figures", *TINY, "--epochs", "1", "--seed", "1", "--out", str(seed1)])
        == 0
    )
    per_edge = tmp_path / "per-edge"
    assert (
        main(
            [
                "run",
                "--no-figures",
                *TINY,
                "--epochs",
                "1",
                "--relax",
                "sparsemax",
                "--relax-opt",
                "grouped=false",
                "--out",
                str(per_edge),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, table, _ = _run(
        capsys, "compare", "--mean", runs["darts"], seed1, per_edge, runs["resnet"]
    )
    assert code == 0
    body = [line for line in table.splitlines() if line.startswith("| ")][2:]
    # Two seeds of darts (softmax) share each of their rows; per-edge sparsemax is its own method.
    assert len(body) == 3 + 3 + 1
    assert body[0].startswith("| darts (softmax): continuous supernet (n=2) |")
    vals = [
        json.loads((r / "metrics.json").read_text())["val_accuracy_continuous"]
        for r in (runs["darts"], seed1)
    ]
    mean = sum(vals) / 2
    sd = abs(vals[0] - vals[1]) / 2**0.5
    assert f"{mean:.4f}" in body[0] and f"± {sd:.4f}" in body[0]
    assert body[3].startswith("| darts (sparsemax grouped=false): continuous supernet |")
    assert "±" not in body[3] and "resnet baseline" in body[6]


def test_compare_refuses_runs_on_different_datasets(runs, tmp_path, capsys):
    other = tmp_path / "other"
    assert (
        main(
            [
                "train",
                "--baseline",
                "resnet",
                "--data-opt",
                "train_per_class=10",
                "--data-opt",
                "test_per_class=10",
                "--layers",
                "1",
                *TRAIN,
                "--out",
                str(other),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, _, err = _run(capsys, "compare", runs["darts"], other)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "different datasets" in err


def test_train_a_darts_genotype_string(tmp_path, capsys):
    gfile = tmp_path / "g.txt"
    gfile.write_text(
        "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
        "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
        "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
    )
    out = tmp_path / "t"
    code, stdout, _ = _run(
        capsys,
        "train",
        gfile,
        "--channels",
        "4",
        "--layers",
        "3",
        "--auxiliary",
        "--cutout",
        "4",
        "--drop-path",
        "0.2",
        *DATA,
        *TRAIN,
        "--out",
        out,
    )
    assert code == 0 and "test accuracy" in stdout
    res = json.loads((out / "train.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["space"] == "cell" and config["opts"]["space"]["auxiliary"] is True
    # The auxiliary head trains the network but is not part of it.
    from nasplug.core.types import Genotype
    from nasplug_builtins.spaces.cell import CellSpace

    plain = CellSpace(channels=4, layers=3).build(
        Genotype.from_dict(res["genotype"]), Task("classification", (1, 28, 28), 10)
    )
    assert res["params"] == count_params(plain)


def test_train_resumes_a_killed_training(tmp_path, capsys, monkeypatch):
    from nasplug.engine.trainer import Trainer

    out = tmp_path / "r"
    real_fit = Trainer.fit

    def killed_in_second_epoch(self, model, **kw):
        def report(epoch, metrics):
            if epoch == 1:  # after the second epoch's training, before its checkpoint
                raise KeyboardInterrupt

        return real_fit(self, model, **{**kw, "report": report})

    monkeypatch.setattr(Trainer, "fit", killed_in_second_epoch)
    code, _, _ = _run(
        capsys,
        "train",
        "--baseline",
        "resnet",
        "--layers",
        "1",
        *DATA,
        *TRAIN[2:],
        "--epochs",
        "2",
        "--out",
        out,
    )
    assert code == 130 and not (out / "train.json").exists()
    monkeypatch.setattr(Trainer, "fit", real_fit)
    code, _, _ = _run(capsys, "train", "--resume", out, "--quiet")
    assert code == 0
    res = json.loads((out / "train.json").read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").open()]
    resumed_at = [e["event"] for e in events].index("resumed")
    assert res["epochs"] == 2
    # The first epoch is not trained again; the second, lost with the kill, is.
    assert [e["epoch"] for e in events[resumed_at:] if e["event"] == "train_epoch"] == [2]
    assert res["seconds"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train"], "needs a run directory or genotype file, or --baseline"),
        (["train", "--baseline", "vgg"], "unknown baseline 'vgg'; accepted: resnet"),
        (["train", "no/such/run"], "neither a run directory nor a genotype file"),
        (["train", "--baseline", "resnet", "--auxiliary"], "baselines have no auxiliary head"),
        (
            ["train", "--baseline", "resnet", "--epochs", "0"],
            "epochs must be a positive integer, got 0",
        ),
        (["compare", "no/such/run"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


def test_bad_space_option_for_a_genotype_file(tmp_path, capsys):
    gfile = tmp_path / "g.json"
    gfile.write_text(
        json.dumps(
            {
                "space": "cell",
                "spec": {
                    "normal": [["skip_connect", 0], ["skip_connect", 1]],
                    "normal_concat": [2],
                    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]],
                    "reduce_concat": [2],
                },
            }
        )
    )
    out = tmp_path / "never"
    code, _, err = _run(capsys, "train", gfile, "--space-opt", "widht=3", *TRAIN, "--out", str(out))
    assert code == 2 and "unknown option 'widht'" in err
    assert not out.exists()  # checked before the run directory is made


def test_resnet_baseline_is_resnet20_for_images_and_an_mlp_for_vectors():
    net = baseline("resnet", Task("classification", (3, 32, 32), 10))
    assert isinstance(net, ResNet)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 3x3 convolutions and the classifier
    assert 0.26e6 < count_params(net) < 0.29e6
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    mlp = baseline("resnet", Task("regression", (10,), 2))
    assert isinstance(mlp, ResidualMLP)
    assert mlp(torch.randn(1, 10)).shape == (1, 2)  # a single row trains too (no BatchNorm)


def test_compare_names_the_augmentation_a_run_did_not_default() -> None:
    """``compare --mean`` must not average runs with and without augmentation."""
    from nasplug.report.comparison import _augment_label

    assert _augment_label({"augment": "standard"}) == ""
    assert _augment_label({}) == "augment off"  # from before augmentation existed
    assert _augment_label({"command": "train", "augment": "off", "cutout": 0}) == "augment off"
    train = {"command": "train", "augment": "no-flip", "cutout": 8}
    assert _augment_label(train) == "augment no-flip, cutout 8"
    assert _augment_label({"command": "train", "augment": "standard", "cutout": None}) == ""
