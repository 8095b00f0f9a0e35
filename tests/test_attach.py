"""Attachment: only chosen layers and positions change, the context always cleans up, and
generation edits the prompt on the prefill only (checked against a step-by-step loop)."""
import pytest
import torch
from torch import nn

from conftest import tiny_llama
from reftrun.positions import PositionSpec, batch_positions
from reftrun.reft import Reft, ReftSpec, find_layers


def make_reft(layers, positions="f2+l2", share=True, kind="loreft", hidden=64, seed=0):
    torch.manual_seed(seed)
    reft = Reft(ReftSpec(intervention=kind, rank=4, layers=layers, positions=positions, share_weights=share,
                         hidden_size=hidden))
    with torch.no_grad():  # make the edit large enough to see
        for p in reft.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return reft.eval()


def layer_outputs(model, **inputs):
    """Each block's output, recorded by hooks registered after (so seeing) any intervention hooks."""
    seen = []
    handles = [l.register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).clone()))
               for l in find_layers(model)]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_only_chosen_layers_and_positions_change():
    model = tiny_llama(layers=3)
    ids = torch.randint(0, 256, (2, 10))
    positions, mask = batch_positions(PositionSpec.parse("f2+l2"), True, [10, 10], [0, 0])
    plain = layer_outputs(model, input_ids=ids)
    reft = make_reft([1])
    with reft.attached(model, positions, mask):
        edited = layer_outputs(model, input_ids=ids)
    assert torch.equal(plain[0], edited[0])                       # layer 0 untouched
    changed = (plain[1] != edited[1]).any(-1)                       # layer 1: exactly positions 0, 1, 8, 9
    expected = torch.zeros(2, 10, dtype=torch.bool)
    expected[:, [0, 1, 8, 9]] = True
    assert torch.equal(changed, expected)
    assert not torch.allclose(plain[2], edited[2])                 # and the edit propagates downstream


def test_leaving_the_context_restores_the_model_exactly():
    model = tiny_llama()
    ids = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    positions, mask = batch_positions(PositionSpec.parse("l1"), True, [8, 8], [0, 0])
    reft = make_reft([0, 1], positions="l1")
    with pytest.raises(RuntimeError):
        with reft.attached(model, positions, mask):
            raise RuntimeError("boom")                               # cleanup must happen on errors too
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    assert all(not l._forward_hooks for l in find_layers(model)) and not model._forward_hooks


def test_base_weights_never_change_and_only_interventions_get_gradients():
    model = tiny_llama()
    model.requires_grad_(False)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    reft = make_reft([0, 1]).train()
    ids = torch.randint(0, 256, (2, 8))
    positions, mask = batch_positions(PositionSpec.parse("f2+l2"), True, [8, 8], [0, 0])
    opt = torch.optim.AdamW(reft.parameters(), lr=1e-2)
    with reft.attached(model, positions, mask):
        model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in reft.parameters())
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())


def manual_greedy(model, reft, ids, attn, positions, mask, steps):
    """No KV cache: every step re-runs the whole sequence with the same prompt positions edited."""
    for _ in range(steps):
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad(), reft.attached(model, positions, mask):
            logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
    return ids


@pytest.mark.parametrize("share", [True, False])
def test_generation_edits_prompt_only_and_matches_a_manual_loop(share):
    model = tiny_llama(seed=1)
    prompts = [torch.randint(0, 256, (9,)).tolist(), torch.randint(0, 256, (5,)).tolist()]
    width = max(map(len, prompts))
    pads = [width - len(p) for p in prompts]
    ids = torch.tensor([[258] * n + p for p, n in zip(prompts, pads)])
    attn = torch.tensor([[0] * n + [1] * len(p) for p, n in zip(prompts, pads)])
    spec = PositionSpec.parse("f2+l2")
    positions, mask = batch_positions(spec, share, [len(p) for p in prompts], pads)
    reft = make_reft([0, 1], share=share, seed=2)
    out = reft.generate(model, ids, attn, positions, mask, max_new_tokens=6, do_sample=False, pad_token_id=258,
                        eos_token_id=None, min_new_tokens=6)
    expected = manual_greedy(model, reft, ids, attn, positions, mask, 6)
    assert torch.equal(out, expected)
    with torch.no_grad():  # and the interventions matter: plain generation differs
        plain = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=6, do_sample=False,
                               pad_token_id=258, eos_token_id=None, min_new_tokens=6)
    assert not torch.equal(plain, out)
    assert not model._forward_hooks and all(not l._forward_hooks for l in find_layers(model))


def test_layer_lookup_covers_decoders_and_encoders():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, RobertaConfig, RobertaForSequenceClassification
    small = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=100)
    assert len(find_layers(GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=100)))) == 3
    assert len(find_layers(BertModel(BertConfig(**small)))) == 2
    assert len(find_layers(RobertaForSequenceClassification(RobertaConfig(**small, max_position_embeddings=40)))) == 2
    with pytest.raises(ValueError, match="unsupported model Linear: no block list at any of model.layers"):
        find_layers(nn.Linear(2, 2))


def test_gpt2_tuple_outputs_are_edited():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100)).eval()
    ids = torch.randint(0, 100, (1, 6))
    positions, mask = batch_positions(PositionSpec.parse("l1"), True, [6], [0])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with make_reft([1], positions="l1", hidden=32).attached(model, positions, mask):
            edited = model(input_ids=ids).logits
    assert torch.equal(plain[0, :5], edited[0, :5]) and not torch.allclose(plain[0, 5], edited[0, 5])


def test_gradient_checkpointing_keeps_interventions_in_the_recomputed_forward():
    from reftrun.models import enable_gradient_checkpointing
    ids = torch.randint(0, 256, (2, 12))
    positions, mask = batch_positions(PositionSpec.parse("f2+l2"), True, [12, 12], [0, 0])
    grads = []
    for checkpointing in (False, True):
        model = tiny_llama(layers=3)
        model.requires_grad_(False)
        if checkpointing:
            enable_gradient_checkpointing(model, find_layers(model))
        reft = make_reft([0, 2]).train()
        recomputed = []
        if checkpointing:  # count calls inside a block: a checkpointed block runs again in backward
            find_layers(model)[2].mlp.register_forward_pre_hook(lambda *a: recomputed.append(1))
        with reft.attached(model, positions, mask):
            model(input_ids=ids, labels=ids).loss.backward()
        if checkpointing:
            assert len(recomputed) == 2
        grads.append([p.grad.clone() for p in reft.parameters()])
    for plain, checkpointed in zip(*grads):
        torch.testing.assert_close(plain, checkpointed, rtol=1e-5, atol=1e-7)
