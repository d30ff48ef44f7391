import textwrap
import types

import pytest

from benchmark import Defense, hookimpl
from benchmark.base.errors import PluginError, UsageError
from benchmark.plugins.registry import Registry, default_registry, read_registry_toml
from benchmark.testing import run

TOY_PLUGIN = '''
import dataclasses
from benchmark import Defense, hookimpl


class HalveLr(Defense):
    """A throwaway defense: fine-tune the backdoored model for a single epoch."""

    name = "toy_ft"
    requires = frozenset({"clean_data"})
    version = "7"

    @dataclasses.dataclass(frozen=True)
    class Params:
        epochs: int = 1  # fine-tuning epochs

    def purify(self, model, ctx):
        ctx.finetune(model, ctx.clean_data, epochs=self.params.epochs)
        return model


@hookimpl
def bdbench_defenses():
    return [HalveLr]
'''


def install_plugin(root, dist, module, source, entry_name="toy"):
    """A throwaway plugin package 'installed' in ``root``: its module plus a dist-info with the
    entry point, which importlib.metadata finds once ``root`` is on sys.path."""
    (root / f"{module}.py").write_text(source, encoding="utf-8")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[bdbench]\n{entry_name} = {module}\n", encoding="utf-8")


def test_every_builtin_entry_imports_with_matching_name():
    table = read_registry_toml()
    registry = default_registry()
    for kind, section in (("attack", "attacks"), ("defense", "defenses")):
        for name in table[section]:
            entry = registry.entries[(kind, name)]
            try:
                cls = entry.load()
            except PluginError as exc:  # a plugin still missing is reported, never silently skipped
                pytest.fail(f"{name}: {exc}")
            assert cls.name == name


def test_unknown_plugin_suggests_names():
    with pytest.raises(UsageError, match=r"unknown defense 'finetun'. Did you mean 'finetune'"):
        default_registry().get("defense", "finetun")


def test_duplicate_names_are_refused():
    registry = Registry()
    registry.add("defense", "x", "a", lambda: None)
    with pytest.raises(PluginError, match="defined twice"):
        registry.add("defense", "x", "b", lambda: None)


def test_entry_point_plugin_is_listed_and_runs_a_cell(tmp_path, monkeypatch, tiny_victim_dir):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "bdbench_toy", "bdbench_toy_plugin", TOY_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    assert registry.entries[("defense", "toy_ft")].source.startswith("entry-point:bdbench_toy:")
    [record] = run(tmp_path, tiny_victim_dir, registry=registry, defenses=("toy_ft",))
    assert record["status"] == "ok", record.get("error")
    assert record["defense_version"] == "7" and record["train_samples"] > 0


def test_broken_plugin_breaks_only_its_own_runs(tmp_path, monkeypatch, tiny_victim_dir):
    site = tmp_path / "site"
    site.mkdir()
    install_plugin(site, "bdbench_broken", "bdbench_broken_plugin", "raise ImportError('no such dependency')")
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    assert any("no such dependency" in b for b in registry.broken)
    [record] = run(tmp_path, tiny_victim_dir, registry=registry, defenses=("none",))
    assert record["status"] == "ok"
    with pytest.raises(UsageError, match="failed to import.*no such dependency"):
        registry.get("defense", "toy_ft")


def test_plugin_class_that_fails_to_import_fails_its_cells_only(tmp_path, tiny_victim_dir):
    toml = tmp_path / "registry.toml"
    toml.write_text(textwrap.dedent('''
        [attacks]
        badnets = "attacks.badnets:BadNets"
        [defenses]
        none = "defenses.none:NoDefense"
        ghost = "defenses.does_not_exist:Ghost"
    '''), encoding="utf-8")
    registry = Registry()
    registry.load_builtins(toml)
    records = run(tmp_path, tiny_victim_dir, registry=registry, defenses=("ghost", "none"))
    by_name = {r["defense"]: r for r in records}
    assert by_name["none"]["status"] == "ok"
    assert by_name["ghost"]["status"] == "failed"
    assert "ModuleNotFoundError" in by_name["ghost"]["error"]


# --------------------------------------------------------------------------- plugins that misbehave at load time

class FakeEntryPoint:
    """What ``importlib.metadata`` yields for an installed plugin, with a chosen ``load()``."""

    def __init__(self, name, value, dist, obj=None, error=None):
        self.name, self.value, self.obj, self.error = name, value, obj, error
        self.dist = types.SimpleNamespace(name=dist)

    def load(self):
        if self.error is not None:
            raise self.error
        return self.obj


def plugin_module(name, **hooks):
    """A module whose functions ``hooks`` are marked ``@hookimpl``."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        function.__name__ = hook
        setattr(module, hook, hookimpl(function))
    return module


def toy_defense(defense_name):
    class Toy(Defense):
        name = defense_name
        requires = frozenset({"clean_data"})
        version = "1"

        def purify(self, model, ctx):
            return model

    return Toy


GOOD = FakeEntryPoint("good", "good_plugin", "bdbench-good",
                      plugin_module("good_plugin", bdbench_defenses=lambda: [toy_defense("good_guard")]))


def load_with(monkeypatch, *entry_points) -> Registry:
    monkeypatch.setattr("benchmark.plugins.registry.installed_entry_points", lambda: list(entry_points))
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    return registry


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_hook_that_raises_disables_its_plugin_only(monkeypatch, caplog):
    def explode():
        raise RuntimeError("boom at load")

    bad = FakeEntryPoint("bad", "bad_plugin", "bdbench-bad",
                         plugin_module("bad_plugin", bdbench_attacks=lambda: [], bdbench_defenses=explode))
    registry = load_with(monkeypatch, bad, GOOD)
    text = warnings_of(caplog)
    assert "bad = 'bad_plugin' of distribution bdbench-bad" in text
    assert "hook bdbench_defenses failed: RuntimeError: boom at load" in text
    assert [b for b in registry.broken if "bdbench-bad" in b]
    assert registry.get("defense", "good_guard").name == "good_guard"  # the others load
    assert registry.entries[("defense", "none")].source.startswith("builtin:")
    assert "entry-point:bdbench-bad:bad_plugin" not in {registry.pm.get_name(p) for p in registry.pm.get_plugins()}
    assert "entry-point:bdbench-good:good_plugin" in {registry.pm.get_name(p) for p in registry.pm.get_plugins()}


def test_a_name_clash_with_a_builtin_disables_the_plugin(monkeypatch, caplog):
    clash = FakeEntryPoint("clash", "clash_plugin", "bdbench-clash", plugin_module(
        "clash_plugin", bdbench_defenses=lambda: [toy_defense("its_own"), toy_defense("none")]))
    registry = load_with(monkeypatch, clash)
    text = warnings_of(caplog)
    assert "of distribution bdbench-clash" in text and "hook bdbench_defenses failed" in text
    assert "defense 'none' is defined twice" in text
    assert registry.entries[("defense", "none")].source == "builtin:defenses.none:NoDefense"
    assert ("defense", "its_own") not in registry.entries  # the whole plugin is disabled


def test_an_entry_point_that_provides_nothing_is_reported(monkeypatch, caplog):
    naming_a_class = FakeEntryPoint("guard", "bdbench_guard.plugin:Guard", "bdbench-guard", toy_defense("guard"))
    registry = load_with(monkeypatch, naming_a_class)
    text = warnings_of(caplog)
    assert "guard = 'bdbench_guard.plugin:Guard' of distribution bdbench-guard" in text
    assert "provides nothing" in text and "@hookimpl def bdbench_defenses()" in text
    assert ("defense", "guard") not in registry.entries
    assert any("provides nothing" in b for b in registry.broken)


def test_a_misspelt_hook_is_reported_not_fatal(monkeypatch, caplog):
    typo = FakeEntryPoint("typo", "typo_plugin", "bdbench-typo",
                          plugin_module("typo_plugin", bdbench_defences=lambda: [toy_defense("typo_guard")]))
    registry = load_with(monkeypatch, typo, GOOD)
    assert "bdbench_defences" in warnings_of(caplog) and "not a valid bdbench plugin" in warnings_of(caplog)
    assert ("defense", "good_guard") in registry.entries


def test_every_command_survives_a_broken_plugin(monkeypatch, capsys, tmp_path, tiny_victim_dir):
    from benchmark.cli.commands import main

    def explode():
        raise RuntimeError("boom at load")

    bad = FakeEntryPoint("bad", "bad_plugin", "bdbench-bad", plugin_module("bad_plugin", bdbench_defenses=explode))
    monkeypatch.setattr("benchmark.plugins.registry.installed_entry_points", lambda: [bad])
    monkeypatch.setattr("benchmark.plugins.registry._DEFAULT", None)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "none v1" in out and "hook bdbench_defenses failed: RuntimeError: boom at load" in out
    assert main(["validate", "--victim", str(tiny_victim_dir), "--out", str(tmp_path / "o")]) == 0


def test_a_defense_that_declares_no_requires_is_refused():
    """No asset is granted by omission: a defense states what it needs, frozenset() for nothing."""
    from benchmark.plugins.registry import validate_plugin_class

    class Silent(Defense):
        name = "silent"

        def purify(self, model, ctx):
            return model

    with pytest.raises(PluginError, match=r"'silent' \(.*Silent\) does not declare requires"):
        validate_plugin_class("defense", "silent", Silent)

    class Modest(Silent):
        requires = frozenset()

    Modest.name = "modest"
    validate_plugin_class("defense", "modest", Modest)  # declaring nothing is a declaration
