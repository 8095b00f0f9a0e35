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
    return tuple(data) if isinstance(data, list) else (data,) if data else ()


def load_records(path: Path, lines: bool = True) -> list[dict]:
    """The file's records (a JSON list, or JSON lines); the dicts are shared, so callers must not modify them."""
    return list(_parse(str(path), path.stat().st_mtime, lines))


def _require(path: Path, records: list[dict], required: tuple[str, ...], expected: str) -> list[dict]:
    if not records:
        raise ValueError(f"data file {path} holds no records; expected {expected}")
    for i, record in enumerate(records):
        missing = [k for k in required if not isinstance(record, dict) or k not in record]
        if missing:
            raise ValueError(f"data file {path}: record {i} lacks field(s) {', '.join(missing)}; required: {', '.join(required)}")
    return records


def read_json_records(path: Path, required=("instruction", "answer")) -> list[dict]:
    """A JSON list in the LLM-Adapters layout whose records all hold `required`."""
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py "
                                f"--data-dir {path.parents[1]}")
    try:
        records = load_records(path, lines=False)
    except json.JSONDecodeError as e:
        raise ValueError(f"data file {path} is not valid JSON ({e.msg} at line {e.lineno})")
    return _require(path, records, required, "a non-empty JSON list")


def read_jsonl(path: Path, required: tuple[str, ...], fetch: str) -> list[dict]:
    """A JSON-lines file whose rows all hold `required`; `fetch` names the prepare_data.py target."""
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found; fetch it with: python scripts/prepare_data.py {fetch}")
    try:
        return _require(path, load_records(path), required, "one JSON record per line")
    except json.JSONDecodeError as e:
        raise ValueError(f"data file {path} is not valid JSON lines ({e.msg} at line {e.lineno})")
