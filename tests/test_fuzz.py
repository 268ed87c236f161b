"""Property-based fuzzing of what users type and write: config files, genotypes as JSON and as
DARTS strings, and ``--*-opt`` values. Every outcome is a result or one line of error.

The search and the training themselves are replaced by stubs: what is fuzzed is everything
the command line checks before it starts them. The budget is small, for the test suite.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasplug import api, cli
from nasplug.core import registry
from nasplug.core.options import accepted
from nasplug.core.types import Genotype

BUDGET = settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
TINY_TABLES = "[space]\nchannels = 2\nlayers = 1\n[data]\ntrain_per_class = 2\ntest_per_class = 2\n"


def run_cli(args: list[str]) -> tuple[int, str]:
    """``nasplug ARGS`` in process with the search and training stubbed out."""
    err = io.StringIO()
    with (
        mock.patch("nasplug.run.searching._execute", side_effect=_stub_search),
        mock.patch("nasplug.run.training.train_network", side_effect=_stub_train),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(err),
    ):
        code = cli.main(args)
    return code, err.getvalue()


def _stub_search(prepared, run, **kw):
    space = prepared.plugins["space"]
    return api.SearchRun(
        space.sample(lambda name, options: options[0]),
        {},
        [],
        [],
        space,
        prepared.data,
        prepared.cfg.to_dict(),
        run_dir=run.path,
    )


def _stub_train(prepared, run, **kw):
    result = {"metric": "accuracy", "test_accuracy": 0.0, "params": 0, "seconds": 0.0}
    return result, [], None, None


def assert_result_or_one_line(code: int, err: str, out: Path) -> None:
    lines = err.strip().splitlines()
    if code == 0:
        assert (out / "config.json").is_file()
        return
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("nasplug: error: "), err
    assert "unexpected" not in lines[0], lines[0]
    assert not out.exists(), f"{out} written for: {lines[0]}"


# ---- config files ------------------------------------------------------------------------------
KEYS = sorted(cli.DEFAULTS) + ["bogus", "batch-size"]
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "cell",
            "dense",
            "softmax",
            "darts",
            "random",
            "auto",
            "cpu",
            "cuda",
            "cuda:7",
            "mps",
            "inductor",
            "fashion-mnist-small",
            "env:NOPE",
            "file:/nope",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan"
            if v != v
            else ("inf" if v == float("inf") else "-inf" if v == -float("inf") else repr(v))
        )
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


@BUDGET
@given(
    table=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
    top=st.sampled_from(["", "run = 5\n", "space = [1]\n", "other = 1\n"]),
)
def test_config_files_give_a_run_or_one_line(tmp_path_factory, table, top):
    d = tmp_path_factory.mktemp("fuzz")
    text = top
    if not top.startswith("run = "):  # else the [run] table would redefine it
        text += "[run]\n" + "".join(
            f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items()
        )
    (d / "c.toml").write_text(text + TINY_TABLES)
    out = d / "out"
    code, err = run_cli(["run", "--config", str(d / "c.toml"), "--out", str(out), "--quiet"])
    assert_result_or_one_line(code, err, out)


@BUDGET
@given(raw=st.text(max_size=80))
def test_any_config_text_gives_a_run_or_one_line(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "c.toml").write_text(raw)
    out = d / "out"
    code, err = run_cli(
        [
            "run",
            "--config",
            str(d / "c.toml"),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--space-opt",
            "channels=2",
            "--space-opt",
            "layers=1",
            "--data-opt",
            "train_per_class=2",
            "--data-opt",
            "test_per_class=2",
        ]
    )
    assert_result_or_one_line(code, err, out)


# ---- --*-opt values ----------------------------------------------------------------------------
# Sizes stay small: a space asked for a million nodes builds them, as the user asked.
OPT_VALUES = st.one_of(
    st.text(max_size=10),
    st.integers(-5, 40).map(str),
    st.sampled_from(["nan", "inf", "-1", "0", "1e999", "true", "none", "", "=", "0x10"]),
)


PLUGINS = {
    "space": ("space", "cell"),
    "relax": ("relaxation", None),
    "strategy": ("strategy", None),
    "data": ("dataset", "fashion-mnist-small"),
}


@BUDGET
@given(
    axis=st.sampled_from(sorted(PLUGINS)),
    data=st.data(),
    relax=st.sampled_from(["softmax", "sparsemax", "gumbel"]),
    strategy=st.sampled_from(["darts", "random", "pdarts"]),
)
def test_plugin_options_give_a_run_or_one_line(tmp_path_factory, axis, data, relax, strategy):
    kind, name = PLUGINS[axis]
    name = name or {"relax": relax, "strategy": strategy}[axis]
    options = sorted(accepted(registry.load(kind, name))) + ["bogus"]
    key = data.draw(st.sampled_from(options))
    value = data.draw(OPT_VALUES)
    d = tmp_path_factory.mktemp("fuzz")
    out = d / "out"
    opts = {"space": ["channels=2", "layers=1"], "data": ["train_per_class=2", "test_per_class=2"]}
    opts.setdefault(axis, []).append(f"{key}={value}")
    flags = [x for ax, pairs in opts.items() for pair in pairs for x in (f"--{ax}-opt", pair)]
    with mock.patch(
        "nasplug.run.searching._check_space_takes"
    ):  # a huge supernet is the user's to ask for
        code, err = run_cli(
            [
                "run",
                "--relax",
                relax,
                "--strategy",
                strategy,
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--quiet",
                "--out",
                str(out),
                *flags,
            ]
        )
    assert_result_or_one_line(code, err, out)


# ---- genotypes ---------------------------------------------------------------------------------
OPS = st.sampled_from(["sep_conv_3x3", "skip_connect", "max_pool_3x3", "none", "conv_9x9", ""])
EDGE = st.one_of(
    st.tuples(OPS, st.integers(-3, 8)),
    st.tuples(OPS, st.text(max_size=2)),
    st.integers(),
    st.tuples(OPS),
)
CONCAT = st.one_of(st.lists(st.integers(-2, 8), max_size=5), st.integers(), st.text(max_size=3))
SPEC = st.fixed_dictionaries(
    {},
    optional={
        "normal": st.one_of(st.lists(EDGE, max_size=6), st.integers(), st.text(max_size=3)),
        "normal_concat": CONCAT,
        "reduce": st.one_of(st.lists(EDGE, max_size=6), st.none()),
        "reduce_concat": CONCAT,
        "choices": st.dictionaries(st.text(max_size=3), st.text(max_size=3)),
    },
)


@BUDGET
@given(space=st.sampled_from(["cell", "cell", "cell", "nope"]), spec=SPEC)
def test_genotype_json_gives_a_network_or_one_line(tmp_path_factory, space, spec):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "g.json").write_text(json.dumps({"space": space, "spec": spec}))
    out = d / "out"
    code, err = run_cli(
        [
            "train",
            str(d / "g.json"),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--channels",
            "2",
            "--layers",
            "2",
            "--data-opt",
            "train_per_class=2",
            "--data-opt",
            "test_per_class=2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert_result_or_one_line(code, err, out)


def _range_or_list(draw_ints):
    return st.one_of(
        st.tuples(draw_ints, draw_ints).map(lambda ab: f"range({ab[0]}, {ab[1]})"),
        st.tuples(draw_ints, draw_ints, draw_ints).map(lambda t: f"range({t[0]}, {t[1]}, {t[2]})"),
        st.lists(draw_ints, max_size=4).map(str),
        st.sampled_from(["range()", "range('a')", "{1, 2}", "b'x'", "1j", "..."]),
    )


EDGES_TEXT = st.lists(st.tuples(OPS, st.integers(-2, 6)), max_size=6).map(
    lambda es: "[" + ", ".join(f"({op!r}, {i})" for op, i in es) + "]"
)
INTS = st.integers(-(10**13), 10**13)


@BUDGET
@given(
    normal=st.one_of(EDGES_TEXT, st.integers().map(str)),
    reduce=EDGES_TEXT,
    nc=_range_or_list(INTS),
    rc=_range_or_list(INTS),
    noise=st.sampled_from(["", ")", "(", "__import__('os')", ", x=1", "[" * 200, "*"]),
)
def test_genotype_strings_give_a_genotype_or_one_line(normal, reduce, nc, rc, noise):
    text = (
        f"Genotype(normal={normal}, normal_concat={nc}, reduce={reduce}, reduce_concat={rc}{noise})"
    )
    try:
        g = Genotype.parse(text)
    except ValueError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert g.space == "cell" and len(json.dumps(g.to_dict())) < 100_000


@BUDGET
@given(text=st.text(max_size=60))
def test_any_genotype_text_gives_a_genotype_or_one_line(text):
    for t in (text, "Genotype(" + text + ")", "{" + text):
        try:
            Genotype.parse(t)
        except ValueError as e:
            assert "\n" not in str(e) and str(e)
