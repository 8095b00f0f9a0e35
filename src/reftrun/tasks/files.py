"""Reading task data files, with one-line errors that name the file and how to fetch it."""
import json
from pathlib import Path


def read_json_records(path, required=("instruction", "answer")) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py "
                                f"--data-dir {path.parents[1]}")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"data file {path} is not valid JSON ({e.msg} at line {e.lineno})")
    if not isinstance(records, list) or not records:
        raise ValueError(f"data file {path} holds no records; expected a non-empty JSON list")
    for i, rec in enumerate(records):
        missing = [k for k in required if k not in rec]
        if missing:
            raise ValueError(f"data file {path}: record {i} lacks field(s) {', '.join(missing)}; required: {', '.join(required)}")
    return records


def read_jsonl(path: Path, required: tuple[str, ...], fetch: str) -> list[dict]:
    """A JSON-lines file whose rows all hold `required`; `fetch` names the prepare_data.py target."""
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py {fetch}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"data file {path}: record {i} lacks field(s) {', '.join(missing)}; required: {', '.join(required)}")
    if not rows:
        raise ValueError(f"data file {path} holds no records")
    return rows
