"""simulations/README.md: written by code from figures/*.json, never by hand (no training here)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from simulations import runner
from simulations.igtt import IGTT_LABELS
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


def _pm3(st: dict) -> str | None:
    """A stats dict as the document prints it, written out here: ``mean +- sd`` to 3 decimals, the mean
    alone for one seed or no spread; None for an sd that would print as 0.000 (the document gives its first
    significant digit)."""
    if st["n"] <= 1 or not st["std"]:
        return f"{st['mean']:.3f}"
    return f"{st['mean']:.3f} +- {st['std']:.3f}" if st["std"] >= 0.0005 else None


def test_committed_document_is_the_rendering_of_the_committed_records(monkeypatch):
    """The whole text: every experiment module's section, rendered from figures/*.json, is what is committed."""
    monkeypatch.chdir(ROOT)  # the document names its commands relative to where they run: the repository root
    expected = render(Path("figures"), doc_path=Path("simulations/README.md"))
    assert DOC.read_text() == expected, (
        "simulations/README.md is not the rendering of figures/*.json: regenerate it with "
        "`python -m simulations report --profile full --doc simulations/README.md` (never edit it by hand)")
    assert "`python -m simulations report --profile full --doc simulations/README.md`" in expected


def _rcl_rows(record: dict) -> dict[float, str]:
    """The rcl_sampling table's rows, by ratio, from the record: Dice at t* (validation, oracle) per data set."""
    res, cfg = record["results"], record["config"]
    rows = {}
    for r in cfg["ratios"]:
        cells = []
        for d in cfg["datasets"]:
            row = next(v for k, v in res[d]["by_ratio"].items() if float(k) == r)
            assert _pm3(row["t_star"]) is not None
            cells.append(f"{_pm3(row['t_star'])} ({row['validation']['mean']:.3f}, {row['oracle']['mean']:.3f})")
        rows[r] = f"| {r:g} | " + " | ".join(cells) + " |"
    return rows


def test_numbers_come_from_the_records(tmp_path):
    """The numbers printed are the committed records' (formatted here, independently of simulations._text),
    and a number changed in a record changes in the document, in its table and its text."""
    records = {p.stem: json.loads(p.read_text()) for p in FIGURES.glob("*.json")}
    text = render(FIGURES, doc_path=tmp_path / "README.md")
    rcl = records["rcl_sampling"]
    for ratio, row in _rcl_rows(rcl).items():
        assert row in text.splitlines(), (ratio, row)
    ig = records["igtt"]
    datasets = ig["results"]["datasets"].values()
    for m in dict.fromkeys(m for d in datasets for m in d["methods"]):  # every method's row of the table
        label = IGTT_LABELS.get(m, m).format(**ig["config"])
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
        for d in (d for d in datasets if m in d["methods"]):
            honest, paper = _pm3(d["methods"][m]["dice"]), _pm3(d["paper_protocol"][m]["dice"])
            if None not in (honest, paper):
                assert f"| {honest} | {paper} |" in line, (m, line)
    cal = records["planner"]["results"]["calibration"]
    assert f"clean Dice {cal['clean_dice']:.3f}" in text and f"n_eff = {cal['n_eff']:.0f} labels" in text
    fit = records["rcl_flipping"]["results"]["fit"]
    assert f"(n_eff = {fit['n_eff']:.0f}, fitted) has rms error {fit['rmse']:.3f}" in text
    mem = records["memorisation"]["results"]
    assert f"k = {mem['fitted_k']:,.0f} (rms error {mem['fit_rmse']:.3f})" in text

    # change one cell of a record: NUC-like, 10% sampling, Dice at t* (printed in the table and the text)
    folder = _copy(tmp_path)
    cell = rcl["results"]["nuclei"]["by_ratio"][next(k for k in rcl["results"]["nuclei"]["by_ratio"]
                                                     if float(k) == 0.1)]["t_star"]
    old = f"{cell['mean']:.3f}"
    new_mean = next(cell["mean"] + dx for dx in (0.0043, -0.0043, 0.0067, -0.0067)
                    if f"{cell['mean'] + dx:.3f}" not in text)
    new = f"{new_mean:.3f}"
    cell["mean"] = new_mean
    (folder / "rcl_sampling.json").write_text(json.dumps(rcl))
    after = render(folder, doc_path=tmp_path / "README.md")
    assert _rcl_rows(rcl)[0.1] in after.splitlines()
    assert after.count(new) >= 2 and after.count(old) <= text.count(old) - 2  # the table and the text


def test_verdicts_follow_the_numbers(tmp_path):
    folder = _copy(tmp_path)
    doc = tmp_path / "README.md"
    before = render(folder, doc_path=doc)
    assert "illumination: the authors' configuration **holds** (" not in before
    assert "the loss stays within 0.02 up to f = b = 0.2 " in before

    def igtt(record):  # the authors' configuration now beats every threshold, honestly, on the uneven ER-like set
        record["results"]["datasets"]["er_uneven"]["methods"]["igtt_ems"]["dice"]["mean"] = 0.99

    def flipping(record):  # flipping f = b = 0.4 now costs under a point
        row = next(r for r in record["results"]["symmetric"] if r["f"] == 0.4)
        row["t_star"]["mean"] = 0.96

    _edit(folder, "igtt", igtt)
    _edit(folder, "rcl_flipping", flipping)
    after = render(folder, doc_path=doc)
    assert "illumination: the authors' configuration **holds** (honest 0.990" in after
    assert "the loss stays within 0.02 up to f = b = 0.4 " in after


def _not_reproduced(text: str) -> str:
    return text.split("## Not reproduced here, and why")[1].split("\n## ")[0] if "## Not reproduced" in text else ""


def test_not_reproduced_lists_what_the_numbers_do_not_reproduce_and_links_each_section(tmp_path):
    """One bullet per claim the records do not reproduce, each linked to its section by the heading's GitHub
    anchor (every anchor of the document names a heading of it; the front page links the section), and a
    claim leaves the list when its numbers change: flipping within 0.02 of clean, CKA putting RCL above PCL,
    a fixed-draw peak of random labels well above its control."""
    folder = _copy(tmp_path)
    doc = tmp_path / "README.md"
    before = render(folder, doc_path=doc)
    section = _not_reproduced(before)
    for name in ("rcl_flipping", "random_labels", "feature_maps", "igtt", "multiclass"):
        assert f"- [`{name}`](#{name}-" in section
    headings = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", before, re.M)}
    anchors = re.findall(r"\]\(#([^)]+)\)", before)
    assert anchors and all(a in headings for a in anchors), [a for a in anchors if a not in headings]
    assert "(simulations/README.md#not-reproduced-here-and-why)" in (ROOT / "README.md").read_text()

    def flipping(record):  # every rate below 0.5 now within 0.02 of clean
        for r in record["results"]["symmetric"]:
            if 0 < r["f"] < 0.5:
                r["t_star"]["mean"] = 0.96

    def features(record):  # the permutation test now puts RCL above PCL
        record["results"]["tests"]["rcl_vs_pcl"].update(difference=0.1, p=0.001)

    def peak(record):  # the validation-chosen fixed draw now clearly above its control
        record["results"]["selected_difference"].update(mean=0.2, low=0.1, high=0.3)

    _edit(folder, "rcl_flipping", flipping)
    _edit(folder, "feature_maps", features)
    _edit(folder, "random_labels", peak)
    after = _not_reproduced(render(folder, doc_path=doc))
    assert "[`igtt`]" in after and "[`multiclass`]" in after
    for name in ("rcl_flipping", "feature_maps", "random_labels"):
        assert f"[`{name}`]" not in after


def test_random_labels_difference_is_welchs_interval():
    """The committed record's difference of the validation-chosen test Dice, fixed draw minus control, and its
    95% interval: scipy's Welch t-test as the oracle."""
    from scipy import stats

    res = json.loads((FIGURES / "random_labels.json").read_text())["results"]
    a, b = res["fixed"]["selected_values"], res["fresh"]["selected_values"]
    assert len(a) == len(b) >= 8
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = res["selected_difference"]
    assert (d["low"], d["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d["mean"] == pytest.approx(np.mean(a) - np.mean(b))


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
