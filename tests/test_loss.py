"""reftrun.loss.target_loss against the loss computed by hand from the model's full logits.

For the architectures in FAST_LOSS_TYPES the loss runs the base model and applies the LM head to the target
positions only; for any other model it reads `model(...).logits`. Both must equal the summed cross-entropy of
the next-token logits (position t predicts token t+1) over the labelled tokens, and give the same gradient."""
import pytest
import torch

from reftrun.loss import FAST_LOSS_TYPES, target_loss

VOCAB, PAD = 100, 0


def tiny(model_type: str):
    """A random 2-layer causal LM with hidden size 32 and a 100-token vocabulary, in float32."""
    import transformers as tf
    torch.manual_seed(0)
    if model_type == "llama":
        config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = tf.LlamaForCausalLM(config)
    elif model_type == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                        bos_token_id=1, eos_token_id=1))
    elif model_type == "opt":
        model = tf.OPTForCausalLM(tf.OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                               num_attention_heads=4, max_position_embeddings=64,
                                               word_embed_proj_dim=32, pad_token_id=PAD))
    elif model_type == "gemma2":  # logits are soft-capped after the head: the head alone is not the logits
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                     head_dim=8, max_position_embeddings=64,
                                                     final_logit_softcapping=0.5, pad_token_id=PAD))
    model = model.float().eval()
    assert model.config.model_type == model_type
    return model


def batch():
    """Row 0 starts with a masked sink token (so the attention mask matters), row 1 is right-padded; labels
    are -100 on the prompt, the sink and the padding."""
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, VOCAB, (2, 9), generator=g)
    input_ids[0, 0] = PAD
    input_ids[1, 6:] = PAD
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[0, 0] = 0
    attention_mask[1, 6:] = 0
    labels = input_ids.clone()
    labels[0, :5] = -100    # sink + 4 prompt tokens; 4 target tokens
    labels[1, :3] = -100    # 3 prompt tokens; 3 target tokens, then padding
    labels[1, 6:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def loss_from_full_logits(model, b):
    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB).float(), b["labels"][:, 1:].reshape(-1),
                                             ignore_index=-100, reduction="sum")


def gradients(model, loss_fn, b):
    model.zero_grad()
    loss_fn(model, b).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def head_inputs(model, b):
    """The shapes the LM head is called on during target_loss."""
    shapes = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            target_loss(model, b)
    finally:
        handle.remove()
    return shapes


@pytest.mark.parametrize("model_type,fast", [("llama", True), ("gpt2", True), ("opt", False), ("gemma2", False)])
def test_target_loss_equals_cross_entropy_of_the_full_logits(model_type, fast):
    model, b = tiny(model_type), batch()
    with torch.no_grad():
        expected = loss_from_full_logits(model, b)
        got = target_loss(model, b)
    assert got.shape == () and got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=0, abs=1e-5)  # a sum of ~32: float32 rounding is ~4e-6
    assert (model_type in FAST_LOSS_TYPES) == fast
    n_targets = int((b["labels"][:, 1:] != -100).sum())
    assert n_targets == 7
    # fast path: the head sees only the 7 target positions; otherwise it runs over the whole padded batch
    assert head_inputs(model, b) == ([(n_targets, 32)] if fast else [(2, 9, 32)])


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_target_loss_gradient_equals_the_full_logits_gradient(model_type):
    model, b = tiny(model_type), batch()
    expected = gradients(model, loss_from_full_logits, b)
    got = gradients(model, target_loss, b)
    assert got.keys() == expected.keys() and len(got) > 10
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_loss_is_a_sum_over_target_tokens_not_a_mean():
    """One more labelled token adds its own term: the trainer divides by the token count itself."""
    model, b = tiny("llama"), batch()
    more = {**b, "labels": b["labels"].clone()}
    more["labels"][1, 2] = b["input_ids"][1, 2]
    with torch.no_grad():
        base, bigger = target_loss(model, b), target_loss(model, more)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    term = torch.nn.functional.cross_entropy(logits[1, 1], b["input_ids"][1, 2])
    assert bigger.item() == pytest.approx(base.item() + term.item(), rel=1e-5)
