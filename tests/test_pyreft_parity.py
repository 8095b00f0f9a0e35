"""compat=pyreft matches pyreft itself: the same logits from the same LoReFT weights, with pyreft computing its
own positions (sink token, ⌊n/2⌋ clipping, prefix/suffix groups). Runs pyreft in its isolated environment
(transformers 4.45.1; `python scripts/bench.py --setup-pyreft` builds it) and skips cleanly where it is absent."""
import os
import subprocess

import pytest
import torch

from conftest import byte_tokenizer, tiny_llama
from reftrun.data import Collator
from reftrun.models import cache_dir
from reftrun.reft import Reft, ReftSpec

PYREFT = os.environ.get("REFTRUN_PYREFT_PYTHON", str(cache_dir() / "pyreft-env" / "bin" / "python"))
pytestmark = pytest.mark.skipif(not os.path.exists(PYREFT), reason=f"no pyreft environment at {PYREFT}")


@pytest.mark.parametrize("share_weights", [True, False], ids=["tied", "untied"])
def test_forward_matches_pyreft(tmp_path, share_weights):
    model_dir = tmp_path / "model"
    model = tiny_llama(layers=3)
    model.save_pretrained(model_dir)
    tok = byte_tokenizer()
    torch.manual_seed(0)
    spec = ReftSpec("loreft", 4, [0, 2], "f2+l2", share_weights, 64, pyreft_clipping=True, sink_token=True,
                    dropout_whole_output=True)
    reft = Reft(spec).eval()
    with torch.no_grad():
        for p in reft.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    prompts = [tok("Is the sun a star?\n")["input_ids"], tok("No\n")["input_ids"]]  # 3 tokens: clipped
    rows = [{"input_ids": p + tok("the correct answer is true")["input_ids"], "labels": [-100] * len(p) + [1],
             "prompt_length": len(p)} for p in prompts]
    for r in rows:
        r["labels"] += [1] * (len(r["input_ids"]) - len(r["labels"]))
    batch = Collator(tok.pad_token_id, spec).train(rows)
    with torch.no_grad(), reft.attached(model, batch["positions"], batch["position_mask"]):
        ours = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    groups = reft.groups
    states = [{"weight": reft.interventions[reft.key(l, g)].proj.weight.detach(),
               "bias": reft.interventions[reft.key(l, g)].proj.bias.detach(),
               "rotate_layer": reft.interventions[reft.key(l, g)].rotation().detach()} for g in groups for l in spec.layers]
    torch.save({"model_dir": str(model_dir), "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "prompt_lengths": [len(p) for p in prompts], "positions": str(spec.positions), "share_weights": share_weights,
                "layers": spec.layers, "rank": spec.rank, "hidden_size": spec.hidden_size, "states": states},
               tmp_path / "in.pt")
    oracle = os.path.join(os.path.dirname(__file__), "pyreft_oracle.py")
    proc = subprocess.run([PYREFT, oracle, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = torch.load(tmp_path / "out.pt", weights_only=True)["logits"]
    real = batch["attention_mask"].bool()  # the sink's own logits are not compared: pyreft edits it, it is masked
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-4, atol=1e-4)
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(plain[real], theirs[real], atol=1e-3)  # the interventions do change the logits


# reftrun name → (pyreft class, {reftrun parameter: pyreft parameter}); "rotation" is the d×r matrix Rᵀ
PYREFT_CLASSES = {
    "loreft": ("LoreftIntervention", {"proj.weight": "learned_source.weight", "proj.bias": "learned_source.bias",
                                      "rotation": "rotate_layer"}),
    "direft": ("NodireftIntervention", {"proj.weight": "learned_source.weight", "proj.bias": "learned_source.bias",
                                        "up.weight": "proj_layer.weight"}),
    "noreft": ("NoreftIntervention", {"proj.weight": "learned_source.weight", "proj.bias": "learned_source.bias",
                                      "up.weight": "proj_layer.weight"}),
    "consreft": ("ConsreftIntervention", {"bias": "learned_source", "rotation": "rotate_layer"}),
    "lobireft": ("LobireftIntervention", {"bias": "learned_source", "rotation": "rotate_layer"}),
    "loreft_nodiff": ("DireftIntervention", {"proj.weight": "learned_source.weight", "proj.bias": "learned_source.bias",
                                             "rotation": "rotate_layer"}),
}


def test_every_intervention_and_dropout_placement_match_pyreft(tmp_path):
    """Each of pyreft's six classes on the same weights: eval mode, and train mode with dropout 0.3 under the same
    seed (compat=pyreft drops out h+Δ as pyreft does; the paper placement, on Δ only, must differ)."""
    from reftrun.interventions import INTERVENTIONS, build_intervention
    assert set(PYREFT_CLASSES) == set(INTERVENTIONS)
    d, r = 16, 4
    h = torch.randn(3, 5, d, generator=torch.Generator().manual_seed(1))
    cases, ours, paper = [], [], []
    for kind, (cls, names) in PYREFT_CLASSES.items():
        torch.manual_seed(0)
        pyreft_like = build_intervention(kind, d, r, dropout=0.3, dropout_whole_output=True)
        paper_like = build_intervention(kind, d, r, dropout=0.3)
        with torch.no_grad():
            for p in pyreft_like.parameters():
                p.add_(torch.randn_like(p) * 0.3)  # biases and all away from their init
        paper_like.load_state_dict(pyreft_like.state_dict())
        params = dict(pyreft_like.named_parameters())
        state = {theirs: (pyreft_like.rotation() if mine == "rotation" else params[mine]).detach().clone()
                 for mine, theirs in names.items()}
        for train in (False, True):
            cases.append({"cls": cls, "d": d, "r": r, "dropout": 0.3, "state": state, "h": h, "seed": 7, "train": train})
            for module, out in ((pyreft_like, ours), (paper_like, paper)):
                module.train(train)
                torch.manual_seed(7)
                with torch.no_grad():
                    out.append(module(h))
    torch.save({"cases": cases}, tmp_path / "in.pt")
    oracle = os.path.join(os.path.dirname(__file__), "pyreft_interventions_oracle.py")
    proc = subprocess.run([PYREFT, oracle, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = torch.load(tmp_path / "out.pt", weights_only=True)["outputs"]
    for case, mine, paper_out, their in zip(cases, ours, paper, theirs):
        what = f"{case['cls']} train={case['train']}"
        torch.testing.assert_close(mine, their, rtol=1e-5, atol=1e-5, msg=what)
        if case["train"] and case["cls"] != "ConsreftIntervention":  # pyreft's ConsReFT has no dropout
            assert not torch.allclose(paper_out, their, atol=1e-4), what  # dropout on Δ only is not pyreft's
