"""Faults, in process: a full disk, the run lock, leftovers of a kill, masked credentials,
non-finite checkpoints, broken plugins and the top-level handler's --debug."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_registry import fake_dist
from torch import nn

from nasplug import cli
from nasplug.core.types import Data, Task
from nasplug.engine.trainer import NonFiniteLoss, Trainer
from nasplug.run.credentials import mask, resolve_storage
from nasplug.run.rundir import LOCK, RunDir, RunError

TINY = [
    "--space-opt",
    "channels=2",
    "--space-opt",
    "layers=1",
    "--data-opt",
    "train_per_class=4",
    "--data-opt",
    "test_per_class=2",
    "--batch-size",
    "16",
    "--device",
    "cpu",
    "--quiet",
]


def run_cli(*args) -> tuple[int, str, str]:
    """``nasplug ARGS`` in process; a new search writes report.md only (no test here reads its
    pictures)."""
    argv = [str(a) for a in args]
    if argv[:1] == ["run"] and "--resume" not in argv:
        argv.insert(1, "--no-figures")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "run"
    code, _, err = run_cli("run", *TINY, "--epochs", "1", "--out", run)
    assert code == 0, err
    return run


# ---- the handler ---------------------------------------------------------------------------
def test_debug_flag_and_environment_add_the_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("NASPLUG_DEBUG", raising=False)
    code, _, err = run_cli("show", tmp_path / "missing")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for args in (
        ["--debug", "show", tmp_path / "missing"],
        ["show", tmp_path / "missing", "--debug"],
    ):
        code, _, err = run_cli(*args)
        assert code == 2 and "Traceback" in err and "RunError" in err
        assert err.strip().splitlines()[-1].startswith("nasplug: error: run directory")
    monkeypatch.setenv("NASPLUG_DEBUG", "1")
    code, _, err = run_cli("show", tmp_path / "missing")
    assert code == 2 and "Traceback" in err


def test_interrupt_during_start_up_is_one_line(monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    code, _, err = run_cli("list")
    assert code == 130 and err == "nasplug: interrupted; nothing was written\n"


def test_unexpected_errors_are_one_line_pointing_at_debug(monkeypatch):
    def broken(args):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(cli, "cmd_list", broken)
    code, _, err = run_cli("list")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "unexpected AttributeError" in err and "--debug" in err


# ---- broken plugins ------------------------------------------------------------------------
NOT_A_SUBCLASS = "class Loose:\n    def weights(self, logits):\n        return logits\n"
NOT_A_CLASS = "def factory():\n    return None\n"
EXITS = "import sys\nsys.exit('refusing to import')\n"
ABSTRACT = "from nasplug import Relaxation\n\nclass Thing(Relaxation):\n    name = 'bad'\n"


@pytest.mark.parametrize(
    "source,needle",
    [
        (NOT_A_SUBCLASS, "is class Loose, not a subclass of nasplug.Relaxation"),
        (NOT_A_CLASS, "is a function, not a subclass of nasplug.Relaxation"),
        (
            EXITS,
            "failed to load from entry point 'nasplug_fake_bad:Thing' of nasplug-fake-bad 0.3: "
            "SystemExit: refusing to import",
        ),
        (
            ABSTRACT,
            "relaxation 'bad' from entry point 'nasplug_fake_bad:Thing' of nasplug-fake-bad 0.3 "
            "is class Thing, which does not implement weights (abstract in nasplug.Relaxation)",
        ),
    ],
)
def test_a_broken_plugin_is_reported_by_list_and_refused_before_writing(
    site, tmp_path, source, needle
):
    source = source.replace("Loose", "Thing").replace("factory", "Thing")
    needle = needle.replace("Loose", "Thing")
    fake_dist(
        site,
        "nasplug-fake-bad",
        "0.3",
        {"nasplug.relaxations": {"bad": "nasplug_fake_bad:Thing"}},
        {"nasplug_fake_bad": source},
    )
    code, out, _ = run_cli("list")
    assert code == 0
    line = next(line for line in out.splitlines() if line.split()[:1] == ["bad"])
    assert "BROKEN" in line and "nasplug-fake-bad 0.3" in line
    code, _, err = run_cli("run", *TINY, "--relax", "bad", "--out", tmp_path / "run")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ---- writing fails -------------------------------------------------------------------------
def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_replace = os.replace
    writes = []

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("search.pt"):
            writes.append(dst)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run_cli("run", *TINY, "--epochs", "2", "--out", run)
    monkeypatch.setattr(os, "replace", real_replace)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "No space left on device" in lines[0] and "the previous checkpoint is kept" in lines[0]
    assert f"resume with `nasplug run --resume {run}`" in lines[0]
    assert torch.load(run / "checkpoints" / "search.pt", weights_only=True)["epoch"] == 1
    assert not list(run.rglob("*.tmp")) and not (run / LOCK).exists()
    code, out, err = run_cli("run", "--resume", run)
    assert code == 0 and "genotype:" in out, err


def test_a_failure_while_creating_the_run_leaves_nothing(tmp_path, monkeypatch):
    real = Path.mkdir

    def denied(self, *a, **kw):
        if self.name == "run":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", denied)
    code, _, err = run_cli("run", *TINY, "--epochs", "1", "--out", tmp_path / "a" / "run")
    assert (
        code == 2 and err.strip() == f"nasplug: error: {tmp_path / 'a' / 'run'}: Permission denied"
    )
    assert not (tmp_path / "a").exists()


# ---- the lock and leftovers ----------------------------------------------------------------
HOLD = (
    "import sys, time; from nasplug.run.rundir import RunDir; "
    "RunDir.open(sys.argv[1]).lock(); print('held', flush=True); time.sleep(120)"
)


def test_a_second_process_is_refused_and_a_stale_lock_is_taken_over(finished, tmp_path):
    finished = Path(shutil.copytree(finished, tmp_path / "run"))
    (finished / "metrics.json").unlink()  # unfinished: a resume of a finished run takes no lock
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(finished)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli("run", "--resume", finished)
        assert code == 2 and err.strip() == (
            f"nasplug: error: {finished} is in use by process "
            f"{holder.pid}; wait for it to finish or stop it"
        )
    finally:
        holder.kill()
        holder.wait()
    assert (finished / LOCK).read_text().split()[0] == str(holder.pid)  # left by the killed one
    with RunDir.open(finished).lock() as run:
        assert (finished / LOCK).read_text().split()[0] == str(os.getpid())
        assert run.config()["space"] == "cell"
    assert not (finished / LOCK).exists()


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_open(finished):
    leftovers = [
        finished / ".metrics.json.k1ll3d.tmp",
        finished / "checkpoints" / ".search.pt.x.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"torn")
    RunDir.open(finished)
    assert all(p.exists() for p in leftovers)  # only the lock holder may delete them
    RunDir.open(finished).lock().close()
    assert not any(p.exists() for p in leftovers)


# ---- checkpoints ---------------------------------------------------------------------------
def test_a_checkpoint_without_the_expected_keys_is_one_line(tmp_path):
    task = Task("classification", (2,), 2)
    x, y = torch.randn(8, 2), torch.arange(8) % 2
    run = RunDir.create(tmp_path / "run", {"test": True})
    run.checkpoint_path("p").parent.mkdir()
    torch.save({"weights": torch.ones(2)}, run.checkpoint_path("p"))
    trainer = Trainer(Data(task, (x, y), (x, y)), run=run, device="cpu", quiet=True)
    with pytest.raises(
        RunError, match="is not a nasplug checkpoint .it lacks 'epoch', 'state', 'rng'"
    ):
        list(trainer.epochs(2, {"model": WithStats()}, "p"))
    run.close()


class WithStats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.register_buffer("running_var", torch.ones(2))


def test_a_non_finite_state_is_never_checkpointed_and_the_message_names_the_kept_epoch(tmp_path):
    task = Task("classification", (2,), 2)
    x, y = torch.randn(8, 2), torch.arange(8) % 2
    run = RunDir.create(tmp_path / "run", {"test": True})
    trainer = Trainer(Data(task, (x, y), (x, y)), run=run, device="cpu", quiet=True)
    model = WithStats()
    with pytest.raises(NonFiniteLoss) as e:
        for epoch in trainer.epochs(4, {"model": model}, "p"):
            if epoch == 2:
                model.running_var[0] = float("inf")  # what a diverged BatchNorm leaves
    assert "model.running_var" in str(e.value) and "p epoch 3" in str(e.value)
    assert "the last good checkpoint (p epoch 2) is kept" in str(e.value)
    ckpt = run.load_checkpoint("p")
    assert ckpt["epoch"] == 2 and torch.isfinite(ckpt["state"]["model"]["running_var"]).all()
    run.close()


# ---- credentials ---------------------------------------------------------------------------
def test_passwords_are_masked_in_messages_and_files(tmp_path):
    url = "postgresql://user:secret@db.example:5432/nas"
    assert mask(url) == "postgresql://user:***@db.example:5432/nas"
    assert mask("sqlite:///runs/a.db") == "sqlite:///runs/a.db"
    run = tmp_path / "run"
    code, _, err = run_cli(
        "run", *TINY, "--epochs", "1", "--strategy", "tpe", "--storage", url, "--out", run
    )
    assert code == 2 and "secret" not in err and "postgresql://user:***@db.example:5432/nas" in err
    assert not run.exists()  # the storage failed before anything worth keeping was written
    with RunDir.create(tmp_path / "kept", {"storage": url}) as kept:
        kept.log("start", config={"storage": url}, note=f"opening {url}")
    for p in (tmp_path / "kept").rglob("*"):
        if p.is_file():
            assert "secret" not in p.read_text(), p
    assert oct((tmp_path / "kept").stat().st_mode & 0o777) == "0o700"


def test_a_storage_url_from_the_environment_is_stored_by_name_only(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("NASPLUG_TEST_STORAGE", url)
    assert resolve_storage("env:NASPLUG_TEST_STORAGE") == url
    (tmp_path / "url.txt").write_text(url + "\n")
    assert resolve_storage(f"file:{tmp_path / 'url.txt'}") == url
    run = tmp_path / "run"
    code, _, err = run_cli(
        "run",
        *TINY,
        "--epochs",
        "1",
        "--strategy",
        "random",
        "--strategy-opt",
        "candidates=1",
        "--strategy-opt",
        "train_epochs=1",
        "--storage",
        "env:NASPLUG_TEST_STORAGE",
        "--out",
        run,
    )
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["storage"] == "env:NASPLUG_TEST_STORAGE"
    monkeypatch.delenv("NASPLUG_TEST_STORAGE")
    (run / "metrics.json").unlink()
    code, _, err = run_cli("run", "--resume", run)
    assert code == 2 and "environment variable 'NASPLUG_TEST_STORAGE' is not set" in err
    assert len(err.strip().splitlines()) == 1


def test_the_command_line_starts_without_torch_so_an_early_interrupt_reaches_the_handler():
    code = "import sys, nasplug.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    code = "import sys, nasplug; nasplug.Genotype; sys.exit('torch' not in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- resuming a finished run ---------------------------------------------------------------
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_resuming_a_finished_run_says_so_and_changes_nothing(finished, tmp_path):
    before = _files(finished)
    code, out, err = run_cli("run", "--resume", finished)
    assert code == 0 and err.strip().splitlines() == [
        f"nasplug: {finished} is finished; nothing was run or changed (its results follow; "
        f"`nasplug show {finished}` prints them, and a new `nasplug run --out` starts again)"
    ]
    stored = json.loads((finished / "metrics.json").read_text())
    assert "genotype:" in out and f"{stored['val_accuracy']:.4f}" in out
    assert _files(finished) == before

    trained = tmp_path / "trained"
    code, _, err = run_cli("train", finished, "--epochs", "1", *TINY, "--out", trained)
    assert code == 0, err
    before = _files(trained)
    code, out, err = run_cli("train", "--resume", trained)
    assert code == 0 and "is finished; nothing was run or changed" in err
    assert len(err.strip().splitlines()) == 1
    assert "test accuracy" in out and _files(trained) == before


def test_flags_that_a_resume_ignores_are_named_in_one_warning(finished):
    before = _files(finished)
    code, _, err = run_cli("run", "--resume", finished, "--space", "dense", "--epochs", "3")
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 2, err
    assert lines[0] == (
        "nasplug: warning: --space, --epochs ignored with --resume: a resumed run keeps the "
        "settings of its config.json (only --device, --storage and --threads may be given again)"
    )
    assert _files(finished) == before


# ---- values the data or the machine cannot take --------------------------------------------
@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--batch-size", str(2**63)],
            f"batch_size {2**63} is too large; accepted: 1 to 2,147,483",
        ),
        (["--epochs", str(10**32)], f"epochs {10**32} is too large; accepted: 1 to 100,000"),
        (
            ["--space-opt", "channels=10000"],
            "the supernet of space 'cell' with channels=10000, layers=1 has",
        ),
        (["--space-opt", f"channels={10**32}"], "Overflow when unpacking long"),
    ],
    ids=["batch-2**63", "epochs-10**32", "channels-10000", "channels-10**32"],
)
def test_values_that_cannot_run_are_refused_in_one_line_before_writing(tmp_path, args, needle):
    code, _, err = run_cli("run", *TINY, *args, "--out", tmp_path / "run")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert len(lines[0]) < 400 and "Exception raised from" not in lines[0]
    assert not (tmp_path / "run").exists()


def test_epochs_too_large_in_a_config_file_are_refused(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f"[run]\nepochs = {10**32}\n")
    code, _, err = run_cli("run", *TINY, "--config", config, "--out", tmp_path / "run")
    assert code == 2 and f"epochs {10**32} is too large; accepted: 1 to 100,000" in err


def test_a_supernet_larger_than_memory_is_refused_before_it_is_allocated(tmp_path):
    from nasplug.core.options import OptionError
    from nasplug.engine.memory import available_bytes, check_fits, on_meta
    from nasplug_builtins.spaces.cell import CellSpace

    task = Task("classification", (1, 28, 28), 10)
    net = on_meta(lambda: CellSpace(channels=10000, layers=5).supernet(task))
    assert net is not None and all(p.is_meta for p in net.parameters())
    with pytest.raises(OptionError, match=r"has 380,987,510,010 parameters: training it needs"):
        check_fits(net, torch.device("cpu"), "the supernet", "smaller options")
    assert available_bytes(torch.device("cpu")) > 0
    small = on_meta(lambda: CellSpace(channels=4, layers=2).supernet(task))
    check_fits(small, torch.device("cpu"), "the supernet", "smaller options")


def test_a_batch_larger_than_the_data_is_all_of_it_and_the_run_says_so(tmp_path):
    code, _, err = run_cli(
        "run", *TINY, "--batch-size", "100000", "--epochs", "1", "--out", tmp_path / "run"
    )
    assert code == 0 and err.strip().splitlines() == [
        "nasplug: warning: batch size 100000 is larger than the 20 rows of each half of the "
        "search data; each step uses all 20 rows (as batch size 20 would)"
    ]


# ---- smaller faults ------------------------------------------------------------------------
def test_an_event_after_a_torn_last_line_starts_a_new_line(tmp_path):
    with RunDir.create(tmp_path / "run", {"test": True}) as run:
        run.log("start")
    events = tmp_path / "run" / "events.jsonl"
    with open(events, "a") as f:
        f.write('{"event": "search_ep')  # what a kill in mid-write leaves
    with RunDir.open(tmp_path / "run").lock() as run:
        run.log("resumed")
        run.log("resume", epoch=1)
        assert [e["event"] for e in run.events()] == ["start", "resumed", "resume"]
    assert events.read_text().splitlines()[1] == '{"event": "search_ep'


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_as_unsafe(tmp_path):
    run = RunDir.create(tmp_path / "run", {"test": True})
    run.checkpoint_path("search").parent.mkdir()
    marker = tmp_path / "ran"
    torch.save({"epoch": 1, "state": _RunsACommand(marker)}, run.checkpoint_path("search"))
    with pytest.raises(RunError) as e:
        run.load_checkpoint("search")
    assert "is refused as unsafe: loading it would import" in str(e.value)
    assert ".system" in str(e.value) and "corrupt" not in str(e.value)
    assert not marker.exists()
    run.checkpoint_path("search").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(RunError, match="is corrupt or truncated"):
        run.load_checkpoint("search")
    run.close()


def test_a_symbolic_link_loop_or_dangling_link_as_out_is_named(tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    code, _, err = run_cli("run", *TINY, "--out", loop)
    assert code == 2 and err.strip() == (
        f"nasplug: error: --out {loop} is a symbolic link loop; accepted: a new directory or an "
        f"empty one"
    )
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    code, _, err = run_cli("run", *TINY, "--out", dangling)
    assert code == 2 and f"is a symbolic link to {tmp_path / 'gone'}, which does not exist" in err


def test_a_network_too_large_to_train_is_refused_before_it_is_allocated(tmp_path):
    genotype = tmp_path / "g.txt"
    genotype.write_text(
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2], "
        "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
    )
    out = tmp_path / "trained"
    code, _, err = run_cli("train", genotype, *TINY, "--channels", "100000", "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "the cell network has" in lines[0] and "training it needs at least" in lines[0]
    assert "accepted: smaller --channels or --layers, or another --device" in lines[0]
    assert not out.exists()
