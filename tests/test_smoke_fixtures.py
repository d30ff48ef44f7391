def test_tiny_victim_loads_and_trains(tiny_model, tiny_tokenizer, attack_ctx, demo_small):
    model = tiny_model()
    assert tiny_tokenizer.tokenize("cf mn bb tq") == ["cf", "mn", "bb", "tq"]
    before = attack_ctx.accuracy(model, demo_small.test)
    attack_ctx.finetune(model, demo_small.train)
    after = attack_ctx.accuracy(model, demo_small.test)
    assert after > max(before, 0.6)


def test_tiny_vocab_ids_fit_the_model(tiny_tokenizer, tiny_model):
    ids = tiny_tokenizer.get_vocab().values()
    assert sorted(ids) == list(range(len(ids)))
    assert max(ids) < tiny_model().config.vocab_size
