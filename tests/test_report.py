"""simulations/README.md: written by code from figures/*.json, never by hand (no training here)."""

import difflib
import json
import re
import shutil
from pathlib import Path

import pytest

from simulations import runner
from simulations.report import render

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
DOC = ROOT / "simulations" / "README.md"


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "figures"
    out.mkdir()
    for p in FIGURES.glob("*.json"):
        shutil.copy(p, out / p.name)
    return out


def _edit(folder: Path, name: str, change) -> None:
    path = folder / f"{name}.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _changed_words(old: str, new: str) -> tuple[list[str], list[str]]:
    """The words removed from ``old`` and added in ``new`` (line wrapping does not count)."""
    a, b = old.split(), new.split()
    removed, added = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def test_committed_document_is_the_rendering_of_the_committed_records(monkeypatch):
    monkeypatch.chdir(ROOT)  # the document names its commands relative to where they run: the repository root
    expected = render(Path("figures"), doc_path=Path("simulations/README.md"))
    assert DOC.read_text() == expected, (
        "simulations/README.md is not the rendering of figures/*.json: regenerate it with "
        "`python -m simulations report --profile full --doc simulations/README.md` (never edit it by hand)")
    assert "`python -m simulations report --profile full --doc simulations/README.md`" in expected


def test_numbers_come_from_the_records(tmp_path):
    folder = _copy(tmp_path)
    doc = tmp_path / "README.md"
    before = render(folder, doc_path=doc)

    def rcl(record):  # NUC-like, 10% sampling, Dice at t*
        cell = record["results"]["nuclei"]["by_ratio"]["0.1"]["t_star"]
        assert f"{cell['mean']:.3f}" == "0.925"
        cell["mean"] = 0.9111

    def igtt(record):  # adaptive's test Dice on the uneven ER-like set, in the table and the text
        cell = record["results"]["datasets"]["er_uneven"]["methods"]["adaptive"]["dice"]
        assert f"{cell['mean']:.3f}" == "0.722"
        cell["mean"] = 0.7777

    _edit(folder, "rcl_sampling", rcl)
    _edit(folder, "igtt", igtt)
    after = render(folder, doc_path=doc)
    assert after != before
    assert "0.911" in after and "0.778" in after
    removed, added = _changed_words(before, after)
    assert removed and added
    # only the words that carry the two numbers changed
    assert all(re.search(r"0\.925|0\.722", w) for w in removed), removed
    assert all(re.search(r"0\.911|0\.778", w) for w in added), added
    # each new number shows wherever the old one was printed: its section's table and its text
    assert after.count("0.911") >= 2 and after.count("0.778") >= 2


def test_verdicts_follow_the_numbers(tmp_path):
    folder = _copy(tmp_path)
    doc = tmp_path / "README.md"
    before = render(folder, doc_path=doc)
    assert "illumination: the authors' configuration **holds** (" not in before
    assert "here the loss stays within 0.02 up to f = b = 0.2 " in before

    def igtt(record):  # the authors' configuration now beats every threshold, honestly, on the uneven ER-like set
        record["results"]["datasets"]["er_uneven"]["methods"]["igtt_ems"]["dice"]["mean"] = 0.99

    def flipping(record):  # flipping f = b = 0.4 now costs under a point
        row = next(r for r in record["results"]["symmetric"] if r["f"] == 0.4)
        row["t_star"]["mean"] = 0.96

    _edit(folder, "igtt", igtt)
    _edit(folder, "rcl_flipping", flipping)
    after = render(folder, doc_path=doc)
    assert "illumination: the authors' configuration **holds** (honest 0.990" in after
    assert "here the loss stays within 0.02 up to f = b = 0.4 " in after


def test_a_missing_record_gives_one_line(tmp_path):
    folder = _copy(tmp_path)
    (folder / "pcl.json").unlink()
    text = render(folder, doc_path=tmp_path / "README.md")
    section = text.split("### pcl:")[1].split("\n### ")[0].strip().splitlines()
    assert len(section) == 3 and section[1] == ""  # the heading's rest, a blank line, one line
    assert "has not been run" in section[2] and "`python -m simulations run pcl" in section[2]
    assert "### rcl_flipping:" in text and "### random_labels:" in text  # the others are still there
    empty = tmp_path / "empty"
    empty.mkdir()
    text = render(empty, doc_path=tmp_path / "README.md")
    assert text.count("has not been run") == len(runner.NAMES)


def test_image_links_are_relative_to_the_document_and_exist():
    text = DOC.read_text()
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [n for n, _ in links] == [n for n in runner.NAMES if (FIGURES / f"{n}.json").is_file()]
    for name, link in links:
        assert link == f"../figures/{name}.png"
        assert (DOC.parent / link).resolve().is_file(), link
    assert "](../figures/pcl.png)" in render(Path("figures"), doc_path=Path("simulations/README.md"))


@pytest.mark.parametrize("name", runner.NAMES)
def test_every_section_is_rendered(name):
    assert f"\n### {name}: " in DOC.read_text()
