"""GPU checks (`pytest -m gpu`; skipped without CUDA): a bf16 model with fp32 interventions trains on the GPU,
and batched generation on the GPU matches the step-by-step loop. Needs only torch and transformers."""
import pytest
import torch

from conftest import tiny_llama
from reftrun.loss import target_loss
from reftrun.positions import PositionSpec, batch_positions
from reftrun.reft import Reft, ReftSpec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_model_fp32_interventions_train_on_cuda():
    model = tiny_llama().to("cuda", torch.bfloat16).requires_grad_(False)
    reft = Reft(ReftSpec("loreft", 4, [0, 1], "f2+l2", True, 64)).cuda().train()
    opt = torch.optim.AdamW(reft.parameters(), lr=1e-2)
    ids = torch.randint(0, 256, (4, 16), device="cuda")
    labels = ids.clone()
    labels[:, :12] = -100
    positions, mask = batch_positions(PositionSpec.parse("f2+l2"), True, [12] * 4, [0] * 4)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    losses = []
    for _ in range(20):
        with reft.attached(model, positions.cuda(), mask.cuda()):
            loss = target_loss(model, batch) / int((labels[:, 1:] != -100).sum())
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert all(p.dtype == torch.float32 for p in reft.parameters())
    assert losses[-1] < losses[0]


def test_cuda_generation_matches_the_manual_loop():
    from test_attach import make_reft, manual_greedy
    model = tiny_llama(seed=1).cuda()
    ids = torch.tensor([[258, 258, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7]], device="cuda")
    attn = (ids != 258).long()
    positions, mask = batch_positions(PositionSpec.parse("f2+l2"), True, [5, 7], [2, 0])
    reft = make_reft([0, 1]).cuda()
    out = reft.generate(model, ids, attn, positions.cuda(), mask.cuda(), max_new_tokens=5, do_sample=False,
                        pad_token_id=258, eos_token_id=None, min_new_tokens=5)
    assert torch.equal(out, manual_greedy(model, reft, ids, attn, positions.cuda(), mask.cuda(), 5))
