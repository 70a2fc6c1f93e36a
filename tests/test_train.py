"""The training engine: fitting, early stopping, checkpoints and resume, reproducibility, the
row-wise optimiser, devices and threads."""

import subprocess
import sys

import pytest
import torch

from movierec.evaluate import RATING_SCALE, GlobalMean, rmse_mae
from movierec.model import MovieRecModel
from movierec.protocol import run
from movierec.runtime import resolve_device, set_threads
from movierec.split import TEST, TRAIN
from movierec.tensors import Ratings
from movierec.train import (
    fit,
    load_checkpoint,
    model_from_checkpoint,
    predict,
    rating_errors,
)
from movierec.variants import model_config, validation

from .conftest import spec, train_config


def test_tiny_model_overfits_training_data(tiny_exp):
    cfg = model_config(tiny_exp, dim=16, encoder="hybrid", score="cosine_bias")
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    train = tiny_exp.train
    before = rating_errors(predict(model, tiny_exp.feats, train), train.ratings)["rmse"]
    res = fit(model, tiny_exp.feats, train, train_config(epochs=40, lr=0.03),
              lambda m: {"train_rmse": rating_errors(predict(m, tiny_exp.feats, train),
                                                     train.ratings)["rmse"]},
              seed=3, monitor="train_rmse")
    after = res.history["train_rmse"].min()
    assert after < 0.5 * before and after < 0.5


def test_predictions_are_clipped_to_the_rating_scale_as_every_baselines(tiny_exp):
    cfg = model_config(tiny_exp, dim=8, encoder="hybrid", score="cosine_bias")
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    val = tiny_exp.val
    with torch.no_grad():
        for shift, bound in ((10.0, RATING_SCALE[1]), (-20.0, RATING_SCALE[0])):
            model.head.movie_biases.weight += shift
            assert (predict(model, tiny_exp.feats, val) == bound).all()
    # the loss reads the model's own, unclipped prediction (clipping would stop its gradient)
    u, m = val.users[:5], val.movies[:5]
    pair = model.predict(u, model.user(u), m, model.all_movie_vectors(tiny_exp.feats)[m])
    assert (pair < RATING_SCALE[0] - 1).all()


def test_planted_structure_is_learned_beyond_global_mean(tiny_exp):
    res = run(tiny_exp, spec("hybrid", dim=16, epochs=15), seed=3)
    u, m, r = tiny_exp.prep.part(TEST)
    baseline = rmse_mae(GlobalMean().fit(*tiny_exp.prep.part(TRAIN)).predict(u, m), r)["rmse"]
    assert res.rating["test_rmse"] < 0.95 * baseline


def test_same_seed_same_result_and_different_seed_differs(tiny_exp):
    a, b = (run(tiny_exp, spec("seed"), seed=3) for _ in range(2))
    c = run(tiny_exp, spec("seed"), seed=4)

    def history(r):
        return r.trial.tuned["fit"].history.drop(columns="seconds")

    assert history(a).equals(history(b))
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                  strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not history(a)["val_rmse"].equals(history(c)["val_rmse"])


TRAIN_IN_A_FRESH_PROCESS = """
import hashlib, sys, torch
from movierec.data import load_movielens
from movierec.experiment import Experiment
from movierec.prepare import prepare
from movierec.protocol import run
from movierec.train import TrainConfig
from movierec.variants import VariantSpec, variant
exp = Experiment(prepare(load_movielens(sys.argv[1])), torch.device("cpu"))
train = TrainConfig(epochs=2, batch_size=2048, lr=0.01, dense_lr=0.003, patience=3,
                    n_negatives=256, progress=False)
main = {"rank_weight": 1.0, "temperature": 0.3, "reg": 0.02, "min_positive": 4.0,
        "lr": 0.01, "dense_lr": 0.003, "n_negatives": 256, "dim": 32}
res = run(exp, VariantSpec(variant("hybrid_rank"), train, 32,
                           axes={k: (v,) for k, v in main.items()}), seed=5)
digest = hashlib.sha256()
for value in res.model.state_dict().values():
    digest.update(value.numpy().tobytes())
metrics = {**res.rating, **res.ranking}  # not timings
print(digest.hexdigest(), sorted((k, float(v).hex()) for k, v in metrics.items()))
"""


def test_two_processes_train_to_bit_identical_results(tiny_dir):
    """What a rerun of ``make small`` relies on: a new process, same seed, same data -> the
    same weights and metrics, bit for bit (float.hex), on CPU."""
    runs = [subprocess.run([sys.executable, "-c", TRAIN_IN_A_FRESH_PROCESS, str(tiny_dir)],
                           capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and "test_rmse" in runs[0]


def test_checkpoint_round_trip_and_resume_equals_uninterrupted(tiny_exp, tmp_path):
    cfg_model = model_config(tiny_exp, dim=8, encoder="hybrid", score="cosine_bias")
    evaluate = validation(tiny_exp, "val_rmse")

    def fit_for(epochs, ckpt, resume=False):
        model = MovieRecModel(cfg_model, torch.Generator().manual_seed(0))
        return fit(model, tiny_exp.feats, tiny_exp.train, train_config(epochs=epochs),
                   evaluate, seed=3, checkpoint=ckpt, resume=resume)

    full = fit_for(4, tmp_path / "full.pt")
    fit_for(2, tmp_path / "part.pt")  # "killed" after epoch 2
    resumed = fit_for(4, tmp_path / "part.pt", resume=True)
    assert full.history.drop(columns="seconds").equals(resumed.history.drop(columns="seconds"))
    state = load_checkpoint(tmp_path / "full.pt")
    assert state["epoch"] == 3 and state["model_config"]["encoder"] == "hybrid"
    restored = model_from_checkpoint(state)
    pred_a = predict(restored, tiny_exp.feats, tiny_exp.val)
    last = MovieRecModel(cfg_model)
    last.load_state_dict(state["model"])
    torch.testing.assert_close(pred_a, predict(last, tiny_exp.feats, tiny_exp.val))
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_exp, tmp_path):
    cfg_model = model_config(tiny_exp, dim=8, encoder="hybrid", score="cosine_bias")
    ckpt = tmp_path / "ckpt.pt"
    fit(MovieRecModel(cfg_model), tiny_exp.feats, tiny_exp.train, train_config(epochs=1),
        None, seed=3, monitor=None, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"ckpt.pt was written with other settings.*seed"):
        fit(MovieRecModel(cfg_model), tiny_exp.feats, tiny_exp.train,
            train_config(epochs=2), None, seed=9, monitor=None, checkpoint=ckpt, resume=True)


def test_killed_mid_epoch_resumes_to_the_same_result(tiny_exp, tmp_path):
    cfg_model = model_config(tiny_exp, dim=8, encoder="content", score="cosine")
    evaluate = validation(tiny_exp, "val_rmse")
    calls = {"n": 0}

    def dies_in_epoch_3(model):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")  # after epoch 3's batches, before its checkpoint
        return evaluate(model)

    def new_model():
        return MovieRecModel(cfg_model, torch.Generator().manual_seed(0))

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(new_model(), tiny_exp.feats, tiny_exp.train, train_config(epochs=4),
            dies_in_epoch_3, seed=3, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 1  # the last complete epoch (0-based)
    resumed = fit(new_model(), tiny_exp.feats, tiny_exp.train, train_config(epochs=4), evaluate,
                  seed=3, checkpoint=ckpt, resume=True)
    clean = fit(new_model(), tiny_exp.feats, tiny_exp.train, train_config(epochs=4), evaluate,
                seed=3)
    assert resumed.history.drop(columns="seconds").equals(clean.history.drop(columns="seconds"))
    for a, b in zip(resumed.model.state_dict().values(), clean.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_variant_checkpoints_hold_vocabularies_and_resume(tiny_exp, tmp_path, monkeypatch):
    import dataclasses

    from movierec import train

    s = dataclasses.replace(spec("hybrid", epochs=2), checkpoint_dir=tmp_path)
    a = run(tiny_exp, s, seed=3)
    tag = "".join(f"-{k}={v}" for k, v in a.setting.items())  # the setting names the file
    state = load_checkpoint(tmp_path / f"hybrid{tag}-seed3-tune.pt")
    assert state["meta"]["tag_vocab"] == tiny_exp.prep.features.tag_vocab
    assert state["meta"]["movie_ids"].tolist() == tiny_exp.prep.features.movie_ids.tolist()
    assert load_checkpoint(tmp_path / f"hybrid{tag}-seed3-refit.pt")["meta"]["refit"] is True
    epochs = []
    original = train.train_epoch

    def counted(*args, **kwargs):
        epochs.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", counted)
    b = run(tiny_exp, s, seed=3)  # both trainings resumed whole from their checkpoints
    assert epochs == [] and a.rating == b.rating and a.ranking == b.ranking
    run(tiny_exp, s, seed=4)  # another seed: its own checkpoints, trained, not the first's
    assert (tmp_path / f"hybrid{tag}-seed4-tune.pt").exists() and len(epochs) >= 2


def test_fit_without_monitor_runs_all_epochs_and_keeps_last(tiny_exp):
    cfg = model_config(tiny_exp, dim=8, encoder="id", score="dot_bias")
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    res = fit(model, tiny_exp.feats, tiny_exp.train_val, train_config(epochs=3), None,
              seed=3, monitor=None)
    assert res.history["epoch"].tolist() == [1, 2, 3] and res.best_epoch == 3


def test_an_epoch_trains_every_row_once_the_last_short_batch_included(tiny_exp, monkeypatch):
    """Every training row is in exactly one batch of an epoch (the last, short one included),
    with its rating as a float: half stars reach the loss (the seed cast them to int)."""
    from movierec import train

    batches = []
    original = train.train_step

    def seen(model, feats, batch, *args):
        batches.append(batch)
        return original(model, feats, batch, *args)

    monkeypatch.setattr(train, "train_step", seen)
    n = len(tiny_exp.train)
    res = run(tiny_exp, spec("seed", epochs=1, batch_size=n - 7), seed=3, refit=False)
    assert len(res.trial.tuned["fit"].history) == 1
    assert [len(b) for b in batches] == [n - 7, 7]  # the last batch: 7 rows
    rows = sorted(zip(torch.cat([b.users for b in batches]).tolist(),
                      torch.cat([b.movies for b in batches]).tolist(),
                      torch.cat([b.ratings for b in batches]).tolist(), strict=True))
    data = tiny_exp.train
    assert rows == sorted(zip(data.users.tolist(), data.movies.tolist(), data.ratings.tolist(),
                              strict=True))  # each row once, as it is
    ratings = torch.cat([b.ratings for b in batches])
    assert ratings.dtype == torch.float32 and bool((ratings * 2 % 2 == 1).any())  # half stars


def test_ratings_slice_and_gather_keep_rows_together():
    r = Ratings.from_arrays([0, 1, 2, 3], [5, 6, 7, 8], [3.5, 0.5, 4.0, 1.0], "cpu")
    assert r.users.dtype == torch.int64 and r.ratings.dtype == torch.float32
    part = r[1:3]
    assert part.users.tolist() == [1, 2] and part.movies.tolist() == [6, 7]
    picked = r[torch.tensor([3, 0])]
    assert (picked.users.tolist(), picked.movies.tolist(), picked.ratings.tolist()) == (
        [3, 0], [8, 5], [1.0, 3.5])


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(0) == 1  # 0 keeps the current count
        with pytest.raises(ValueError, match="threads must be >= 0"):
            set_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_resolve_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_row_adam_equals_sparse_adam():
    """RowAdam is SparseAdam's arithmetic on gathered rows: equal up to the order in which a
    row's repeated gradients are summed; two tables read by the same rows (a user's vector and
    bias) share one sort and update exactly as with an optimiser each."""
    from movierec.optim import RowAdam, summed_rows

    torch.manual_seed(0)
    a, b, c = (torch.nn.Embedding(500, 8, sparse=True) for _ in range(3))
    bias, bias_alone = (torch.nn.Embedding(500, 1, sparse=True) for _ in range(2))
    b.weight.data.copy_(a.weight.data)
    c.weight.data.copy_(a.weight.data)
    bias_alone.weight.data.copy_(bias.weight.data)
    bias_start = bias.weight.detach().clone()
    oa = torch.optim.SparseAdam([a.weight], lr=0.01)
    ob = RowAdam([b.weight, bias.weight], lr=0.01)
    oc = [RowAdam([c.weight], lr=0.01), RowAdam([bias_alone.weight], lr=0.01)]
    for _ in range(30):
        idx = torch.randint(500, (200,))  # repeated rows: the gradient is summed per row
        for emb, b_emb, opts in ((a, None, [oa]), (b, bias, [ob]), (c, bias_alone, oc)):
            for opt in opts:
                opt.zero_grad()
            loss = emb(idx).pow(3).sum() + emb(idx[:40]).sum()
            if b_emb is not None:
                loss = loss + b_emb(idx).pow(2).sum() + b_emb(idx[:40]).sum()
            loss.backward()
            for opt in opts:
                opt.step()
    torch.testing.assert_close(b.weight, a.weight, rtol=1e-5, atol=1e-6)
    for i, key in enumerate(("exp_avg", "exp_avg_sq")):
        torch.testing.assert_close(ob.state[b.weight]["moments"][:, i], oa.state[a.weight][key],
                                   rtol=1e-5, atol=1e-9)
    assert torch.equal(b.weight, c.weight) and torch.equal(bias.weight, bias_alone.weight)
    assert not torch.equal(bias.weight, bias_start)  # the bias trained
    resumed = RowAdam([c.weight], lr=0.01)  # from SparseAdam's state
    resumed.load_state_dict(oa.state_dict())
    a.weight.grad = c.weight.grad = None
    a(idx).pow(3).sum().backward()
    c.weight.data.copy_(a.weight.data)
    c.weight.grad = a.weight.grad.clone()
    resumed.step()  # first: the loaded state may share SparseAdam's tensors
    oa.step()
    torch.testing.assert_close(c.weight, a.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(resumed.state[c.weight]["moments"][:, 1],
                               oa.state[a.weight]["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    seen = []  # the vector's and the bias's gradients: one sort
    rows, summed = summed_rows(b.weight.grad, seen)
    rows_b, summed_b = summed_rows(bias.weight.grad, seen)
    assert len(seen) == 1 and torch.equal(rows, rows_b) and torch.equal(rows, idx.unique())
    torch.testing.assert_close(summed, b.weight.grad.coalesce()._values())
    torch.testing.assert_close(summed_b, bias.weight.grad.coalesce()._values())
    distinct = idx.unique()  # a table read once per distinct row: its gradient as it is
    b.weight.grad = None
    b(distinct).pow(2).sum().backward()
    rows, summed = summed_rows(b.weight.grad, seen := [])
    assert not seen and torch.equal(rows, distinct)  # no search for distinct rows
    assert summed.data_ptr() == b.weight.grad._values().data_ptr()  # no copy
    assert torch.equal(summed, b.weight.grad.coalesce()._values())


def test_low_rank_basis_is_orthonormal_and_exact_at_full_rank():
    import numpy as np

    from movierec.features import low_rank_basis

    rng = np.random.default_rng(0)
    x = rng.random((50, 3)) @ rng.random((3, 12))  # rank 3
    basis, kept = low_rank_basis(x, 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-5)
    assert kept == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(x @ basis @ basis.T, x, atol=1e-4)  # rank 3 loses nothing
    assert (basis[np.abs(basis).argmax(0), np.arange(3)] > 0).all()  # sign convention
    _, kept1 = low_rank_basis(x, 1)
    assert 0 < kept1 < 1
    with pytest.raises(ValueError, match=r"rank must be in 1\.\.12"):
        low_rank_basis(x, 13)
