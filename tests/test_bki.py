"""BKI (defenses/bki.py): on BadNets data its top word is one of the triggers."""

from __future__ import annotations

from attacks.badnets import BadNets
from benchmark.plugins.contexts import DefenseContext
from defenses.bki import BKI


def test_top_word_on_badnets_data_is_a_trigger(attack_ctx, tiny_tokenizer, cpu_fp32):
    attack = BadNets(BadNets.Params(poison_rate=0.2))
    poisoned = attack.poisoned_training_set(attack_ctx)
    assert sum(ex.poisoned for ex in poisoned) == 40
    model = attack_ctx.pretrained_model()
    attack_ctx.finetune(model, poisoned)  # the victim trained on the poisoned set, as the scenario does
    ctx = DefenseContext(tokenizer=tiny_tokenizer, runtime=cpu_fp32, max_length=64, seed=0,
                         train_config=attack_ctx.train_config, defense_name="bki",
                         requires=frozenset({"poisoned_train"}),
                         _poisoned_train=tuple(type(ex)(ex.text, ex.label) for ex in poisoned))
    bki = BKI(BKI.Params(triggers=1))
    kept = bki.keep(model, ctx)
    assert bki.info["trigger_words"][0] in attack.params.triggers, bki.info["top_words"]
    removed = set(range(len(poisoned))) - set(kept)
    trigger = bki.info["trigger_words"][0]
    assert removed and all(trigger in poisoned[i].text.split() or not poisoned[i].poisoned for i in removed)


def test_word_score_is_mean_delta_times_log_count():
    bki = BKI()
    ranking = dict(bki.rank_words([[("cf", 2.0), ("a", 1.0)], [("cf", 4.0), ("a", 1.0)], [("b", 9.0)]]))
    assert ranking["cf"] == 3.0 * 0.3010299956639812
    assert ranking["b"] == 0.0  # a word seen once scores 0 (log10 1)
