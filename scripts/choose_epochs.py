"""Choose a victim recipe's epoch count on clean dev data, as OpenBackdoor's ``ckpt="best"`` does.

Trains the clean reference victim (the suite's data, budget and victim recipe, at ``--max-epochs``
epochs with the recipe's schedule over all of them) and prints clean dev accuracy after every epoch.
The chosen count is the first epoch whose dev accuracy is within ``--within`` of the best one: the
point where training has converged. Nothing here reads the test split.

    python scripts/choose_epochs.py --suite paper --dataset sst2-openbackdoor --max-epochs 4 \
        --data-dir ../shared/data

Prints one JSON line per epoch and a last line with the choice; results/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from benchmark.harness.cells import HarnessConfig
from benchmark.harness.config import suite_from_toml
from benchmark.harness.harness import Harness
from benchmark.harness.scenario import Splits
from benchmark.model.encoding import encode
from benchmark.model.training import accuracy, train
from benchmark.plugins.registry import read_registry_toml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="paper")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--max-epochs", type=int, default=4)
    parser.add_argument("--within", type=float, default=0.005, help="dev-accuracy distance from the best")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    suite = suite_from_toml(args.suite, read_registry_toml())
    plan = suite.plan(args.dataset)
    budget, victim = plan.budget, suite.victims[0]
    recipe = budget.victim_training.replace(epochs=args.max_epochs)
    with tempfile.TemporaryDirectory() as store:
        harness = Harness(HarnessConfig(store_dir=store, data_dir=args.data_dir))
        try:
            dataset, _ = harness.dataset(args.dataset)
            splits = Splits.limited(dataset, budget, args.seed)
            tokenizer = harness.tokenizer(victim)
            model = harness.pretrained_loader(victim, dataset.num_labels, args.seed)()
            train_set = encode(tokenizer, splits.train, budget.max_length)
            dev_set = encode(tokenizer, splits.dev, budget.max_length)
            curve: list[float] = []
            start = time.perf_counter()

            def report(model, epoch: int) -> None:
                curve.append(accuracy(model, dev_set, harness.runtime))
                print(json.dumps({"dataset": args.dataset, "epoch": epoch, "dev_acc": round(curve[-1], 4),
                                  "train_size": len(splits.train), "dev_size": len(splits.dev),
                                  "lr": recipe.lr, "seconds": round(time.perf_counter() - start, 1)}), flush=True)

            train(model, train_set, recipe, harness.runtime, seed=args.seed, on_epoch_end=report)
        finally:
            harness.close()
    best = max(curve)
    chosen = next(e for e, acc in enumerate(curve, 1) if acc >= best - args.within)
    print(json.dumps({"dataset": args.dataset, "chosen_epochs": chosen, "best_dev_acc": round(best, 4),
                      "within": args.within}))


if __name__ == "__main__":
    main()
