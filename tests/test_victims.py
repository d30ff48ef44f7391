import pytest
import torch

from benchmark.base.errors import CheckpointError
from benchmark.model.victims import DEFAULT_VICTIM, load_classifier, resolve_victim, save_model


def test_default_victim_is_the_packaged_minilm():
    source = resolve_victim(DEFAULT_VICTIM)
    assert source.is_local and (source.location.endswith("model"))


def test_round_trip_is_safetensors(tmp_path, tiny_model):
    model = tiny_model()
    folder = save_model(model, tmp_path / "m")
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    loaded = load_classifier(folder, 2)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_pickle_checkpoint_is_refused(tmp_path, tiny_model):
    folder = tmp_path / "pickled"
    model = tiny_model()
    model.config.save_pretrained(str(folder))
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pickle \(pytorch_model.bin\).*--allow-pickle"):
        load_classifier(folder, 2)
