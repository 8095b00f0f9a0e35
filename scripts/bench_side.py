"""One side of scripts/bench.py: train and evaluate the prepared workload with reftrun or with pyreft.

    python scripts/bench_side.py {reftrun|pyreft} <workload.pt> <result.json>

Runs in the side's own environment (pyreft needs transformers 4.45.1), reads token ids, positions and
initial intervention weights from the workload file, and writes timings, losses and generations as JSON.
Both sides compute the same thing: same model, batches, positions, initial weights, optimizer and decoding.
"""
import json
import resource
import sys
import time

import torch


def load_model(w, dtype=torch.float32):
    import transformers
    # the model folder was written by transformers 5, whose rope_parameters transformers 4 does not read
    old = int(transformers.__version__.split(".")[0]) < 5
    kw = {"rope_theta": w["rope_theta"], "torch_dtype": dtype} if old else {"dtype": dtype}
    model = transformers.AutoModelForCausalLM.from_pretrained(w["model_dir"], **kw)
    model.requires_grad_(False)
    return model.eval()


def reftrun_side(w, dtype=torch.float32):
    from reftrun.reft import Reft, ReftSpec
    from reftrun.loss import target_loss
    model = load_model(w, dtype)  # interventions stay float32 either way
    reft = Reft(ReftSpec(**w["spec"]))
    reft.load_state_dict(w["reftrun_state"])
    opt = torch.optim.AdamW(reft.parameters(), lr=w["lr"], weight_decay=0.0)

    def train_step(batch):
        with reft.attached(model, batch["positions"], batch["position_mask"]):
            loss_sum = target_loss(model, batch)
        n = int((batch["labels"][:, 1:] != -100).sum())
        (loss_sum / n).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss_sum) / n

    def generate(batch):
        return reft.generate(model, batch["input_ids"], batch["attention_mask"], batch["positions"],
                             batch["position_mask"], **w["decoding"])
    return run(w, "reftrun", train_step, generate, reft.train, reft.eval)


def reftrun_bf16_side(w):
    """reftrun's CPU default for SmolLM2: the frozen model in bfloat16 (not the same computation: see accuracy)."""
    return reftrun_side(w, torch.bfloat16)


def pyreft_side(w):
    import pyreft
    model = load_model(w)
    d, r = w["spec"]["hidden_size"], w["spec"]["rank"]
    config = pyreft.ReftConfig(representations=[{
        "layer": layer, "component": "block_output", "low_rank_dimension": r,
        "intervention": pyreft.LoreftIntervention(embed_dim=d, low_rank_dimension=r, dtype=torch.float32)}
        for layer in w["spec"]["layers"]])
    reft_model = pyreft.get_reft_model(model, config, set_device=False)
    for key, state in zip(reft_model.sorted_keys, w["pyreft_states"]):  # the same initial weights as reftrun's
        reft_model.interventions[key].load_state_dict(state)
    params = [p for iv in reft_model.interventions.values() for p in iv.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=w["lr"], weight_decay=0.0)
    n_int = len(w["spec"]["layers"])

    def locations(batch):  # [interventions][batch][positions], the same absolute positions for every layer
        return {"sources->base": (None, [batch["positions"][:, 0].tolist()] * n_int)}

    def train_step(batch):
        _, out = reft_model({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                            unit_locations=locations(batch), labels=batch["labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out.loss)

    def generate(batch):
        _, out = reft_model.generate({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
                                     unit_locations=locations(batch), intervene_on_prompt=True, **w["decoding"])
        return out

    def mode(train: bool):
        for iv in reft_model.interventions.values():
            iv.train(train)
    return run(w, "pyreft", train_step, generate, lambda: mode(True), lambda: mode(False))


def run(w, side, train_step, generate, train_mode, eval_mode) -> dict:
    torch.set_num_threads(w["threads"])
    train_mode()
    check_loss = train_step(w["check_batch"])  # identical on both sides: the same computation, checked
    losses, times = [], []
    for batch in w["train_batches"][side]:
        start = time.perf_counter()
        losses.append(train_step(batch))
        times.append(time.perf_counter() - start)
    eval_mode()
    generations, seconds = {}, {}
    for mode, key in (("same", "same"), ("own", side)):
        generations[mode], start = [], time.perf_counter()
        with torch.no_grad():
            for batch in w["eval_batches"][key]:
                out = generate(batch)
                generations[mode] += [row[batch["input_ids"].shape[1]:].tolist() for row in out]
        seconds[mode] = time.perf_counter() - start
    return {"check_loss": check_loss, "losses": losses, "step_seconds": times, "eval_seconds": seconds,
            "generations": generations, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    side, workload, out = sys.argv[1:4]
    w = torch.load(workload, weights_only=True)
    result = {"reftrun": reftrun_side, "reftrun-bf16": reftrun_bf16_side, "pyreft": pyreft_side}[side](w)
    with open(out, "w") as f:
        json.dump(result, f)
