"""README's figures are generated from the committed reports and agree with them."""

import copy
import json
import re
from pathlib import Path

import pytest

from movierec import readme, report

ROOT = Path(__file__).resolve().parents[1]


def copy_documents_and_reports(to: Path) -> None:
    """The documents and every source report that exists, copied under ``to``."""
    for rel in (*readme.DOCUMENTS, *(src for src, _ in readme.BLOCKS.values())):
        if (ROOT / rel).exists():
            (to / rel).parent.mkdir(parents=True, exist_ok=True)
            (to / rel).write_bytes((ROOT / rel).read_bytes())


def test_readme_and_docs_agree_with_committed_reports():
    for doc, text in readme.render_all(ROOT).items():
        assert text == (ROOT / doc).read_text(encoding="utf-8"), f"{doc} is stale"
    assert readme.main(["--check", "--root", str(ROOT)]) == 0


def test_a_changed_metric_makes_readme_stale(tmp_path):
    copy_documents_and_reports(tmp_path)
    metrics_path = tmp_path / "reports/small/metrics.json"
    metrics = json.loads(metrics_path.read_text())
    model = readme.model_order(metrics)[-1]
    k = metrics["parameters"]["KS"][0]
    old = metrics["ranking"][model][f"coverage@{k}"]
    metrics["ranking"][model][f"coverage@{k}"] = old + 0.1
    metrics_path.write_text(json.dumps(metrics))
    assert readme.main(["--check", "--root", str(tmp_path)]) == 1
    assert readme.main(["--root", str(tmp_path)]) == 0  # make readme
    text = (tmp_path / "README.md").read_text()
    assert f"{old + 0.1:.4f}" in text and readme.main(["--check", "--root", str(tmp_path)]) == 0


def test_results_table_rows_and_seed_spread():
    metrics = json.loads((ROOT / "reports/small/metrics.json").read_text())
    table = readme.results_table(metrics).splitlines()
    rows = [line.split(" | ")[0].removeprefix("| ") for line in table[2:]]
    assert sorted(rows) == sorted({*metrics["rating"], *metrics["ranking"]})  # each model once
    ours = {*metrics["parameters"]["MODELS"], metrics["main_model"]["name"]}
    baselines = [r for r in rows if r not in ours]
    assert rows[:len(baselines)] == baselines and rows[-1] == metrics["main_model"]["name"]
    main = metrics["main_model"]["name"]
    cells = table[-1].split(" | ")
    assert cells[1] == f"{metrics['rating'][main]['test_rmse']:.4f}"
    m = copy.deepcopy(metrics)
    m["seeds"] = {"x": {"mean": {"recall@10": 0.15}, "sd": {"recall@10": 0.0707}, "seeds": 2}}
    assert readme.seed_spread(m) == "- x over 2 seeds: Recall@10 0.1500 ± 0.0707."
    seeds = {"seed_diff": -0.01, "seed_se": 0.002, "seeds": 4}
    m["uncertainty"] = {"rmse": {
        "svdpp": {"diff": -0.01, "ci_low": -0.02, "ci_high": -0.001, **seeds},
        "svd": {"diff": 0.002, "ci_low": -0.001, "ci_high": 0.005, **seeds}}}
    m["main_model"] = {"name": "main"}
    assert ("- RMSE: main is level with svd (+0.0020 [-0.0010, +0.0050], seeds -0.0100 ± "
            "0.0020); loses to svdpp (-0.0100 [-0.0200, -0.0010], seeds -0.0100 ± 0.0020)."
            in readme.uncertainty(m))


def test_missing_or_doubled_block_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="small-results"):
        readme.render("no blocks here", ROOT)
    copy_documents_and_reports(tmp_path)
    speed = "<!-- generated:speed -->\n<!-- /generated:speed -->\n"
    with (tmp_path / "README.md").open("a") as f:
        f.write(speed)
    with pytest.raises(ValueError, match=r"'speed' must stand in one document"):
        readme.render_all(tmp_path)


def test_full_block_quotes_the_recorded_wall_time():
    metrics = json.loads((ROOT / "reports/full/metrics.json").read_text())
    assert "end to end" not in readme.full_results(metrics)
    metrics["run"] = {"wall_seconds": 3000, "cpu_count": 2, "cpu": "X", "memory_gb": 24}
    assert ("`make full` took 50 min end to end (2 cores of an X, 24 GiB)."
            in readme.full_results(metrics))
    assert "Note on that run" not in readme.full_results(metrics)
    metrics["run"]["note"] = "the machine was shared."
    assert ("(2 cores of an X, 24 GiB). Note on that run: the machine was shared."
            in readme.full_results(metrics))


def test_small_block_quotes_its_wall_time_and_the_recorded_searches():
    metrics = json.loads((ROOT / "reports/small/metrics.json").read_text())
    metrics["run"] = {"wall_seconds": 600, "cpu_count": 2, "cpu": "X", "memory_gb": 24}
    record = {"commit": "abc", "code": "c0de", "cpu": "X"}
    metrics["search_runs"] = {"main_setting_from": "tuned.yaml",
                              "a": {"how": "recorded", "seconds": 1500, "record": record},
                              "b": {"how": "recorded", "seconds": 300, "record": record},
                              "c": {"how": "searched here", "seconds": 5}}
    metrics["searches"] = {n: {"tried": 4, "at_edge": [], "capped": []} for n in "abc"}
    said = readme.small_results(metrics)
    assert "`make small` took 10 min end to end (2 cores of an X, 24 GiB)." in said
    assert ("The searches of a, b were recorded once by `make tune` and `make tune-baselines` "
            "(30 min of fits, not in that time) and replayed" in said)
    assert "searched in the run: c." in said  # the searches the records lack, named
    metrics["searches"]["c"]["tried"] = 1  # one setting is no search
    assert "searched in the run" not in readme.small_results(metrics)
    metrics["search_runs"] = {"main_setting_from": "x", "c": {"how": "searched here"}}
    assert "make tune-baselines" not in readme.small_results(metrics)  # nothing recorded


def test_run_record_keeps_the_runners_note(tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIEREC_RUN_NOTE", raising=False)
    report.write_run_record(tmp_path / "run.json", 60.0, {"DATASET": "d"})
    assert "note" not in json.loads((tmp_path / "run.json").read_text())
    monkeypatch.setenv("MOVIEREC_RUN_NOTE", "shared with another job. ")
    report.write_run_record(tmp_path / "run.json", 60.0, {"DATASET": "d"})
    assert json.loads((tmp_path / "run.json").read_text())["note"] == "shared with another job."


RESULT_WORDS = re.compile(r"\b(beats?|beating|loses?|lost|level with|outperform\w*|better than|"
                          r"worse than|ahead of|behind)\b|(?<![\w./])0\.\d{3,}", re.I)


def prose(text: str) -> str:
    """``text`` without its generated blocks, code and quoted words (a rule's own words)."""
    text = re.sub(r"<!-- generated:(\S+) -->.*?<!-- /generated:\1 -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r'"[^"\n]*"', "", text)


DATED = re.compile(r"\b[0-9a-f]{7,40}\b|\b20\d\d-\d\d-\d\d\b")  # a commit, or a date
GOAL_WORDS = re.compile(r"\b(is|are) (not )?met\b", re.I)


def undated_results(text: str) -> list[str]:
    """The paragraphs of ``text``'s prose (generated blocks aside) that state a result, or
    that a goal is met, without saying when it was measured (a commit or a date, in the
    paragraph or its section's heading)."""
    out, heading = [], ""
    for para in re.split(r"\n\s*\n", prose(text)):
        if para.startswith("#"):
            heading, _, para = para.partition("\n")
        found = RESULT_WORDS.search(para) or GOAL_WORDS.search(para)
        if found and not DATED.search(heading + " " + para):
            out.append(para[max(0, found.start() - 80):found.end() + 40])
    return out


def test_results_in_the_docs_are_generated_or_dated():
    """docs/*.md are diaries as well as references: a result in their prose is either
    generated from a report (a generated block, checked by make readme) or says when it was
    measured, so that no sentence passes for a claim about today's reports."""
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert undated_results(doc.read_text(encoding="utf-8")) == [], doc.name
    assert undated_results("## Speed\n\nThe goal of 60 s an epoch is met.") != []
    assert undated_results("## Speed (at 3629574)\n\nThe 60 s goal is not met.") == []
    assert undated_results("## X\n\nIt beats ALS (2026-12-03).") == []


def test_no_result_sentence_stands_outside_what_metrics_json_generates():
    """A result in README or the notebook's prose is generated from metrics.json (and so
    checked against it); written prose states none."""
    said = {"README.md": prose((ROOT / "README.md").read_text(encoding="utf-8"))}
    notebook = json.loads((ROOT / "notebooks/movierec.ipynb").read_text())
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "markdown":
            said[f"notebook cell {i}"] = prose("".join(cell["source"]))
    for where, text in said.items():
        found = RESULT_WORDS.search(text)
        assert found is None, f"{where}: {text[max(0, found.start() - 80):found.end() + 40]!r}"


def test_a_block_whose_report_was_never_run_stands_nowhere(tmp_path):
    copy_documents_and_reports(tmp_path)
    (tmp_path / "reports/bench/bench.json").unlink()
    with pytest.raises(ValueError, match=r"'speed' stands in .* does not exist: run its make"):
        readme.render_all(tmp_path)
