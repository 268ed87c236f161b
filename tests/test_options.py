import pytest

from nasplug.core.options import OptionError, instantiate, parse_pairs, read_toml


class Plugin:
    def __init__(
        self,
        tau: float = 1.0,
        steps: int = 3,
        hard: bool = False,
        name: str = "x",
        limit: float | None = None,
    ) -> None:
        self.kw = dict(tau=tau, steps=steps, hard=hard, name=name, limit=limit)


def test_options_are_typed_from_the_signature():
    p = instantiate(
        Plugin,
        {"tau": "0.5", "steps": "7", "hard": "true", "name": "n", "limit": "none"},
        "relaxation 'p'",
    )
    assert p.kw == dict(tau=0.5, steps=7, hard=True, name="n", limit=None)
    assert instantiate(Plugin, {"limit": "2"}, "x").kw["limit"] == 2.0


def test_unknown_key_lists_accepted_names():
    with pytest.raises(
        OptionError, match=r"unknown option 'tua' for relaxation 'p'; accepted: tau, steps"
    ):
        instantiate(Plugin, {"tua": "1"}, "relaxation 'p'")


@pytest.mark.parametrize("key,value", [("tau", "abc"), ("steps", "1.5"), ("hard", "maybe")])
def test_bad_values_name_the_option(key, value):
    with pytest.raises(OptionError, match=key):
        instantiate(Plugin, {key: value}, "relaxation 'p'")


def test_pairs_and_toml(tmp_path):
    assert parse_pairs(["a=1", "b = x=y"], "--space-opt") == {"a": "1", "b": "x=y"}
    with pytest.raises(OptionError, match="KEY=VALUE"):
        parse_pairs(["novalue"], "--space-opt")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nspace = 1")
    with pytest.raises(OptionError, match="not valid TOML"):
        read_toml(bad)
    with pytest.raises(OptionError, match="does not exist"):
        read_toml(tmp_path / "missing.toml")
