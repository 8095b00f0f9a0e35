"""Commonsense reasoning in the LLM-Adapters format (paper Table 1).

Prompt: the record's instruction plus one newline, no template (pyreft_behaviour.md §3.3).
Target: "the correct answer is <label>". Score: exact match of the whole text after the first
"the correct answer is " against the gold label, both stripped (§3.6, stricter than LLM-Adapters).
"""
from . import Example, Task
from .files import read_json_records

TRIGGER = "the correct answer is "
EVAL_SETS = ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa")


def format_prompt(instruction: str) -> str:
    return f"{instruction}\n"


def extract_answer(generation: str) -> str:
    """Everything after the first trigger, stripped; "" when the trigger is absent."""
    at = generation.find(TRIGGER)
    return generation[at + len(TRIGGER):].strip() if at >= 0 else ""


class Commonsense(Task):
    name = "commonsense"
    eval_sets = EVAL_SETS
    max_new_tokens = 32

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

    def score(self, extracted: str, gold: str) -> bool:
        return extracted.strip() == gold.strip()
