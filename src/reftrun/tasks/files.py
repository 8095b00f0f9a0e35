"""Reading task data files, with one-line errors that name the file and how to fetch it.

Files are parsed once per process (keyed by path and modification time): tasks ask for their train and eval
splits several times (checks before the model loads, each evaluation, each GLUE epoch)."""
import json
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=32)
def _parse(path: str, mtime: float, lines: bool) -> tuple:
    text = Path(path).read_text()
    if lines:
        return tuple(json.loads(line) for line in text.splitlines() if line.strip())
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"data file {path} holds a JSON {type(data).__name__}; expected a JSON list of records")
    return tuple(data)


def load_records(path: Path, lines: bool = True) -> list[dict]:
    """The file's records (a JSON list, or JSON lines); the dicts are shared, so callers must not modify them."""
    return list(_parse(str(path), path.stat().st_mtime, lines))


def _require(path: Path, records: list[dict], required: tuple[str, ...], expected: str, text: bool = False) -> list[dict]:
    """Every record holds `required` (as text, with `text`)."""
    if not records:
        raise ValueError(f"data file {path} holds no records; expected {expected}")
    for i, record in enumerate(records):
        missing = [k for k in required if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"data file {path}: record {i} lacks field(s) {', '.join(missing)}; required: {', '.join(required)}")
        wrong = [k for k in required if text and not isinstance(record[k], str)]
        if wrong:
            raise ValueError(f"data file {path}: record {i} field {wrong[0]} is {record[wrong[0]]!r} "
                             f"({type(record[wrong[0]]).__name__}); expected text, e.g. \"{record[wrong[0]]}\"")
    return records


# The prepare_data.py subcommand that writes each LLM-Adapters folder (the rest are commonsense test sets).
FETCH = {"math_10k": "arithmetic", "AQuA": "arithmetic", "gsm8k": "arithmetic", "mawps": "arithmetic",
         "SVAMP": "arithmetic", "AddSub": "arithmetic", "MultiArith": "arithmetic", "SingleEq": "arithmetic",
         "alpaca_data_cleaned": "alpaca", "alpaca_eval": "alpaca", "ultrafeedback": "ultrafeedback"}


def read_json_records(path: Path, required=("instruction", "answer")) -> list[dict]:
    """A JSON list in the LLM-Adapters layout whose records all hold `required` as text."""
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py "
                                f"{FETCH.get(path.parent.name, 'commonsense')} --data-dir {path.parents[1]}")
    try:
        records = load_records(path, lines=False)
    except json.JSONDecodeError as e:
        raise ValueError(f"data file {path} is not valid JSON ({e.msg} at line {e.lineno})")
    return _require(path, records, required, "a non-empty JSON list", text=True)


def read_jsonl(path: Path, required: tuple[str, ...], fetch: str) -> list[dict]:
    """A JSON-lines file whose rows all hold `required`; `fetch` names the prepare_data.py target."""
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py {fetch}")
    try:
        return _require(path, load_records(path), required, "one JSON record per line")
    except json.JSONDecodeError as e:
        raise ValueError(f"data file {path} is not valid JSON lines ({e.msg} at line {e.lineno})")
