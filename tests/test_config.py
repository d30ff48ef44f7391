import pytest

from benchmark.base.errors import UsageError
from benchmark.harness.cells import expand
from benchmark.harness.config import suite_from_toml
from benchmark.plugins.registry import read_registry_toml

TABLE = {"suites": {"two": {
    "datasets": ["sst2", "imdb"], "attacks": ["badnets"], "defenses": ["none", "finetune"], "seeds": [0, 1],
    "train_limit": 2000, "set": {"badnets": {"poison_rate": 0.2}},
    "per_dataset": {"imdb": {"train_limit": 500, "max_length": 256, "victim_training": {"epochs": 2},
                             "set": {"badnets": {"num_triggers": 3}}}},
}}}


def test_per_dataset_budget_and_parameters_apply_to_that_dataset_only():
    cells = expand(suite_from_toml("two", TABLE))
    by_dataset = {c.dataset: c for c in cells}
    assert len(cells) == 2 * 2 * 2
    sst2, imdb = by_dataset["sst2"], by_dataset["imdb"]
    assert (sst2.budget.train_limit, sst2.budget.max_length, sst2.budget.victim_training.epochs) == (2000, 128, 3)
    assert (imdb.budget.train_limit, imdb.budget.max_length, imdb.budget.victim_training.epochs) == (500, 256, 2)
    assert dict(sst2.attack.overrides) == {"poison_rate": 0.2}
    assert dict(imdb.attack.overrides) == {"poison_rate": 0.2, "num_triggers": 3}


def test_command_line_budget_replaces_per_dataset_values():
    suite = suite_from_toml("two", TABLE).with_changes(budget_changes={"train_limit": 100})
    assert {c.budget.train_limit for c in expand(suite)} == {100}
    assert {c.budget.max_length for c in expand(suite) if c.dataset == "imdb"} == {256}


@pytest.mark.parametrize("change, message", [
    ({"per_dataset": {"sst5": {}}}, "not one of the suite's datasets"),
    ({"per_dataset": {"imdb": {"epochs": 2}}}, "unknown keys ['epochs']"),
])
def test_bad_per_dataset_tables_are_named(change, message):
    table = {"suites": {"two": {**TABLE["suites"]["two"], **change}}}
    with pytest.raises(UsageError, match=r"per_dataset") as error:
        suite_from_toml("two", table)
    assert message in str(error.value)


def test_every_registry_suite_parses():
    registry = read_registry_toml()
    for name in registry["suites"]:
        assert expand(suite_from_toml(name, registry))


def test_narrowing_by_label_keeps_the_suites_configuration():
    registry = read_registry_toml()
    suite = suite_from_toml("paper", registry).with_changes(attacks=["badnets"], defenses=["fine_mixing+e_pur", "nad"],
                                                             datasets=("imdb",))
    cells = expand(suite)
    assert {dict(c.attack.overrides).get("num_triggers") for c in cells} == {3}
    assert {(c.defense.label, c.defense.name, c.defense.overrides) for c in cells} == {
        ("fine_mixing+e_pur", "fine_mixing", (("e_pur", True),)), ("nad", "nad", ())}


def test_paper_suite_is_the_literatures_setting():
    """The published suite trains victims as OpenBackdoor and the MBTSAD paper do (lr 2e-5, batch
    32) on the full SST-2 training set and at least 4000 IMDb reviews, and no defense recipe's lr
    is more than a factor of two from the victim's (results/README.md)."""
    suite = suite_from_toml("paper", read_registry_toml())
    sst2, imdb = suite.plan("sst2-openbackdoor").budget, suite.plan("imdb").budget
    assert sst2.train_limit is None and imdb.train_limit >= 4000
    for budget in (sst2, imdb):
        victim, defense = budget.victim_training, budget.defense_training
        assert (victim.lr, victim.batch_size) == (2e-5, 32)
        assert max(victim.lr, defense.lr) / min(victim.lr, defense.lr) <= 2
