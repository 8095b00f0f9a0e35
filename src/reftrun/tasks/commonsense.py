"""Commonsense reasoning in the LLM-Adapters format (paper Table 1).

Prompt: the record's instruction plus one newline, no template (docs/reference/pyreft_behaviour.md §3.3).
Target: "the correct answer is <label>". Score: exact match of the whole text after the first
"the correct answer is " against the gold label, both stripped (§3.6, stricter than LLM-Adapters).
"""
import re

from . import Example, Task
from .files import read_json_records

TRIGGER = "the correct answer is "
EVAL_SETS = ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa")


FORMAT = re.compile(r"Answer format: (\S+)\s*$")
OPTION = re.compile(r"(?:Solution|Answer|Option|Ending)(\d+): (.*?)(?=\s*(?:Solution|Answer|Option|Ending)\d+: |\n\nAnswer format|$)", re.S)


def format_prompt(instruction: str) -> str:
    return f"{instruction}\n"


def extract_answer(generation: str) -> str:
    """Everything after the first trigger, stripped; "" when the trigger is absent."""
    at = generation.find(TRIGGER)
    return generation[at + len(TRIGGER):].strip() if at >= 0 else ""


class Commonsense(Task):
    name = "commonsense"
    eval_sets = EVAL_SETS

    def format(self, record: dict, source: str, index: int = 0) -> Example:
        return Example(id=f"{source}-{index}", prompt=format_prompt(record["instruction"]),
                       target=TRIGGER + record["answer"], gold=record["answer"])

    def train_examples(self) -> list[Example]:
        records = read_json_records(self.data_dir / "commonsense_170k" / "train.json")
        return [self.format(r, "commonsense_170k", i) for i, r in enumerate(records)]

    def eval_examples(self, eval_set: str) -> list[Example]:
        records = read_json_records(self.data_dir / eval_set / "test.json")
        return [self.format(r, eval_set, i) for i, r in enumerate(records)]

    filter = "strict"  # the whole text after the first trigger

    def extract(self, generation: str, gold: str = "") -> str:
        return extract_answer(generation)

    def baselines(self, eval_set: str, examples: list[Example]) -> dict:
        """Chance from the prompt's answer format; for multiple choice, the known length shortcut."""
        labels = FORMAT.search(examples[0].prompt)
        out = {"chance": 1 / len(labels.group(1).split("/"))} if labels else {}
        hits = []
        for ex in examples:
            options = OPTION.findall(ex.prompt)
            if len(options) < 2:
                return out
            longest = max(options, key=lambda o: len(o[1]))[0]
            hits.append(re.sub(r"\D", "", ex.gold) == longest)
        return {**out, "cue": {"rule": "pick the longest option", "accuracy": sum(hits) / len(hits)}}

    def score(self, extracted: str, gold: str) -> bool:
        return extracted.strip() == gold.strip()
