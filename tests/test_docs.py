"""Every section the code cites in the reference notes (`<name>.md §N`) exists as a heading in the copy shipped
under docs/reference/, so a citation can always be followed inside the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / "docs" / "reference"
NOTES = ("paper_results", "pyreft_behaviour", "offline_assets")
SCANNED = ("src", "conf", "scripts", "tests")
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".sh", ".json", ".txt"}

NUMBER = r"\d+[a-z]?(?:\.\d+)*"
# "name.md §3.5", then any "and §3.2", ", §4" or a range "–3.3" that continues the same citation
CITATION = re.compile(rf"\b({'|'.join(NOTES)})\.md\s*§({NUMBER}(?:\s*(?:,|and|&|/)\s*§{NUMBER}|[–-]{NUMBER})*)")
HEADING = re.compile(rf"^#{{1,6}}\s+({NUMBER})\.?\s", re.M)


def expand(text: str) -> list[str]:
    """'3.5 and §3.2' → ['3.5', '3.2']; '3.2–3.3' → ['3.2', '3.3']."""
    numbers = []
    for part in re.split(r"\s*(?:,|and|&|/)\s*§", text):
        ends = re.split(r"[–-]", part)
        if len(ends) == 2 and ends[0].rsplit(".", 1)[0] == ends[1].rsplit(".", 1)[0] and "." in ends[0]:
            prefix, lo, hi = ends[0].rsplit(".", 1)[0], int(ends[0].rsplit(".", 1)[1]), int(ends[1].rsplit(".", 1)[1])
            numbers += [f"{prefix}.{i}" for i in range(lo, hi + 1)]
        else:
            numbers += ends
    return numbers


def citations() -> dict[tuple[str, str], list[str]]:
    """(note, section) → the files citing it."""
    found: dict[tuple[str, str], list[str]] = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or "__pycache__" in path.parts:
                continue
            text = path.read_text(errors="replace").replace("\\u00a7", "§")  # JSON may escape the sign
            for m in CITATION.finditer(text):
                for section in expand(m.group(2)):
                    found.setdefault((m.group(1), section), []).append(str(path.relative_to(ROOT)))
    return found


def headings(note: str) -> set[str]:
    return set(HEADING.findall((REFERENCE / f"{note}.md").read_text()))


def test_expand_reads_lists_and_ranges():
    assert expand("3.5 and §3.2") == ["3.5", "3.2"]
    assert expand("3.2–3.3") == ["3.2", "3.3"]
    assert expand("6.2") == ["6.2"] and expand("1b") == ["1b"]
    assert CITATION.search("see docs/reference/pyreft_behaviour.md §1.3.").group(2) == "1.3"


def test_every_note_is_shipped_and_says_what_it_summarises():
    for note in NOTES:
        first = (REFERENCE / f"{note}.md").read_text().splitlines()[0]
        assert "reftrun" in first and ("2404.03592" in first or "pyreft" in first or "registries" in first), note


def test_the_code_cites_all_three_notes():
    """Guards the scan itself: if the pattern stopped matching, the next test would pass on nothing."""
    cited = citations()
    assert {note for note, _ in cited} == set(NOTES)
    assert sum(len(files) for files in cited.values()) >= 100


@pytest.mark.parametrize("note", NOTES)
def test_every_cited_section_is_a_heading_of_the_shipped_note(note):
    have = headings(note)
    missing = {section: files[:3] for (n, section), files in sorted(citations().items()) if n == note and section not in have}
    assert not missing, f"docs/reference/{note}.md lacks headings cited by the code: {missing}"
