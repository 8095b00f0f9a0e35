"""Runs inside the isolated pyreft environment: each pyreft intervention class on given weights and inputs.

    <pyreft-env>/bin/python tests/pyreft_interventions_oracle.py <in.pt> <out.pt>

For every case: build the named pyreft class (float32), copy the weights in under pyreft's own names (the
orthonormal matrix by assignment, which re-centres torch's parametrisation on it), seed torch and run forward
in train or eval mode; the outputs are written in the same order."""
import sys

import pyreft
import torch

inp = torch.load(sys.argv[1], weights_only=True)
outputs = []
for case in inp["cases"]:
    cls = getattr(pyreft, case["cls"])
    iv = cls(embed_dim=case["d"], low_rank_dimension=case["r"], dtype=torch.float32, dropout=case["dropout"],
             add_bias=False)
    with torch.no_grad():
        for name, value in case["state"].items():
            if name == "rotate_layer":
                iv.rotate_layer.weight = value
                assert torch.allclose(iv.rotate_layer.weight, value, atol=1e-6)
            else:
                module, _, attr = name.rpartition(".")
                target = getattr(iv, module) if module else iv
                getattr(target, attr).copy_(value)
    iv.train(case["train"])
    torch.manual_seed(case["seed"])
    with torch.no_grad():
        outputs.append(iv(case["h"]))
torch.save({"outputs": outputs}, sys.argv[2])
