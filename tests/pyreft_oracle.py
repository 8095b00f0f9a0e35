"""Runs inside the isolated pyreft environment (transformers 4.45.1): pyreft's own forward on given weights.

    <pyreft-env>/bin/python tests/pyreft_oracle.py <in.pt> <out.pt>

Reads a model folder, token ids with the sink token already prepended (as pyreft's datasets do), prompt
lengths, the position spec and LoReFT weights; computes the intervention locations with pyreft's own
get_intervention_locations (pad_mode "first", then +1 for the sink) and writes the logits."""
import sys

import pyreft
import torch
from pyreft.dataset import get_intervention_locations
from transformers import AutoModelForCausalLM

inp = torch.load(sys.argv[1], weights_only=True)
model = AutoModelForCausalLM.from_pretrained(inp["model_dir"], torch_dtype=torch.float32).eval()
first, last = pyreft.dataset.parse_positions(inp["positions"])
untied = not inp["share_weights"] and first and last
layers = inp["layers"] * (2 if untied else 1)  # the paper script doubles the layer list for untied f+l
config = pyreft.ReftConfig(representations=[{
    "layer": layer, "component": "block_output", "low_rank_dimension": inp["rank"],
    "intervention": pyreft.LoreftIntervention(embed_dim=inp["hidden_size"], low_rank_dimension=inp["rank"],
                                              dtype=torch.float32)} for layer in layers])
reft_model = pyreft.get_reft_model(model, config, set_device=False)
for key, state in zip(reft_model.sorted_keys, inp["states"]):
    reft_model.interventions[key].load_state_dict(state)
    reft_model.interventions[key].eval()
per_example = [get_intervention_locations(last_position=n, positions=inp["positions"], num_interventions=len(layers),
                                          share_weights=inp["share_weights"], pad_mode="first")
               for n in inp["prompt_lengths"]]
locations = [[[p + 1 for p in per_example[b][i]] for b in range(len(per_example))] for i in range(len(layers))]
with torch.no_grad():
    _, out = reft_model({"input_ids": inp["input_ids"], "attention_mask": inp["attention_mask"]},
                        unit_locations={"sources->base": (None, locations)})
torch.save({"logits": out.logits, "locations": locations}, sys.argv[2])
