import textwrap

import pytest

from benchmark.errors import PluginError, UsageError
from benchmark.registry import Registry, default_registry, read_registry_toml

from helpers import run

TOY_PLUGIN = '''
import dataclasses
from benchmark import Defense, hookimpl


class HalveLr(Defense):
    """A throwaway defense: fine-tune the backdoored model for a single epoch."""

    name = "toy_ft"
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
