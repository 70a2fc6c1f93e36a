"""Comparing a run with the committed report: exact on the same machine, measured tolerance on
another, skipped (with the reason) when the run is not comparable."""

import copy
import json
import math

import pytest

from movierec import compare

PROV = {"device": "cpu", "cpu_vendor": "GenuineIntel", "cpu": "Intel(R) Xeon(R) Processor",
        "cpu_capability": "AVX512", "mkl_cbwr": "AVX2", "torch_threads": 2,
        "versions": {"torch": "2.13.0+cpu"}, "checksums": {"ratings.csv": "abc"}, "seed": 42}


def report() -> dict:
    return {
        "summary": {"movies": 1000},
        "features": ["genres", "tags"],
        "evaluated_users": {"val": 400, "test": 500},
        "split_sizes": {"train": 70, "val": 20, "test": 10},
        "dropped": {"nan_tags": 0},
        "main_model": {"name": "mf", "setting": {"rank_weight": 1.0}},
        "rating": {"mf": {"test_rmse": 0.8818273448, "epochs": 7}},
        "ranking": {"mf": {"recall@10": 0.05, "recall@10_se": 0.009, "coverage@10": 0.1}},
        "ranking_by": {},
        "buckets": {"mf": {"cold": {"recall@10": 0.02, "recall@10_se": 0.012, "users": 60}}},
        "catalogue": {"movies": 1000, "never_rated": 80, "never_rated_rated_in_test": 78},
        "seeds": {"mf": {"per_seed": {"1": {"recall@10": 0.05}, "2": {"recall@10": 0.058}},
                         "mean": {"recall@10": 0.054}, "sd": {"recall@10": 0.0056568542494923},
                         "seeds": 2}},
        "uncertainty": {"recall@10": {"against": "ease", "diff": 0.004, "ci_low": -0.01,
                                      "ci_high": 0.02, "p_not_better": 0.3, "resamples": 2000}},
        "ablations": {},
        "coldstart": {"test": {"users": 40, "mixed_users": 60}, "val": {"users": 20,
                                                                        "mixed_users": 30},
                      "cold": {"main": {"ndcg@10": 0.05, "val_ndcg@10": 0.04}},
                      "mixed": {"test": [{"bonus": 1.0, "new_in_top": 2.5,
                                          "warm ndcg@10": 0.07}]}},
        "sweeps": {"ease": [{"lam": 300.0, "val_ndcg@10": 0.09}]},
        "searches": {"ease": {"searched": {"lam": [300.0]}, "tried": 1,
                              "chosen": {"lam": 300.0}, "at_edge": [], "at_limit": [],
                              "capped": []}},
        "configurations_tried": 12,
        "skipped": {},
        "history": {"mf": {"epoch": [1, 2], "val_rmse": [0.95, 0.9],
                           "val_recall@10": [0.02, 0.03]}},
        "parameters": {"DATASET": "ml-latest-small", "SEED": 42, "THREADS": 2},
        "provenance": copy.deepcopy(PROV),
    }


def other_machine(r: dict) -> dict:
    r["provenance"].update(cpu_vendor="AuthenticAMD", cpu="AMD EPYC 9R14")
    return r


def test_same_fingerprint_is_exact_and_one_ulp_fails():
    ref, run = report(), report()
    assert compare.compare_reports(ref, run).ok
    run["rating"]["mf"]["test_rmse"] = math.nextafter(0.8818273448, 1.0)
    result = compare.compare_reports(ref, run)
    assert result.mode == "exact" and not result.ok
    assert result.differences == [f"rating/mf/test_rmse: 0.8818273448 vs "
                                  f"{math.nextafter(0.8818273448, 1.0)!r}"]


@pytest.mark.parametrize("key,value", [
    ("cpu_vendor", "AuthenticAMD"), ("cpu", "Intel(R) Xeon(R) Gold 6338"),
    ("cpu_capability", "AVX2"), ("mkl_cbwr", "COMPATIBLE"), ("torch_threads", 16),
    ("versions", {"torch": "2.14.1"})])
def test_any_fingerprint_difference_means_tolerance_mode(key, value):
    run = report()
    run["provenance"][key] = value
    result = compare.compare_reports(report(), run)
    assert result.mode == "tolerance" and key in result.reason and result.ok


def test_tolerance_accepts_last_bits_and_near_tie_flips():
    ref, run = report(), other_machine(report())
    run["rating"]["mf"]["test_rmse"] = 0.8818273456  # the AMD-vs-Intel difference, measured
    run["history"]["mf"]["val_rmse"][1] *= 1 + 1e-7
    run["ranking"]["mf"]["recall@10"] += 3 / 500  # three test users' lists change one entry
    run["ranking"]["mf"]["coverage@10"] -= 5 / 1000  # five movies fewer shown (measured)
    run["history"]["mf"]["val_recall@10"][0] += 3 / 400
    result = compare.compare_reports(ref, run)
    assert result.mode == "tolerance" and result.ok, result.summary()
    assert compare.compare_reports(ref, run, mode="exact").differences  # not bit-identical


@pytest.mark.parametrize("where,change", [
    (("rating", "mf", "test_rmse"), lambda x: x * (1 + 1e-4)),  # a real drift
    (("ranking", "mf", "recall@10"), lambda x: x + 4 / 500),  # more than 3 flips
    (("ranking", "mf", "coverage@10"), lambda x: x + 11 / 1000),
    (("rating", "mf", "epochs"), lambda x: x + 1),  # counts never move
    (("split_sizes", "train"), lambda x: x - 1),
])
def test_perturbation_beyond_tolerance_fails(where, change):
    run = other_machine(report())
    node = run
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = change(node[where[-1]])
    result = compare.compare_reports(report(), run)
    assert result.mode == "tolerance" and not result.ok
    assert len(result.differences) == 1 and result.differences[0].startswith("/".join(where))
    assert "/".join(where) in result.summary()


def test_missing_or_extra_results_fail():
    run = other_machine(report())
    del run["ranking"]["mf"]["coverage@10"]
    run["history"]["mf"]["epoch"].append(3)
    diffs = compare.compare_reports(report(), run).differences
    assert any("coverage@10" in d for d in diffs) and any("length 2 vs 3" in d for d in diffs)


def test_not_comparable_runs_are_skipped_with_the_reason():
    run = report()
    run["parameters"]["SEED"] = 1
    assert compare.compare_reports(report(), run).reason == "different parameters ['SEED']"
    run = report()
    run["provenance"]["checksums"] = {"ratings.csv": "other"}
    assert "checksums" in compare.compare_reports(report(), run).reason
    run = report()
    run["provenance"]["device"] = "cuda:0"
    result = compare.compare_reports(report(), run)
    assert not result.compared and "GPU" in result.reason and not result.ok


def test_thread_count_is_a_machine_property_not_a_run_parameter():
    run = report()
    run["parameters"]["THREADS"] = 1
    run["provenance"]["torch_threads"] = 1
    assert compare.compare_reports(report(), run).mode == "tolerance"


def test_how_the_baselines_ran_is_not_a_run_parameter():
    run = report()  # searched again, one after another: the same results, compared exactly
    run["parameters"].update(BASELINE_SEARCH=None, BASELINE_WORKERS=1)
    assert compare.compare_reports(report(), run).mode == "exact"
    run["parameters"]["EPOCHS"] = 5  # a parameter that changes what is computed still counts
    assert compare.compare_reports(report(), run).reason == "different parameters ['EPOCHS']"


def test_committed_report_comparison_and_ci_rule(tmp_path):
    committed = tmp_path / "reports" / "small" / "metrics.json"
    committed.parent.mkdir(parents=True)
    committed.write_text(json.dumps(report()))
    run = tmp_path / "run" / "metrics.json"
    run.parent.mkdir()
    run.write_text(json.dumps(other_machine(report())))
    assert compare.compare_with_committed(run, committed).mode == "tolerance"
    writing = compare.compare_with_committed(committed, committed)
    assert writing.reason == "this run writes the committed report"
    assert not compare.required_in_ci("ml-latest-small", writing, ci=True)
    absent = compare.compare_with_committed(run, tmp_path / "none.json")
    assert compare.required_in_ci("ml-latest-small", absent, ci=True)
    assert not compare.required_in_ci("ml-latest-small", absent, ci=False)


def test_command_line(tmp_path, capsys):
    ref, same, other = (tmp_path / f"{n}.json" for n in ("ref", "same", "other"))
    ref.write_text(json.dumps(report()))
    same.write_text(json.dumps(report()))
    moved = other_machine(report())
    moved["rating"]["mf"]["test_rmse"] = 0.8818273456
    other.write_text(json.dumps(moved))
    assert compare.main([str(ref), str(other), "--expect-mode", "tolerance",
                         "--expect-exact-differs"]) == 0
    # a simulated machine that changed no bit proves nothing
    assert compare.main([str(ref), str(same), "--expect-exact-differs"]) == 1
    assert "changed nothing" in capsys.readouterr().out
    assert compare.main([str(ref), str(same), "--expect-mode", "tolerance"]) == 1
    moved["rating"]["mf"]["test_rmse"] = 0.9
    other.write_text(json.dumps(moved))
    assert compare.main([str(ref), str(other)]) == 1


def test_bad_mode_and_a_run_without_its_user_counts():
    with pytest.raises(ValueError, match="mode must be 'exact' or 'tolerance'"):
        compare.compare_reports(report(), report(), mode="loose")
    run = other_machine(report())
    del run["evaluated_users"]
    result = compare.compare_reports(report(), run)
    assert not result.ok and result.differences == ["evaluated_users: in one report only"]
    ref = report()
    del ref["summary"]
    assert "reference lacks evaluated_users/summary" in compare.compare_reports(
        ref, other_machine(report())).differences[0]


def fooled(change) -> list[str]:
    run = other_machine(report())
    change(run)
    return compare.compare_reports(report(), run).differences


def test_an_undefined_metric_is_never_equal_not_even_to_itself():
    assert fooled(lambda r: r["ranking"]["mf"].update({"recall@10": float("nan")}))
    for mode in ("exact", "tolerance"):
        ref, run = report(), report() if mode == "exact" else other_machine(report())
        ref["ranking"]["mf"]["recall@10"] = run["ranking"]["mf"]["recall@10"] = float("nan")
        result = compare.compare_reports(ref, run)
        assert result.mode == mode and not result.ok
        assert result.differences == ["ranking/mf/recall@10: nan vs nan (undefined)"]


def checked(metrics: dict) -> dict[str, bool]:
    return compare.self_checks(metrics, compare.Comparison("skipped", "no committed report"),
                               ci=False)


def test_the_closing_checks_fail_on_a_configured_model_that_did_not_run():
    m = report()
    m["parameters"].update(KS=[10], BASELINES=["global_mean", "most_popular", "ease"],
                           MODELS=[])
    m["rating"]["global_mean"] = {"test_rmse": 1.07}
    m["ranking"]["most_popular"] = {"recall@10": 0.04}
    m["skipped"] = {"ease": "too many movies"}
    assert all(checked(m).values())  # ease: skipped, with its reason
    m["skipped"] = {}
    failed = [name for name, ok in checked(m).items() if not ok]
    assert failed == ["every configured model has results or a reason it was skipped "
                      "(missing: ['ease'])"]
    m["parameters"]["MODELS"] = ["hybrid"]
    assert "missing: ['ease', 'hybrid']" in next(n for n, ok in checked(m).items() if not ok)
    m["skipped"] = {"ease": "x"}
    m["rating"]["mf"]["test_rmse"] = 1.2  # the main model above the global mean's RMSE
    assert not checked(m)["the main model beats the global mean (test RMSE)"]


def test_check_report_raises_naming_the_failed_check(tmp_path):
    m = report()
    m["parameters"].update(KS=[10], BASELINES=["ease"], MODELS=[])
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(m))
    with pytest.raises(AssertionError, match=r"missing: \['ease'\]"):
        compare.check_report(m, path, None, ci=False)
    m["skipped"] = {"ease": "x"}
    assert all(compare.check_report(m, path, None, ci=False).values())


def test_the_bounds_are_sized_from_the_reference_not_the_run():
    def claims_few_users(r):
        r["evaluated_users"]["test"] = 5
        r["ranking"]["mf"]["recall@10"] += 0.5

    diffs = fooled(claims_few_users)
    assert any(d.startswith("evaluated_users/test: 500 vs 5") for d in diffs)
    assert any(d.startswith("ranking/mf/recall@10:") for d in diffs)


def test_standard_errors_and_seed_spreads_do_not_move_alone():
    assert fooled(lambda r: r["ranking"]["mf"].update({"recall@10_se": 0.0}))  # mean unmoved
    assert fooled(lambda r: r["seeds"]["mf"]["sd"].update({"recall@10": 0.0}))
    assert fooled(lambda r: r["seeds"]["mf"]["per_seed"]["1"].update({"recall@10": 0.0}))

    def one_flip(r):  # a near-tie falls the other way for one test user: mean and error move
        r["ranking"]["mf"]["recall@10"] += 1 / 500
        r["ranking"]["mf"]["recall@10_se"] += 0.5 / 500

    assert fooled(one_flip) == []


def test_bucket_metrics_use_their_own_users():
    # one flip among the 60 cold users moves their recall by 1/60: allowed (3/60), while the
    # 500 test users' bound (3/500) would have failed it
    def cold(r):
        return r["buckets"]["mf"]["cold"]

    assert fooled(lambda r: cold(r).update({"recall@10": 0.02 + 1 / 60})) == []
    assert fooled(lambda r: cold(r).update({"recall@10": 0.02 + 4 / 60}))


@pytest.mark.parametrize("key,change", [
    ("uncertainty", lambda r: r["uncertainty"]["recall@10"].update({"ci_low": 0.005})),
    ("uncertainty", lambda r: r["uncertainty"]["recall@10"].update({"against": "als"})),
    ("uncertainty", lambda r: r["uncertainty"]["recall@10"].update({"p_not_better": 0.1})),
    ("features", lambda r: r["features"].append("genome")),
    ("configurations_tried", lambda r: r.update({"configurations_tried": 11})),
])
def test_bootstraps_features_and_the_count_of_configurations_are_compared(key, change):
    diffs = fooled(change)
    assert diffs and diffs[0].startswith(key)


def test_a_bootstraps_share_not_ahead_moves_only_with_its_difference():
    """Few users make the share of resamples not ahead jump when the difference moves a flip's
    worth (the new-movie study's 18): it may move by what the difference's change implies
    (its interval's width sets the density), never on its own."""
    def moved(diff, p):
        return lambda r: r["uncertainty"]["recall@10"].update(
            {"diff": 0.004 + diff, "p_not_better": 0.3 + p})

    assert fooled(moved(0.002, 0.1)) == []  # the difference moved: so may the share
    assert fooled(moved(0.002, 0.6))  # more than the difference's change allows
    assert fooled(moved(0.0, 0.05))  # the share moved alone


def test_a_tolerance_rerun_whose_change_never_reached_the_kernel_is_refused():
    from movierec import tolerance

    run = {"provenance": {"mkl_cbwr": "AVX2", "cpu_capability": "AVX2", "torch_threads": 2}}
    for change in ({"MKL_CBWR": "COMPATIBLE"}, {"ATEN_CPU_CAPABILITY": "default"},
                   {"THREADS": 1}):
        with pytest.raises(RuntimeError, match="did not reach the kernel"):
            tolerance.check_took_effect(change, run)
    took = {"provenance": {"mkl_cbwr": "COMPATIBLE", "cpu_capability": "DEFAULT",
                           "torch_threads": 1}}
    for env, params in tolerance.RERUNS.values():
        tolerance.check_took_effect({**env, **params}, took)


def test_the_new_movie_studys_figures_are_bounded_by_its_own_users():
    """A flip moves a cold-task figure by 1 / its window's cold users, a mixed-task figure by
    1 / that task's users: three flips pass, more fail, each against its own count."""
    def moved(path, by):
        def change(r):
            tree = r
            for key in path[:-1]:
                tree = tree[int(key)] if isinstance(tree, list) else tree[key]
            tree[path[-1]] += by
        return change

    cases = ((("coldstart", "cold", "main", "ndcg@10"), 40),
             (("coldstart", "cold", "main", "val_ndcg@10"), 20),
             (("coldstart", "mixed", "test", "0", "warm ndcg@10"), 60),
             (("coldstart", "mixed", "test", "0", "new_in_top"), 60))
    for path, users in cases:
        assert not fooled(moved(path, 2.9 / users)), path
        assert fooled(moved(path, 3.5 / users)), path
