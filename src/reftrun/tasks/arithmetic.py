"""Arithmetic reasoning (paper Table 2): train on Math10K, score AQuA, GSM8K, MAWPS, SVAMP (and optionally
AddSub, MultiArith, SingleEq, which leak into MAWPS' training data: paper App. C.2).

Prompt: the Alpaca no-input template around the question. Target: Math10K's chain of thought. Score: the last
number of the generation within 0.001 of the gold number; AQuA: the first capital A–E anywhere in the generation
(docs/reference/pyreft_behaviour.md §3.6, the LLM-Adapters rule).
"""
import re

from . import Example, Task
from .files import read_json_records
from .templates import alpaca_prompt

REPORTED = ("AQuA", "gsm8k", "mawps", "SVAMP")          # the four sets in the paper's Table 2
OPTIONAL = ("AddSub", "MultiArith", "SingleEq")
NUMBER = re.compile(r"-?\d+\.?\d*")


def last_number(text: str) -> float:
    """The last number in the text, commas removed; +inf when there is none (never equals a gold value)."""
    numbers = NUMBER.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else float("inf")


def number_text(value: float) -> str:
    """A scored number as text ("" for none): 18.0 → "18", 2.5 → "2.5"."""
    if value == float("inf"):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def first_choice_letter(text: str) -> str:
    """The first capital A–E anywhere (crude, as in LLM-Adapters and pyreft); "" when there is none."""
    found = re.search(r"[ABCDE]", text)
    return found.group(0) if found else ""


def is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


class Arithmetic(Task):
    name = "arithmetic"
    eval_sets = REPORTED + OPTIONAL
    default_eval_sets = REPORTED

    def format(self, record: dict, source: str, index: int = 0) -> Example:
        return Example(id=f"{source}-{index}", prompt=alpaca_prompt(record["instruction"]),
                       target=record.get("output", ""), gold=str(record["answer"]))

    def train_examples(self) -> list[Example]:
        records = read_json_records(self.data_dir / "math_10k" / "train.json", ("instruction", "output", "answer"))
        return [self.format(r, "math_10k", i) for i, r in enumerate(records)]

    def eval_examples(self, eval_set: str) -> list[Example]:
        records = read_json_records(self.data_dir / eval_set / "test.json")
        return [self.format(r, eval_set, i) for i, r in enumerate(records)]

    filter = "flexible"  # the last number; for a letter gold, the first capital A–E

    def extract(self, generation: str, gold: str = "") -> str:
        if gold and not is_number(gold):
            return first_choice_letter(generation)
        return number_text(last_number(generation))

    def score(self, extracted: str, gold: str) -> bool:
        if is_number(gold):
            return is_number(extracted) and abs(float(gold) - float(extracted)) <= 1e-3
        return extracted == gold.strip()
