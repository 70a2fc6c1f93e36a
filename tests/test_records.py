"""Records of val searches: made by make tune / make tune-baselines, replayed by the report,
refused (naming the command that remakes them) when not of this code, data, seed or budget;
and where the main model's settings come from (MAIN_SETTING)."""

import json
import re
import shutil

import pytest
import torch
import yaml

from movierec import protocol, records, tune, variants
from movierec.baselines import baseline
from movierec.experiment import setup
from movierec.protocol import Fixed
from movierec.report import notebook_defaults
from movierec.runner import Runner

from .conftest import MAIN


@pytest.fixture(scope="module")
def params(tiny_dir, tmp_path_factory):
    """The notebook's parameters on the tiny data: a 2-trial main search of 2-epoch fits."""
    p = notebook_defaults(tune.NOTEBOOK)
    p.update(DATASET=str(tiny_dir), CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
             MAIN_TRIALS=2, EPOCHS=2, THREADS=0, PROGRESS=False, STABILITY_SEEDS=[])
    return p


@pytest.fixture(scope="module")
def made(params, tmp_path_factory):
    """A checkout-like folder holding both records of the tiny data and tuned.yaml."""
    root = tmp_path_factory.mktemp("root")
    tune.record_searches([baseline("bias"), baseline("most_popular")], params, "baselines",
                         root)
    tune.tune_models({**params, "MODELS": ["seed"]}, root)  # make tune: seed's grid with it
    return root


@pytest.fixture(scope="module")
def exp(params):
    return setup(params).exp


def edit_record(path, **changes):
    record = json.loads(path.read_text())
    for key, value in changes.items():
        record[key] = value
    path.write_text(json.dumps(record))


def test_a_record_holds_its_searches_and_what_proves_it_current(made, params, exp):
    record = json.loads(records.path_of(made, exp.prep.name, "main").read_text())
    assert record["complete"] and record["seed"] == params["SEED"]
    assert record["budget"] == {"trials": 2} and record["checksums"] == exp.prep.checksums
    assert record["made"]["code"] == records.code_version("movierec.variants")
    assert record["made"]["machine"] == records.machine(exp.device)
    search = record["searches"]["hybrid_rank"]
    assert len(search["sweep"]) == 2 and set(search["setting"]) == {*MAIN, "dim"}
    tuned = yaml.safe_load((made / records.TUNED).read_text())
    assert tuned == {exp.prep.name: search["setting"]}  # the choice, as plain values


def test_make_tune_records_our_other_models_and_the_report_replays_them(made, params, exp):
    _, record, _ = records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, made)
    assert set(record) == {"hybrid_rank", "seed"}  # the main model's search and MODELS'
    [seed] = variants.model_specs({**params, "MODELS": ["seed"]})  # as the notebook runs it
    assert len(record["seed"]["sweep"]) >= len(seed.grid(len(exp.train)))
    replayed = Runner(exp, seed=params["SEED"], progress=None, recorded=record).run([seed])
    searched = Runner(exp, seed=params["SEED"], progress=None).run([seed])
    assert replayed["seed"].search["how"] == "recorded, refitted exactly"
    assert searched["seed"].search["how"] == "searched here"
    assert replayed["seed"].setting == searched["seed"].setting == record["seed"]["setting"]
    assert replayed["seed"].headline() == searched["seed"].headline()  # the same test figures
    _, none, _ = records.main_search({**params, "MAIN_SETTING": "search"}, exp, made)
    assert none == {}  # "search": every search of our models in the run


def test_a_stale_record_is_refused_naming_the_command_that_remakes_it(made, params, exp,
                                                                      tmp_path):
    path = tmp_path / "r.json"
    good = records.path_of(made, exp.prep.name, "main")

    def load(**changes):
        shutil.copy(good, path)
        edit_record(path, **changes)
        return records.load(path, "main", checksums=exp.prep.checksums, seed=params["SEED"],
                            device=exp.device, budget={"trials": 2})

    assert load()["hybrid_rank"]["exact"]  # made here, on this machine fingerprint
    with pytest.raises(records.StaleRecord, match=r"unfinished search \(make tune stopped\)"):
        load(complete=False)
    with pytest.raises(records.StaleRecord, match=r"other data.*run `make tune` again"):
        load(checksums={"ratings.csv": "0"})
    with pytest.raises(records.OtherSeed, match=r"seed 5, this run's is 42"):
        load(seed=5)
    with pytest.raises(records.StaleRecord, match=r"searched with \{'trials': 3\}"):
        load(budget={"trials": 3})
    made_by = json.loads(good.read_text())["made"]
    with pytest.raises(records.StaleRecord, match=r"made by other code .*run `make tune` again"):
        load(made={**made_by, "code": "0123456789abcdef"})
    # a run given a DATASET is told the command with it (a folder by its path, as given)
    shutil.copy(good, path)
    edit_record(path, made={**made_by, "code": "0123456789abcdef"})
    for kind, told in (("main", "make tune"), ("baselines", "make tune-baselines")):
        with pytest.raises(records.StaleRecord,
                           match=rf"run `{told} DATASET=data/other-shape` again"):
            records.load(path, kind, checksums=exp.prep.checksums, seed=params["SEED"],
                         device=exp.device, budget={"trials": 2}, dataset="data/other-shape")
    other = {**made_by, "machine": {**made_by["machine"], "cpu": "another CPU"}}
    assert not load(made=other)["hybrid_rank"]["exact"]  # replayed within bounds, not exactly
    assert records.load(tmp_path / "none.json", "main", checksums={}, seed=0,
                        device=exp.device) is None


def test_a_stopped_run_goes_on_from_its_record_when_nothing_changed(made, params, tmp_path,
                                                                    monkeypatch):
    """make tune-baselines stopped after its first search: the next run keeps that search
    (not run again) and adds the rest; other code, another machine or --fresh starts over."""
    searched = []

    def counting(exp, spec, seed, threads):
        searched.append(spec.name)
        return protocol.search(exp, spec, seed, threads)

    monkeypatch.setattr(tune, "search", counting)
    specs = [baseline("bias"), baseline("most_popular")]
    root = tmp_path / "root"
    tune.record_searches(specs[:1], params, "baselines", root)
    path = next((root / "reports" / "tune").glob("*-baselines.json"))
    made_by = json.loads(path.read_text())["made"]  # a stopped run at another commit:
    edit_record(path, complete=False, made={**made_by, "git": {"commit": "1234567" * 6,
                                                              "dirty": False}})
    stopped = json.loads(path.read_text())

    def rerun(**kwargs):
        searched.clear()
        _, searches = tune.record_searches(specs, params, "baselines", root, **kwargs)
        return searches, json.loads(path.read_text())

    searches, record = rerun()
    assert searched == ["most_popular"] and searches["bias"] == stopped["searches"]["bias"]
    assert record["complete"] and record["made"] == stopped["made"]
    assert record["resumed"] == [records.made("baselines", torch.device("cpu"), root)["git"]]
    assert records.load(path, "baselines", checksums=record["checksums"], seed=params["SEED"],
                        device=torch.device("cpu"))["bias"]["made"]["resumed"]
    assert records.commits(record["made"] | {"resumed": record["resumed"]}) == (
        "commit 1234567, resumed at unknown")  # this run's root is no git checkout

    for change in ({"made": {**stopped["made"], "code": "0123456789abcdef"}},
                   {"made": {**stopped["made"], "machine": {**stopped["made"]["machine"],
                                                            "cpu": "another CPU"}}},
                   {"seed": params["SEED"] + 1}, {}):
        path.write_text(json.dumps({**stopped, **change}))
        searches, record = rerun(fresh=not change)  # the last: nothing changed, but --fresh
        assert searched == ["bias", "most_popular"] and "resumed" not in record, change
    path.write_text(json.dumps({**stopped, "complete": True}))
    assert rerun()[0] and searched == ["bias", "most_popular"]  # a complete one is redone
    with pytest.raises(records.StaleRecord, match=r"unfinished.*it resumes"):
        edit_record(path, complete=False)
        records.load(path, "baselines", checksums=record["checksums"], seed=params["SEED"],
                     device=torch.device("cpu"))


def test_the_code_version_follows_the_code_the_searches_run(tmp_path, monkeypatch):
    package = tmp_path / "movierec"
    shutil.copytree(records.PACKAGE, package)
    monkeypatch.setattr(records, "PACKAGE", package)

    def version(module="movierec.baselines"):
        records.code_version.cache_clear()
        return records.code_version(module)

    try:
        before = version()
        assert "movierec.evaluate" in records.import_closure("movierec.baselines")
        assert "movierec.model" not in records.import_closure("movierec.baselines")
        evaluate = package / "evaluate.py"
        text = evaluate.read_text()
        evaluate.write_text(text.replace('"""Evaluation:', '"""Evaluation (reworded):', 1)
                            + "\n# a comment\n")
        assert version() == before  # docstrings, comments and layout do not count
        evaluate.write_text(text + "\nX = 1\n")
        assert version() != before  # code does
        evaluate.write_text(text)
        (package / "study.py").write_text("X = 2\n")  # outside the baselines' code
        assert version() == before
        (package / "protocol.py").write_text((package / "protocol.py").read_text()
                                             + "\ndef f():\n    from movierec import study\n")
        assert "movierec.study" in records.import_closure("movierec.baselines")
        with_import = version()  # an import inside a function brings its module's code in
        (package / "study.py").write_text("X = 3\n")
        assert version() != with_import
    finally:
        records.code_version.cache_clear()


def test_the_main_models_setting_comes_from_one_place(made, params, exp, tmp_path):
    spec, record, said = records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, made)
    tuned = yaml.safe_load((made / records.TUNED).read_text())[exp.prep.name]
    assert record["hybrid_rank"]["setting"] == tuned and "tuned.yaml" in said
    r = Runner(exp, seed=params["SEED"], progress=None, recorded=record).run([spec])
    assert r["hybrid_rank"].setting == tuned  # what trains is what tuned.yaml says
    assert r["hybrid_rank"].search["how"] == "recorded, refitted exactly"
    given = {**MAIN, "dim": 8}
    fixed, none, said = records.main_search({**params, "MAIN_SETTING": given}, exp, made)
    assert isinstance(fixed, Fixed) and fixed.setting == given and none == {}
    assert said == "given in MAIN_SETTING, not searched"
    _, none, said = records.main_search({**params, "MAIN_SETTING": "search"}, exp, made)
    assert none == {} and said.startswith("searched in this run (2 trials")
    _, none, said = records.main_search({**params, "SEED": 5, "MAIN_SETTING": "tuned"}, exp,
                                        made)
    assert none == {} and "another seed" in said  # another seed searches for itself
    elsewhere = tmp_path / "checkout"
    _, none, said = records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, elsewhere)
    assert none == {} and "no record" in said  # a dataset without either: searched here
    with pytest.raises(ValueError, match="MAIN_SETTING must be 'tuned', 'search' or a dict"):
        records.main_search({**params, "MAIN_SETTING": "auto"}, exp, made)


def test_tuned_yaml_and_its_record_must_agree(made, params, exp, tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(made, root)
    tuned = yaml.safe_load((root / records.TUNED).read_text())[exp.prep.name]
    records.write_tuned(root, exp.prep.name, {**tuned, "reg": tuned["reg"] * 2})  # edited
    told = re.escape(f"`make tune DATASET={params['DATASET']}`")  # the folder, as the run had it
    with pytest.raises(records.StaleRecord, match=r"is not the choice of its record .*"
                                                  + told + ", which writes both"):
        records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, root)
    for kind, search, command in (
            ("main", lambda: records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, root),
             "make tune"),
            ("baselines", lambda: records.baseline_searches(
                {**params, "BASELINE_SEARCH": "auto"}, exp, root), "make tune-baselines")):
        path = records.path_of(root, exp.prep.name, kind)  # a stale record: the report says
        edit_record(path, made={**json.loads(path.read_text())["made"], "code": "0" * 16})
        with pytest.raises(records.StaleRecord, match=r"made by other code .*" + re.escape(
                f"run `{command} DATASET={params['DATASET']}` again")):  # ... with DATASET
            search()
    records.path_of(root, exp.prep.name, "main").unlink()
    with pytest.raises(records.StaleRecord, match=r"their search's record .* is missing"):
        records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, root)
    (root / records.TUNED).unlink()
    shutil.copy(records.path_of(made, exp.prep.name, "main"),
                records.path_of(root, exp.prep.name, "main"))
    with pytest.raises(records.StaleRecord, match="is not the choice of its record"):
        records.main_search({**params, "MAIN_SETTING": "tuned"}, exp, root)


def test_a_probe_starts_from_the_reports_parameters_and_make_tunes_choice(made, params, exp,
                                                                          tmp_path):
    root = tmp_path / "checkout"
    shutil.copytree(made, root)
    (root / "notebooks" / "params").mkdir(parents=True, exist_ok=True)
    shutil.copy(tune.NOTEBOOK, root / "notebooks" / "movierec.ipynb")
    overrides = {k: params[k] for k in ("DATASET", "CACHE_DIR", "MAIN_TRIALS", "EPOCHS",
                                        "THREADS", "PROGRESS", "STABILITY_SEEDS")}
    (root / "notebooks" / "params" / "tiny.yaml").write_text(yaml.safe_dump(overrides))
    conf, s, spec, setting = records.probe_setup("tiny.yaml", root)
    assert conf["EPOCHS"] == 2 and conf["SEED"] == params["SEED"]  # file over the defaults
    assert s.exp.prep.checksums == exp.prep.checksums and spec.name == "hybrid_rank"
    assert setting == yaml.safe_load((made / records.TUNED).read_text())[exp.prep.name]
    records.path_of(root, exp.prep.name, "main").unlink()
    (root / records.TUNED).unlink()
    with pytest.raises(records.StaleRecord,
                       match=re.escape(f"run `make tune DATASET={params['DATASET']}`")):
        records.probe_setup("tiny.yaml", root)


def test_recorded_baseline_searches_give_the_searched_results(made, params, exp, monkeypatch):
    names = ["bias", "most_popular"]
    searched = Runner(exp, seed=params["SEED"], progress=None)
    searched.run([baseline(n) for n in names], seeds=(4,))
    recorded, said = records.baseline_searches({**params, "BASELINE_SEARCH": "auto"}, exp,
                                               made)
    assert set(recorded) == set(names)
    assert "recorded by make tune-baselines" in said and "on this machine fingerprint" in said
    assert "searched here, the record lacking them: global_mean" in said
    replayed = Runner(exp, seed=params["SEED"], progress=None, recorded=recorded)
    monkeypatch.setattr(protocol, "search", lambda *a, **k: pytest.fail("a grid searched"))
    replayed.run([baseline(n) for n in names], seeds=(4,))
    for n in names:
        a, b = searched.results[n], replayed.results[n]
        strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.sweep]
        assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.sweep]
        assert (a.setting, a.rating, a.ranking, a.seeds) == (b.setting, b.rating, b.ranking,
                                                             b.seeds)
    found, said = records.baseline_searches({**params, "SEED": 5, "BASELINE_SEARCH": "auto"},
                                            exp, made)
    assert found == {} and "every grid searched in this run" in said  # another seed's: not ours
    path = records.path_of(made, exp.prep.name, "baselines")
    with pytest.raises(records.OtherSeed):  # named explicitly, another seed's is an error
        records.baseline_searches({**params, "SEED": 5, "BASELINE_SEARCH": str(path)}, exp,
                                  made)
    assert records.baseline_searches({**params, "BASELINE_SEARCH": None}, exp, made)[0] == {}


def test_the_searches_code_does_not_pull_in_the_model_or_the_report():
    closure = records.import_closure("movierec.baselines")
    assert not {"movierec.model", "movierec.train", "movierec.artifact", "movierec.study",
                "movierec.compare", "movierec.records"} & set(closure)
    assert not {"movierec.study", "movierec.compare", "movierec.records", "movierec.report",
                "movierec.runner"} & set(records.import_closure("movierec.variants"))
    assert torch.get_num_threads() >= 1
