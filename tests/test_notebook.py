"""The notebook's parameters, the report runner's checks, and the full (genome) code path
executed end to end with papermill on generated data."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from movierec import records, report, synth

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "movierec.ipynb"


def test_params_files_only_name_notebook_parameters():
    known = report.notebook_parameters(NOTEBOOK)
    configurations = [p for p in (ROOT / "notebooks" / "params").glob("*.yaml")
                      if p.name != "tuned.yaml"]
    assert {p.name for p in configurations} == {"small.yaml", "full.yaml"}
    for path in configurations:
        params = yaml.safe_load(path.read_text()) or {}
        assert set(params) <= known, path


def test_tuned_settings_name_every_main_setting_inside_its_search_space():
    """notebooks/params/tuned.yaml (make tune's choices, by dataset) holds, for each dataset,
    a value of every setting of the main model's space, inside its range."""
    from movierec import records
    from movierec.variants import MAIN_SPACE

    tuned = records.tuned_settings(ROOT)
    assert tuned, "no dataset's settings: run make tune"
    for dataset, setting in tuned.items():
        assert set(setting) == set(MAIN_SPACE), dataset
        for name, (kind, *bounds) in MAIN_SPACE.items():
            value = setting[name]
            assert (bounds[0] <= value <= bounds[1] if kind == "log"
                    else value in bounds[0]), (dataset, name, value)


def test_misspelt_parameter_fails_before_running(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['EPOHCS'\]"):
        report.run_report(NOTEBOOK, tmp_path / "out", {"EPOHCS": 1})
    assert report.main([str(NOTEBOOK), str(ROOT / "notebooks/params/small.yaml"),
                        str(tmp_path / "o"), "-p", "SEDE=1"]) == 2


def test_notebook_without_parameters_cell_is_refused(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("tags", None)
    bare = tmp_path / "bare.ipynb"
    bare.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="no cell tagged 'parameters'"):
        report.run_report(bare, tmp_path / "out", {})


def test_unwritable_report_folder_fails_early(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="not writable"):
        report.run_report(NOTEBOOK, blocker / "sub", {})


def test_full_disk_fails_early(tmp_path, monkeypatch):
    monkeypatch.setattr(report.shutil, "disk_usage",
                        lambda p: type("U", (), {"free": 10 * 2**20})())
    with pytest.raises(OSError, match="only 10 MiB free"):
        report.run_report(NOTEBOOK, tmp_path / "out", {})


def test_notebook_is_stripped():
    nb = json.loads(NOTEBOOK.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None


def test_parse_value():
    assert report.parse_value("5") == 5 and report.parse_value("ml-25m") == "ml-25m"
    assert report.parse_value("[seed, mf]") == ["seed", "mf"]


@pytest.mark.slow
def test_full_code_path_report_on_generated_genome_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # as make runs in the checkout: paths under it are relative
    notebook = Path("notebooks") / NOTEBOOK.name
    notebook.parent.mkdir()
    notebook.write_bytes(NOTEBOOK.read_bytes())
    data_dir = synth.generate(tmp_path / "data" / "synthetic-tiny", "tiny", seed=1)
    out = tmp_path / "report"
    params = yaml.safe_load((ROOT / "notebooks/params/full.yaml").read_text())
    params.update({"DATASET": str(data_dir), "EPOCHS": 4, "BATCH_SIZE": 512,
                   "CACHE_DIR": str(tmp_path / "cache")})
    executed = report.run_report(notebook, out, params)
    assert executed.exists() and executed.with_suffix(".html").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["wall_seconds"] > 0 and run["cpu_count"] >= 1
    # what it did was told on stderr as it went, and nothing of that is in the report
    told = capsys.readouterr().err
    for line in ("running notebooks/movierec.ipynb -> report", "== baselines", "== our models",
                 "hybrid_rank (rank_weight ", "seed 42, tuned on train: epoch 1/4",
                 "hybrid_rank: seed 42 on test", "== new movies: done", "finished in"):
        assert line in told, line
    assert "WARNING" not in told  # the kernel's transport warning
    cells = json.loads(executed.read_text())["cells"]
    streams = [o for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert streams == []  # no progress-bar or warning debris
    for path in (executed, executed.with_suffix(".html"), out / "metrics.json", out / "run.json"):
        assert str(tmp_path) not in path.read_text(), path  # no machine path
    assert run["dataset"] == "data/synthetic-tiny"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic-tiny"
    assert metrics["features"] == ["genres", "tags", "genome"]
    assert set(metrics["rating"]) >= {"global_mean", "bias", "svdpp", "hybrid_rank",
                                      *params["MODELS"]}
    assert set(metrics["ranking"]) >= {"most_popular", "ease", "als", "bpr", "hybrid_rank"}
    assert metrics["skipped"] == {}  # tiny data: every baseline runs
    # no record for these data: the main model is searched here, with full.yaml's budget
    assert len(metrics["sweeps"]["hybrid_rank"]) == params["MAIN_TRIALS"]
    assert metrics["search_runs"]["main_setting_from"].startswith(
        f"searched in this run ({params['MAIN_TRIALS']} trials of TPE)")
    mf = metrics["searches"]["mf"]  # ours search their grids too (12), walking past an end
    assert mf["tried"] == 12 + sum(map(len, mf["walked"].values())) and mf["walked"]
    cold = metrics["coldstart"]
    assert cold["test"]["users"] > 0 and "content kNN" in cold["cold"]  # the study ran
    assert sum(metrics["split_sizes"].values()) == 6000
    assert set(metrics["provenance"]["checksums"]) >= {"genome-scores.csv", "ratings.csv"}
    assert metrics["parameters"]["THREADS"] == 0 and "mkl_cbwr" in metrics["provenance"]
    last = json.loads(executed.read_text())["cells"][-1]
    said = "".join("".join(o.get("text", "")) for o in last["outputs"])
    assert "not compared with the reference: different parameters ['BATCH_SIZE'" in said
    assert "PASS  the main model beats the global mean" in said

    # the report reruns in a new process to the same checked outputs (what CI does with
    # reports/small); a stored output that a rerun does not reproduce fails
    copy = report.rerun_copy(executed, tmp_path / "rerun")
    nb = json.loads(copy.read_text())
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"]["tags"])
    assert f'OUTPUT_DIR = "{copy.parent}"' in "".join(injected["source"])
    checked = [c for c in nb["cells"] if c["cell_type"] == "code"
               and "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    # only cells of counts are compared as text (metrics go through metrics.json, with tolerance)
    assert len(checked) == 1 and checked[0]["outputs"]
    assert "split sizes:" in "".join(checked[0]["outputs"][0]["text"])
    assert nbval(copy).returncode == 0
    out = checked[0]["outputs"][0]
    text = "".join(out["text"])
    out["text"] = re.sub(r"'train': (\d+)", lambda m: f"'train': {int(m[1]) + 1}", text)
    assert out["text"] != text
    copy.write_text(json.dumps(nb))
    failed = nbval(copy)
    assert failed.returncode == 1 and "Cell outputs differ" in failed.stdout


def nbval(notebook: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax",
                           "--nbval-current-env", "-p", "no:cacheprovider", str(notebook)],
                          capture_output=True, text=True, cwd=notebook.parent)


def test_the_environment_where_a_report_runs_overrides_the_kernelspecs(tmp_path, monkeypatch):
    # jupyter_client lets a kernelspec's env override the launching process's: make tolerance's
    # MKL_CBWR=COMPATIBLE rerun (and make small MKL_CBWR=) ran under the spec's AVX2
    spec = tmp_path / "kernels" / report.KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "probe", "language": "python",
        "env": {"MKL_CBWR": "AVX2", "MOVIEREC_PROBE": "from the spec"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("MOVIEREC_PROBE", raising=False)
    seen = []
    with report.local_kernel() as km:
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            kc.execute_interactive(
                "import os; print(os.environ['MKL_CBWR'], '|', os.environ['MOVIEREC_PROBE'])",
                timeout=60, output_hook=lambda msg: seen.append(msg["content"].get("text", "")))
        finally:
            kc.stop_channels()
    assert "".join(seen).strip() == "COMPATIBLE | from the spec"


def test_rerun_copy_needs_an_executed_report(tmp_path):
    with pytest.raises(ValueError, match="not a papermill report"):
        report.rerun_copy(NOTEBOOK, tmp_path)


def test_git_state_ignores_reports(tmp_path):
    import subprocess

    from movierec.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.txt").write_text("a")
    (tmp_path / "code.py").write_text("a")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "reports" / "r.txt").write_text("b")  # a report being written
    assert git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("b")
    state = git_state(tmp_path)
    assert state["dirty"] is True and len(state["commit"]) == 40


def test_committed_small_report_is_the_current_notebook_with_the_small_parameters():
    """`make test` reruns reports/small under nbval in place of the notebook itself, which
    holds only while the report's cells are the notebook's and its parameters small.yaml's."""
    report_nb = json.loads((ROOT / "reports/small/movierec.ipynb").read_text())
    source = json.loads(NOTEBOOK.read_text())
    injected = [c for c in report_nb["cells"]
                if "injected-parameters" in c["metadata"].get("tags", [])]
    cells = [c for c in report_nb["cells"] if c not in injected]
    assert ["".join(c["source"]) for c in cells] == ["".join(c["source"])
                                                     for c in source["cells"]], (
        "reports/small is stale: run `make small`")
    small = yaml.safe_load((ROOT / "notebooks/params/small.yaml").read_text())
    said = "".join(injected[0]["source"])
    for name, value in small.items():
        assert f"{name} = {json.dumps(value)}" in said
    assert set(re.findall(r"^(\w+) = ", said, re.M)) == {*small, "OUTPUT_DIR"}


def test_the_committed_small_report_replays_every_recorded_search():
    """make small replays each search of make tune's and make tune-baselines' records (our
    models' grids too: the record is read before they run), none searched again."""
    metrics = json.loads((ROOT / "reports/small/metrics.json").read_text())
    runs = metrics["search_runs"]
    searches = {kind: json.loads(records.path_of(ROOT, metrics["dataset"], kind).read_text())
                ["searches"] for kind in ("main", "baselines")}
    for kind, names in searches.items():
        assert names and set(names) <= set(runs), kind
        for name in names:
            assert runs[name]["how"].startswith("recorded"), (name, runs[name]["how"])
    assert set(searches["main"]) == {metrics["main_model"]["name"],
                                     *metrics["parameters"]["MODELS"]}


MACHINE_PATHS = re.compile(r"/(?:home|root|tmp|Users|work|private|var/folders)/")


def test_committed_reports_hold_no_machine_path():
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "reports"], check=True,
                             capture_output=True, text=True).stdout.split()
    assert tracked
    for name in tracked:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert str(ROOT) not in text, name
        found = MACHINE_PATHS.search(text)
        assert found is None, f"{name}: {text[max(0, found.start() - 60):found.end() + 40]!r}"


def test_a_failing_report_keeps_its_html_and_a_failed_run_record(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("X = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("assert X == 2, 'X is not 2'")]
    nb.metadata["kernelspec"] = {"name": report.KERNEL, "display_name": "movierec",
                                 "language": "python"}
    path = tmp_path / "fails.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    with pytest.raises(Exception, match="X is not 2"):
        report.run_report(path, out, {"X": 1})
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed: AssertionError: X is not 2" and run["wall_seconds"] > 0
    assert (out / "fails.html").exists()


def test_make_lab_runs_as_root_and_says_where_to_open_it():
    dry = subprocess.run(["make", "-n", "-s", "lab"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lab = next(line for line in dry.splitlines() if "jupyter lab" in line)
    assert ("--allow-root" in lab) == (os.getuid() == 0)
    assert "open the http://localhost" in dry
