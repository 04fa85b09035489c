import os

import pytest
import torch

from compressor.actions.prune import channel_groups, prune_model
from compressor.recover import fine_tune, first_batches, recalibrate_batchnorm
from compressor.run_folder import atomic_folder, atomic_path
from compressor.saved_model import load_model, save_model
from compressor.tasks.digits import DigitsResNet


def _inner_only_plan(task):
    groups = channel_groups(task.model, task.example_inputs, task.ignored_layers)
    return {g.name: 0.5 for g in groups if g.name.endswith(".conv1")}


def test_adaptive_bn_makes_the_proxy_meaningful(digits_task):
    pruned, _ = prune_model(
        digits_task.model,
        digits_task.example_inputs,
        _inner_only_plan(digits_task),
        round_to=8,
        ignored_layers=digits_task.ignored_layers,
    )
    stale = digits_task.evaluate(pruned)
    recalibrate_batchnorm(pruned, first_batches(digits_task.train_data, 256), 256)
    calibrated = digits_task.evaluate(pruned)
    assert stale < 0.5  # stale statistics: near chance
    assert calibrated >= 0.8  # measured 0.92
    assert calibrated > stale + 0.3


def test_fine_tune_recovers_a_heavily_pruned_model(digits_task):
    groups = channel_groups(
        digits_task.model, digits_task.example_inputs, digits_task.ignored_layers
    )
    pruned, _ = prune_model(
        digits_task.model,
        digits_task.example_inputs,
        {g.name: 0.5 for g in groups},
        round_to=8,
        ignored_layers=digits_task.ignored_layers,
    )
    recalibrate_batchnorm(pruned, first_batches(digits_task.train_data, 256), 256)
    before = digits_task.evaluate(pruned)
    fine_tune(
        pruned, digits_task.train_data, digits_task.loss_fn, epochs=2, lr=0.01, progress=False
    )
    after = digits_task.evaluate(pruned)
    assert after >= 0.95 and after > before  # measured 0.28 -> 0.97


def test_default_model_is_accurate(digits_task):
    assert digits_task.evaluate_test(digits_task.model) >= 0.97


def test_saved_pruned_model_reloads_with_identical_outputs(digits_task, tmp_path):
    pruned, kept = prune_model(
        digits_task.model,
        digits_task.example_inputs,
        _inner_only_plan(digits_task),
        round_to=8,
        ignored_layers=digits_task.ignored_layers,
    )
    save_model(pruned, tmp_path / "model.safetensors")
    restored = load_model(DigitsResNet(), tmp_path / "model.safetensors")
    inputs = torch.randn(5, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(restored(inputs), pruned(inputs))
    assert restored.layer2[0].conv1.out_channels == kept["layer2.0.conv1"] == 16
    assert restored.layer2[0].bn1.num_features == 16


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_atomic_folder_moves_a_group_in_whole_or_not_at_all(tmp_path):
    (tmp_path / "model.onnx").write_text("old")  # an earlier run's artifact
    (tmp_path / "config.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path, last="model.onnx") as staging:
        (staging / "config.json").write_text("new")
        (staging / "model.onnx").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.onnx"]
    assert (tmp_path / "model.onnx").read_text() == "old"  # untouched, and no staging left
    with pytest.raises(FileNotFoundError), atomic_folder(tmp_path, "model.onnx") as staging:
        (staging / "config.json").write_text("new")  # a group without its last file: refused
    assert (tmp_path / "config.json").read_text() == "old"
    killed = tmp_path / ".staging-killed"  # what a SIGKILLed run leaves behind
    killed.mkdir()
    (killed / "model.onnx").write_text("half")
    with atomic_folder(tmp_path, last="model.onnx") as staging:
        (staging / "config.json").write_text("new")
        (staging / "tokenizer.json").write_text("new")
        (staging / "model.onnx").write_text("new")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["config.json", "model.onnx", "tokenizer.json"]
    assert all((tmp_path / name).read_text() == "new" for name in names)


def test_cache_is_retrained_when_corrupt(tmp_path, monkeypatch):
    from compressor.tasks import digits

    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path))
    monkeypatch.setattr(digits, "TRAIN_EPOCHS", 1)
    monkeypatch.setattr(
        digits, "train_digits_model", lambda splits, **options: DigitsResNet().eval()
    )
    cache = tmp_path / f"{digits.CACHE_VERSION}.safetensors"
    cache.write_bytes(b"not a safetensors file")
    model = digits.load_or_train_model(digits.load_splits(), verbose=False)
    assert isinstance(model, DigitsResNet)
    from safetensors.torch import load_file

    assert set(load_file(str(cache))) == set(model.state_dict())  # rewritten, readable


def test_atomic_outputs_get_the_mode_a_plain_open_would(tmp_path):
    # mkstemp's private 0600 would hide model.onnx from a server running as another user.
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"onnx")
    finally:
        os.umask(old)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644


def test_fine_tune_stops_after_the_configured_steps():
    """``recovery.steps`` is the budget for fine-tuning too (it used to be ignored)."""
    model = torch.nn.Linear(4, 3)
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(module.training))
    batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(4)]
    loss = torch.nn.functional.cross_entropy
    fine_tune(model, batches, loss, epochs=3, lr=0.01, steps=6, progress=False)
    assert calls == [True] * 6  # 6 steps: one and a half passes, not 3 epochs (12)
    calls.clear()
    fine_tune(model, batches, loss, epochs=1, lr=0.01, steps=0, progress=False)
    assert calls == []


def test_a_config_that_sets_the_removed_recovery_batch_size_is_refused():
    from compressor.config import CompressConfig
    from compressor.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown key recovery.batch_size"):
        CompressConfig.from_dict({"recovery": {"batch_size": 64}})
