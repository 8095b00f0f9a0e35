"""Fetch the paper's data into the layout reftrun's tasks read (needs the network; run once).

    python scripts/prepare_data.py [all|commonsense|arithmetic|gsm8k|alpaca|ultrafeedback|glue] [--data-dir data]

Sources (docs/reference/pyreft_behaviour.md §3.2): LLM-Adapters' files (the fork pyreft's load_datasets.sh clones) for
commonsense_170k, math_10k, alpaca_data_cleaned and the commonsense/arithmetic test sets; the hub's
openai/gsm8k (config main), tatsu-lab/alpaca_eval and nyu-mll/glue through `datasets`; UltraFeedback from
frankaging/ultrafeedback-dataset. Files already present are kept.
"""
import argparse
import json
import sys
import urllib.request
from pathlib import Path

LLM_ADAPTERS = "https://raw.githubusercontent.com/aryamanarora/LLM-Adapters/main"
ULTRAFEEDBACK = "https://media.githubusercontent.com/media/frankaging/ultrafeedback-dataset/main/train.json"
COMMONSENSE = ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa")
ARITHMETIC = ("AQuA", "gsm8k", "mawps", "SVAMP", "AddSub", "MultiArith", "SingleEq")
GLUE = ("cola", "sst2", "mnli", "mrpc", "qnli", "qqp", "rte", "stsb")


def download(url: str, path: Path) -> None:
    if path.exists():
        return
    print(f"fetching {url} → {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
        f.write(response.read())
    json.loads(tmp.read_text())  # a truncated or HTML error page fails here, not in training
    tmp.replace(path)


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(r)) + "\n" for r in rows))


def commonsense(data: Path) -> None:
    download(f"{LLM_ADAPTERS}/ft-training_set/commonsense_170k.json", data / "commonsense_170k" / "train.json")
    for name in COMMONSENSE:
        download(f"{LLM_ADAPTERS}/dataset/{name}/test.json", data / name / "test.json")


def arithmetic(data: Path) -> None:
    download(f"{LLM_ADAPTERS}/ft-training_set/math_10k.json", data / "math_10k" / "train.json")
    for name in ARITHMETIC:
        download(f"{LLM_ADAPTERS}/dataset/{name}/test.json", data / name / "test.json")


def gsm8k(data: Path) -> None:
    from datasets import load_dataset
    for split in ("train", "test"):
        if not (data / "gsm8k_main" / f"{split}.jsonl").exists():
            write_jsonl(data / "gsm8k_main" / f"{split}.jsonl", load_dataset("openai/gsm8k", "main", split=split))


def alpaca(data: Path) -> None:
    download(f"{LLM_ADAPTERS}/ft-training_set/alpaca_data_cleaned.json", data / "alpaca_data_cleaned" / "train.json")
    alpaca_eval(data)


def ultrafeedback(data: Path) -> None:
    download(ULTRAFEEDBACK, data / "ultrafeedback" / "train.json")
    alpaca_eval(data)


def alpaca_eval(data: Path) -> None:
    from datasets import load_dataset
    path = data / "alpaca_eval" / "alpaca_eval.json"
    if not path.exists():
        rows = load_dataset("tatsu-lab/alpaca_eval", "alpaca_eval", split="eval", trust_remote_code=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([dict(r) for r in rows], indent=1))


def glue(data: Path) -> None:
    from datasets import load_dataset
    for task in GLUE:
        splits = {"train": "train", "validation": "validation_matched" if task == "mnli" else "validation"}
        for ours, theirs in splits.items():
            path = data / "glue" / task / f"{ours}.jsonl"
            if not path.exists():
                write_jsonl(path, load_dataset("nyu-mll/glue", task, split=theirs))


SOURCES = {"commonsense": commonsense, "arithmetic": arithmetic, "gsm8k": gsm8k, "alpaca": alpaca,
           "ultrafeedback": ultrafeedback, "glue": glue}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all", choices=["all", *SOURCES])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args()
    for name in SOURCES if args.what == "all" else [args.what]:
        try:
            SOURCES[name](args.data_dir)
        except (OSError, ConnectionError) as e:
            sys.exit(f"prepare_data: cannot fetch {name} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                     "this needs the network")
    print(f"data ready under {args.data_dir}")


if __name__ == "__main__":
    main()
