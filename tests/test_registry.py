"""Plugin discovery through entry points, tested with temporary ``*.dist-info`` folders on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nasplug.cli import main
from nasplug.core import registry

GOOD = """
import torch
from nasplug.core.interfaces import Relaxation


class Uniform(Relaxation):
    def weights(self, logits):
        return torch.full_like(logits, 1.0 / logits.shape[-1])
"""
BROKEN = "import nasplug_missing_dependency  # not installed anywhere\n"


def fake_dist(
    root: Path,
    dist: str,
    version: str,
    entry_points: dict[str, dict[str, str]],
    modules: dict[str, str] | None = None,
) -> Path:
    """A distribution as pip would leave it: METADATA and entry_points.txt, plus its modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(source)
    return root


RELAX = "nasplug.relaxations"


def listing(capsys) -> str:
    assert main(["list"]) == 0
    return capsys.readouterr().out


def line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [name])


def test_third_party_plugin_is_discovered_and_loaded(site, capsys):
    fake_dist(
        site,
        "nasplug-fake",
        "1.2.3",
        {RELAX: {"uniform": "nasplug_fake_good:Uniform"}},
        {"nasplug_fake_good": GOOD},
    )
    assert "uniform" in registry.names("relaxation")
    info = registry.info("relaxation", "uniform")
    assert (info.dist, info.version, info.builtin) == ("nasplug-fake", "1.2.3", False)
    cls = registry.load("relaxation", "uniform")
    assert cls.__name__ == "Uniform"
    out = listing(capsys)
    assert "nasplug-fake 1.2.3 (third-party)" in line_of(out, "uniform")
    assert "(built-in)" in line_of(out, "softmax")


def test_names_do_not_import_plugins(site):
    fake_dist(
        site,
        "nasplug-fake",
        "1.0",
        {RELAX: {"lazy": "nasplug_fake_lazy:Uniform"}},
        {"nasplug_fake_lazy": GOOD},
    )
    registry.names("relaxation")
    registry.info("relaxation", "lazy")
    assert "nasplug_fake_lazy" not in sys.modules
    registry.load("relaxation", "lazy")
    assert "nasplug_fake_lazy" in sys.modules


def test_unknown_name_is_one_line_listing_the_available_names():
    with pytest.raises(registry.PluginError) as e:
        registry.load("relaxation", "sparsmax")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("unknown relaxation 'sparsmax'; available: ")
    for name in registry.names("relaxation"):
        assert name in msg
    with pytest.raises(
        registry.PluginError, match="unknown plugin axis 'optimizer'; accepted: space"
    ):
        registry.names("optimizer")


def test_unknown_name_on_the_command_line_exits_2_with_one_line(capsys):
    assert main(["run", "--relax", "sparsmax", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown relaxation 'sparsmax'; available:" in err


def test_broken_plugin_names_its_entry_point_and_distribution(site, capsys):
    fake_dist(
        site,
        "nasplug-broken",
        "0.1",
        {RELAX: {"shaky": "nasplug_fake_broken:Thing"}},
        {"nasplug_fake_broken": BROKEN},
    )
    fake_dist(
        site,
        "nasplug-fake",
        "1.0",
        {RELAX: {"uniform": "nasplug_fake_fine:Uniform"}},
        {"nasplug_fake_fine": GOOD},
    )
    with pytest.raises(registry.PluginError) as e:
        registry.load("relaxation", "shaky")
    msg = str(e.value)
    assert "\n" not in msg
    assert "'nasplug_fake_broken:Thing'" in msg and "nasplug-broken 0.1" in msg
    assert "nasplug_missing_dependency" in msg
    assert isinstance(e.value.__cause__, ImportError)
    # The others still load, and `nasplug list` still lists everything.
    assert registry.load("relaxation", "uniform").__name__ == "Uniform"
    out = listing(capsys)
    assert "BROKEN" in line_of(out, "shaky") and "nasplug_missing_dependency" in line_of(
        out, "shaky"
    )
    assert "BROKEN" not in line_of(out, "uniform") and "BROKEN" not in line_of(out, "softmax")
    for heading in ("spaces:", "relaxations:", "strategies:", "datasets:"):
        assert heading in out


def test_a_name_registered_by_two_distributions_is_an_error_naming_both(site, capsys):
    fake_dist(
        site / "a",
        "nasplug-alpha",
        "1.0",
        {RELAX: {"twin": "nasplug_fake_a:Uniform"}},
        {"nasplug_fake_a": GOOD},
    )
    fake_dist(
        site / "b",
        "nasplug-beta",
        "2.0",
        {RELAX: {"twin": "nasplug_fake_b:Uniform"}},
        {"nasplug_fake_b": GOOD},
    )
    sys.path[:0] = [str(site / "a"), str(site / "b")]
    try:
        with pytest.raises(registry.PluginError) as e:
            registry.load("relaxation", "twin")
        msg = str(e.value)
        assert "\n" not in msg and "registered twice" in msg
        assert "nasplug-alpha 1.0" in msg and "nasplug-beta 2.0" in msg
        out = listing(capsys)
        twins = [line for line in out.splitlines() if line.split()[:1] == ["twin"]]
        assert len(twins) == 2 and all("CONFLICT" in line for line in twins)
    finally:
        sys.path.remove(str(site / "a"))
        sys.path.remove(str(site / "b"))


def test_shadowing_a_builtin_name_is_an_error_too(site):
    fake_dist(
        site,
        "nasplug-shadow",
        "0.3",
        {RELAX: {"softmax": "nasplug_fake_shadow:Uniform"}},
        {"nasplug_fake_shadow": GOOD},
    )
    with pytest.raises(registry.PluginError, match="relaxation 'softmax' is registered twice") as e:
        registry.load("relaxation", "softmax")
    builtin = registry.available("relaxation")["softmax"]
    assert "nasplug-shadow 0.3" in str(e.value)
    assert any(f"{p.dist} {p.version}" in str(e.value) for p in builtin if p.builtin)


def test_disabling_autoload_keeps_only_the_builtins(site, monkeypatch, capsys):
    fake_dist(
        site,
        "nasplug-fake",
        "1.0",
        {
            RELAX: {"uniform": "nasplug_fake_off:Uniform"},
            "nasplug.spaces": {"tiny": "nasplug_fake_off:Nothing"},
        },
        {"nasplug_fake_off": GOOD},
    )
    assert "uniform" in registry.names("relaxation")
    monkeypatch.setenv("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "uniform" not in registry.names("relaxation") and "tiny" not in registry.names("space")
    assert all(
        p.builtin
        for axis in registry.AXES
        for regs in registry.available(axis).values()
        for p in regs
    )
    with pytest.raises(registry.PluginError, match="unknown relaxation 'uniform'"):
        registry.load("relaxation", "uniform")
    out = listing(capsys)
    assert "(third-party)" not in out and "uniform" not in out
    assert "NASPLUG_DISABLE_PLUGIN_AUTOLOAD set" in out
    entries = [line for line in out.splitlines() if line.startswith("  ")]
    assert entries and all("(built-in)" in line for line in entries)
    monkeypatch.setenv("NASPLUG_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert "(third-party)" in line_of(listing(capsys), "uniform")
