import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from movierec.csr import Csr
from movierec.data import load_movielens
from movierec.evaluate import GlobalMean, rmse_mae
from movierec.experiment import VARIANTS, Experiment, train_variant
from movierec.features import MovieFeatures
from movierec.loss import batch_loss
from movierec.model import FeatureTensors, ModelConfig, MovieRecModel
from movierec.prepare import prepare
from movierec.split import TEST, TRAIN
from movierec.train import (
    Ratings,
    TrainConfig,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    predict,
    rating_errors,
    resolve_device,
    set_threads,
)


def toy_features(genome: bool = True) -> MovieFeatures:
    """4 movies: tags with duplicates of different list lengths, one movie without genome."""
    tags = Csr(offsets=np.array([0, 2, 3, 4, 5]), indices=np.array([1, 2, 1, 0, 3]),
                weights=np.array([0.75, 0.25, 1, 1, 1], np.float32))
    genres = Csr(offsets=np.array([0, 1, 3, 4, 5]), indices=np.array([1, 2, 3, 0, 5]),
                  weights=np.array([1, 0.5, 0.5, 1, 1], np.float32))
    g = np.random.default_rng(0).random((4, 6)).astype(np.float32) if genome else None
    mask = np.array([True, True, False, True]) if genome else None
    if genome:
        g[2] = 0
    vocab = ["<no tag>", "a", "b", "c"]
    return MovieFeatures(np.array([1, 2, 3, 4], np.int32), genres, tags, vocab, g, mask,
                         [f"t{i}" for i in range(6)] if genome else None)


def toy_model(encoder="content", score="cosine", genome=True) -> MovieRecModel:
    cfg = ModelConfig(n_users=3, n_movies=4, n_tags=4, n_genres=20,
                      n_genome_tags=6 if genome else 0, dim=8, encoder=encoder, score=score)
    return MovieRecModel(cfg, torch.Generator().manual_seed(0))


def test_movie_embedding_independent_of_batch_composition():
    model, feats = toy_model(), FeatureTensors(toy_features())
    alone = model.encode_movies(torch.tensor([2]), feats)
    mixed = model.encode_movies(torch.tensor([0, 2, 1, 3]), feats)
    torch.testing.assert_close(alone[0], mixed[1])


def test_duplicate_tags_equal_weighted_bag():
    """A movie tagged (a, a, a, b) equals one whose bag is (a: 0.75, b: 0.25)."""
    model = toy_model(genome=False)
    f = toy_features(genome=False)
    dup = dataclasses.replace(f, tags=Csr(np.array([0, 4, 5, 6, 7]),
                                           np.array([1, 1, 1, 2, 1, 0, 3]),
                                           np.array([0.25] * 4 + [1, 1, 1], np.float32)))
    rows = torch.tensor([0])
    torch.testing.assert_close(model.encode_movies(rows, FeatureTensors(f)),
                               model.encode_movies(rows, FeatureTensors(dup)))


def test_cosine_prediction_spans_rating_scale():
    model, feats = toy_model(), FeatureTensors(toy_features())
    users, movies = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 3])
    pred = model(users, movies, feats)
    assert ((pred >= 0.5) & (pred <= 5.0)).all()
    u, m = model.user(users), model.encode_movies(movies, feats)
    cos = torch.nn.functional.cosine_similarity(u, m)
    torch.testing.assert_close(pred, 2.75 + 2.25 * cos)


def test_genome_tag_one_learns_and_batch_without_genome_movie_works():
    model, feats = toy_model(), FeatureTensors(toy_features())
    pred = model(torch.tensor([0]), torch.tensor([0]), feats)
    pred.sum().backward()
    assert model.content.genome_tag.grad[0].abs().sum() > 0  # tag 1 is not padding
    model.zero_grad()
    pred = model(torch.tensor([1]), torch.tensor([2]), feats)  # only a no-genome movie
    pred.sum().backward()
    content = model.content
    assert content.genome_tag.grad.abs().sum() == 0 and content.no_genome.grad.abs().sum() > 0


def test_hybrid_unseen_movie_is_encoded_by_content():
    model, feats = toy_model("hybrid", "cosine_bias"), FeatureTensors(toy_features())
    rows = torch.tensor([3])
    torch.testing.assert_close(model.encode_movies(rows, feats),
                               model.encode_movies(rows, feats, use_id=False))


@pytest.fixture(scope="module")
def tiny_exp(tiny_dir):
    return Experiment(prepare(load_movielens(tiny_dir)), resolve_device("cpu"))


def quick_config(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 256, "progress": False, "patience": 10, "seed": 3}
    return TrainConfig(**{**base, **kw})


def test_tiny_model_overfits_training_data(tiny_exp):
    cfg = tiny_exp.model_config(dim=16, encoder="hybrid", score="cosine_bias")
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    train = tiny_exp.train
    before = rating_errors(predict(model, tiny_exp.feats, train), train.ratings)["rmse"]
    res = fit(model, tiny_exp.feats, train, quick_config(epochs=40, lr=0.03),
              lambda m: {"train_rmse": rating_errors(predict(m, tiny_exp.feats, train),
                                                     train.ratings)["rmse"]},
              monitor="train_rmse")
    after = res.history["train_rmse"].min()
    assert after < 0.5 * before and after < 0.5


def test_planted_structure_is_learned_beyond_global_mean(tiny_exp):
    res = train_variant(tiny_exp, "hybrid", quick_config(epochs=15, lr=0.01), dim=16)
    u, m, r = tiny_exp.prep.part(TEST)
    baseline = rmse_mae(GlobalMean().fit(*tiny_exp.prep.part(TRAIN)).predict(u, m), r)["rmse"]
    assert res.rating["test_rmse"] < 0.95 * baseline


def test_same_seed_same_result_and_different_seed_differs(tiny_exp):
    a = train_variant(tiny_exp, "seed", quick_config())
    b = train_variant(tiny_exp, "seed", quick_config())
    c = train_variant(tiny_exp, "seed", quick_config(seed=4))
    assert a.fit.history.drop(columns="seconds").equals(b.fit.history.drop(columns="seconds"))
    for (ka, va), (kb, vb) in zip(a.fit.model.state_dict().items(),
                                  b.fit.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not a.fit.history["val_rmse"].equals(c.fit.history["val_rmse"])


@pytest.mark.parametrize("variant", ["hybrid", "hybrid_rank"])
def test_gradients_bit_identical_with_several_threads(tiny_exp, variant):
    """One large batch's gradients, computed five times with >= 2 threads, are bit-identical
    (the backward of ``tensor[index]`` accumulated duplicates in a thread-dependent order)."""
    spec = VARIANTS[variant]
    mcfg = spec.model_config(tiny_exp, 64)
    cfg = spec.train_config(quick_config())
    train = tiny_exp.train
    negatives = (torch.randint(tiny_exp.feats.n_movies, (256,),
                               generator=torch.Generator().manual_seed(1))
                 if "softmax" in cfg.loss else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        digests = set()
        for _ in range(5):
            model = MovieRecModel(mcfg, torch.Generator().manual_seed(0))
            batch_loss(model, tiny_exp.feats, train.users, train.movies, train.ratings, cfg,
                       negatives).backward()
            digests.add(tuple(
                (p.grad.coalesce().to_dense() if p.grad.is_sparse else p.grad).numpy().tobytes()
                for p in model.parameters() if p.grad is not None))
    finally:
        torch.set_num_threads(threads)
    assert len(digests) == 1


TRAIN_IN_A_FRESH_PROCESS = """
import hashlib, sys, torch
from movierec.data import load_movielens
from movierec.experiment import Experiment, train_variant
from movierec.prepare import prepare
from movierec.train import TrainConfig
exp = Experiment(prepare(load_movielens(sys.argv[1])), torch.device("cpu"))
res = train_variant(exp, "hybrid_rank", TrainConfig(epochs=2, batch_size=2048, n_negatives=256,
                                                   progress=False, seed=5), dim=32)
digest = hashlib.sha256()
for value in res.fit.model.state_dict().values():
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
    cfg_model = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias")
    evaluate = tiny_exp.validation("val_rmse")

    def run(epochs, ckpt, resume=False, model=None):
        model = model or MovieRecModel(cfg_model, torch.Generator().manual_seed(0))
        return fit(model, tiny_exp.feats, tiny_exp.train, quick_config(epochs=epochs),
                   evaluate, checkpoint=ckpt, resume=resume)

    full = run(4, tmp_path / "full.pt")
    run(2, tmp_path / "part.pt")  # "killed" after epoch 2
    resumed = run(4, tmp_path / "part.pt", resume=True)
    assert full.history.drop(columns="seconds").equals(resumed.history.drop(columns="seconds"))
    state = load_checkpoint(tmp_path / "full.pt")
    assert state["epoch"] == 3 and state["model_config"]["encoder"] == "hybrid"
    restored = model_from_checkpoint(state)
    pred_a = predict(restored, tiny_exp.feats, tiny_exp.val)
    last = MovieRecModel(cfg_model)
    last.load_state_dict(state["model"])
    torch.testing.assert_close(pred_a, predict(last, tiny_exp.feats, tiny_exp.val))
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files


def test_killed_mid_epoch_resumes_to_the_same_result(tiny_exp, tmp_path):
    cfg_model = tiny_exp.model_config(dim=8, encoder="content", score="cosine")
    evaluate = tiny_exp.validation("val_rmse")
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
        fit(new_model(), tiny_exp.feats, tiny_exp.train, quick_config(epochs=4), dies_in_epoch_3,
            checkpoint=ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 1  # the last complete epoch (0-based)
    resumed = fit(new_model(), tiny_exp.feats, tiny_exp.train, quick_config(epochs=4), evaluate,
                  checkpoint=ckpt, resume=True)
    clean = fit(new_model(), tiny_exp.feats, tiny_exp.train, quick_config(epochs=4), evaluate)
    assert resumed.history.drop(columns="seconds").equals(clean.history.drop(columns="seconds"))
    for a, b in zip(resumed.model.state_dict().values(), clean.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(0) == 1  # 0 keeps the current count
        with pytest.raises(ValueError, match="threads must be >= 0"):
            set_threads(-1)
    finally:
        torch.set_num_threads(before)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}


def test_last_short_batch_and_ratings_are_floats(tiny_exp):
    n = len(tiny_exp.train)
    cfg = quick_config(epochs=1, batch_size=n - 7)  # second batch has 7 rows
    res = train_variant(tiny_exp, "seed", cfg)
    assert len(res.fit.history) == 1
    assert tiny_exp.train.ratings.dtype == torch.float32
    assert (tiny_exp.train.ratings * 2 % 2 == 1).any()  # half stars survive


def test_ratings_container():
    r = Ratings.from_arrays([0, 1], [1, 0], [3.5, 0.5], "cpu")
    assert len(r) == 2 and r.ratings.tolist() == [3.5, 0.5]


def test_recent_items_are_the_latest_per_user(tiny_exp):
    prep = tiny_exp.prep
    hist = prep.recent_items(3, TRAIN)
    assert hist.shape == (prep.n_users, 3)
    for row in (0, 7, prep.n_users - 1):
        mask = (prep.users == row) & (prep.split.labels == TRAIN)
        rows = np.flatnonzero(mask)
        rows = rows[np.argsort(prep.timestamps[rows], kind="stable")][-3:]
        want = prep.items[rows].tolist()
        assert hist[row, 3 - len(want):].tolist() == want
        assert (hist[row, :3 - len(want)] == prep.n_movies).all()


def test_user_history_term_changes_user_vectors_and_pads_to_zero(tiny_exp):
    cfg = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias", user_history=4)
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    users = torch.arange(5)
    # no history yet: every slot is padding, so the vectors are the id vectors
    torch.testing.assert_close(model.user_vectors(users), model.user(users))
    model.set_history(tiny_exp.history_tensor(4, TRAIN))
    assert not torch.allclose(model.user_vectors(users), model.user(users))
    with pytest.raises(ValueError, match="no user-history term"):
        toy_model().set_history(torch.zeros(3, 1, dtype=torch.long))


def test_fit_without_monitor_runs_all_epochs_and_keeps_last(tiny_exp):
    cfg = tiny_exp.model_config(dim=8, encoder="id", score="dot_bias")
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    res = fit(model, tiny_exp.feats, tiny_exp.train_val, quick_config(epochs=3), None,
              monitor=None)
    assert res.history["epoch"].tolist() == [1, 2, 3] and res.best_epoch == 3


def test_refit_variant_reports_val_from_first_fit_and_test_from_refit(tiny_exp):
    cfg = quick_config(epochs=3)
    a = train_variant(tiny_exp, "hybrid_rank", cfg, dim=8, refit=True, ks=(5,))
    b = train_variant(tiny_exp, "hybrid_rank", cfg, dim=8, refit=False, ks=(5,))
    assert a.rating["val_rmse"] == b.rating["val_rmse"]  # the same tuning run
    # test metrics come from the returned model, and with refit that model has learned from val:
    # a movie rated in val but never in train has a movie bias only in the refit model
    for r in (a, b):
        got = rating_errors(predict(r.fit.model, tiny_exp.feats, tiny_exp.test),
                            tiny_exp.test.ratings)["rmse"]
        assert got == r.rating["test_rmse"]
    val_only = np.setdiff1d(tiny_exp.val.movies.numpy(), tiny_exp.train.movies.numpy())
    assert len(val_only) > 0
    assert (a.fit.model.head.movie_bias.weight[val_only] != 0).all()
    assert (b.fit.model.head.movie_bias.weight[val_only] == 0).all()
    assert 0 <= a.ranking["recall@5"] <= 1 and "val_recall@10" in a.fit.history


def test_softmax_positive_filter_ignores_low_ratings(tiny_exp):
    from movierec.loss import batch_loss

    cfg_m = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias", prior=True)
    model = MovieRecModel(cfg_m, torch.Generator().manual_seed(0))
    users, movies = torch.tensor([0, 1]), torch.tensor([2, 3])
    negs = torch.tensor([5, 6, 7])
    cfg = quick_config(loss="softmax", min_positive=3.5)
    low, high = torch.tensor([1.0, 5.0]), torch.tensor([5.0, 5.0])
    only_second = batch_loss(model, tiny_exp.feats, users[1:], movies[1:], high[1:], cfg, negs)
    torch.testing.assert_close(batch_loss(model, tiny_exp.feats, users, movies, low, cfg, negs),
                               only_second)
    assert not torch.allclose(batch_loss(model, tiny_exp.feats, users, movies, high, cfg, negs),
                              only_second)


def test_variant_checkpoints_hold_vocabularies_and_resume(tiny_exp, tmp_path):
    cfg = quick_config(epochs=2)
    a = train_variant(tiny_exp, "hybrid", cfg, dim=8, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path / "hybrid.pt")
    assert state["meta"]["tag_vocab"] == tiny_exp.prep.features.tag_vocab
    assert state["meta"]["movie_ids"].tolist() == tiny_exp.prep.features.movie_ids.tolist()
    assert load_checkpoint(tmp_path / "hybrid-refit.pt")["meta"]["refit"] is True
    b = train_variant(tiny_exp, "hybrid", cfg, dim=8, checkpoint_dir=tmp_path)  # resumes
    assert a.rating["test_rmse"] == b.rating["test_rmse"]


def test_prior_starts_at_centred_log_popularity(tiny_exp):
    cfg = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias", prior=True)
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    counts = tiny_exp.positive_counts(tiny_exp.train, 3.5)
    assert counts.sum() == (tiny_exp.train.ratings >= 3.5).sum()
    model.init_prior(counts)
    prior = model.movie_prior.weight.squeeze(1)
    assert abs(float(prior.detach().mean())) < 1e-5
    order = torch.argsort(counts)
    assert (prior[order].diff() >= -1e-6).all()  # monotone in popularity
    with pytest.raises(ValueError, match="no retrieval prior"):
        toy_model().init_prior(counts)


def test_checkpoints_from_before_the_module_split_still_load(tiny_exp):
    from movierec.model import LEGACY_KEYS

    cfg = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias", prior=True)
    assert cfg.n_genome_tags > 0
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    old_names = {new: old for old, new in LEGACY_KEYS.items()}
    legacy = {old_names.get(k, k): v.clone() for k, v in model.state_dict().items()}
    assert "tag.weight" in legacy and "head.scale" not in legacy  # as written before
    fresh = MovieRecModel(cfg, torch.Generator().manual_seed(1))
    fresh.load_state_dict(legacy)
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_never_rated_movies_are_scored_by_content_alone_in_the_main_model(tiny_exp):
    """Catalogue negatives reach every movie, but a movie the training data never rates keeps
    a zero id vector and its initial prior: its vector is its content encoding."""
    r = train_variant(tiny_exp, "hybrid_rank", quick_config(epochs=3), dim=8, refit=False,
                      test=False)
    model = r.model
    rated = torch.bincount(tiny_exp.train.movies, minlength=tiny_exp.prep.n_movies) > 0
    unseen = torch.nonzero(~rated).squeeze(1)
    assert len(unseen) > 0 and bool((model.seen == rated).all())
    assert bool((model.movie.weight[unseen] == 0).all())
    assert bool((model.movie.weight[rated].abs().sum(1) > 0).any())  # seen ones did train
    start = torch.log1p(tiny_exp.positive_counts(tiny_exp.train, 3.5).float())
    start = start - start.mean()
    torch.testing.assert_close(model.prior(unseen), start[unseen], rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_movies(unseen, tiny_exp.feats),
                                   model.content(unseen, tiny_exp.feats))


def test_checkpoints_from_before_the_seen_mask_load_with_every_movie_seen(tiny_exp):
    cfg = tiny_exp.model_config(dim=8, encoder="hybrid", score="cosine_bias", prior=True)
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    old = {k: v for k, v in model.state_dict().items() if k != "seen"}
    fresh = MovieRecModel(cfg)
    fresh.seen.zero_()
    fresh.load_state_dict(old)
    assert bool(fresh.seen.all())


def test_sweep_reads_val_only_and_picks_the_best_val_ndcg(tiny_exp, monkeypatch):
    from movierec import experiment, study

    reads = []
    original = experiment.Experiment.ranking

    def spy(self, vectors, part=experiment.TEST, ks=(10, 20, 50)):
        reads.append(part)
        return original(self, vectors, part, ks)

    monkeypatch.setattr(experiment.Experiment, "ranking", spy)
    table, chosen, runs = study.sweep_rank_weight(
        tiny_exp, "hybrid_rank", quick_config(epochs=2), [0.1, 1.0], dim=8)
    assert experiment.TEST not in reads and reads
    assert table.rank_weight.tolist() == [0.1, 1.0]
    assert chosen == table.rank_weight[table["val_ndcg@10"].idxmax()]
    assert sorted(runs) == [0.1, 1.0] and all(not r.ranking for r in runs.values())


def test_a_tuned_run_is_reused_as_if_trained_again(tiny_exp):
    cfg = dataclasses.replace(quick_config(epochs=2), rank_weight=1.0)
    tuned = train_variant(tiny_exp, "hybrid_rank", cfg, dim=8, test=False)
    reused = train_variant(tiny_exp, "hybrid_rank", cfg, dim=8, tuned=tuned)
    fresh = train_variant(tiny_exp, "hybrid_rank", cfg, dim=8)
    assert reused.rating == fresh.rating and reused.ranking == fresh.ranking
    assert reused.readout == fresh.readout and not tuned.ranking  # the tuned run is untouched
    with pytest.raises(ValueError, match="other settings"):
        train_variant(tiny_exp, "hybrid_rank", dataclasses.replace(cfg, rank_weight=0.5), dim=8,
                      tuned=tuned)


def test_scoring_rule_takes_the_better_val_ndcg(tiny_exp):
    from movierec.experiment import choose_scoring

    r = train_variant(tiny_exp, "mf", quick_config(epochs=2), dim=8, ks=(5,))
    by, val = choose_scoring(tiny_exp, r.fit.model)
    assert set(val) == {"cosine", "rating"} and val[by] == max(val.values())
    assert set(r.ranking_by) == {"cosine", "rating"} and r.ranking == r.ranking_by[r.by]


def test_calibrated_readout_is_chosen_on_val_and_never_worse_than_its_biases(tiny_exp):
    from movierec.evaluate import BiasBaseline
    from movierec.experiment import READOUT_SCALES, calibrate_readout, pair_cosines

    r = train_variant(tiny_exp, "hybrid_rank", quick_config(epochs=2), dim=8, refit=False,
                      test=False)
    assert set(r.readout) == {"damping", "scale"} and r.readout["scale"] in READOUT_SCALES
    got = rating_errors(predict(r.model, tiny_exp.feats, tiny_exp.val),
                        tiny_exp.val.ratings)["rmse"]
    assert got == pytest.approx(r.rating["val_rmse"])
    b = BiasBaseline(tiny_exp.prep.n_users, tiny_exp.prep.n_movies,
                     reg_user=r.readout["damping"], reg_movie=r.readout["damping"])
    b.fit(*tiny_exp.prep.part(TRAIN))
    u, m = tiny_exp.val.users.numpy(), tiny_exp.val.movies.numpy()
    biases_only = rmse_mae(b.mean + b.user_bias[u] + b.movie_bias[m],
                           tiny_exp.val.ratings.numpy())["rmse"]
    assert got <= biases_only + 1e-6
    # the prediction is exactly mu + b_u + b_m + scale * cos
    cos = pair_cosines(r.model, tiny_exp.feats, tiny_exp.val)
    want = b.mean + b.user_bias[u] + b.movie_bias[m] + r.readout["scale"] * cos
    np.testing.assert_allclose(predict(r.model, tiny_exp.feats, tiny_exp.val).numpy(), want,
                               rtol=1e-5, atol=1e-5)
    # applying a setting (the refit) does not choose again
    assert calibrate_readout(tiny_exp, r.model, (TRAIN,), {"damping": 5.0, "scale": 0.0}) == {
        "damping": 5.0, "scale": 0.0}
    assert float(r.model.head.scale.detach()) == 0.0


# ---- speed: fixed low-rank feature bases, RowAdam ----


def test_low_rank_basis_is_orthonormal_and_exact_at_full_rank():
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


def test_low_rank_encoder_is_its_basis_times_coefficients():
    """With ranks, the tag/genome blocks equal the exact encoder whose tables are
    basis @ coef, and the explanation of a score still adds up."""
    f = toy_features()
    low = FeatureTensors(f, tag_rank=2, genome_rank=3)
    assert low.rank("tag") == 2 and low.rank("genome") == 3 and set(low.kept) == {"tag", "genome"}
    cfg = ModelConfig(n_users=3, n_movies=4, n_tags=4, n_genres=20, n_genome_tags=6, dim=8,
                      tag_rank=2, genome_rank=3)
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    model.content.set_bases(low)
    exact = toy_model()
    with torch.no_grad():
        exact.content.tag.weight.copy_(model.content.table("tag"))
        exact.content.genome_tag.copy_(model.content.table("genome"))
        exact.content.genre.weight.copy_(model.content.genre.weight)
        exact.content.no_genome.copy_(model.content.no_genome)
        exact.content.proj.load_state_dict(model.content.proj.state_dict())
    rows = torch.arange(4)
    torch.testing.assert_close(model.encode_movies(rows, low),
                               exact.encode_movies(rows, FeatureTensors(f)), atol=1e-5, rtol=1e-5)
    d = torch.randn(8)
    parts = model.content.contributions(0, low, d, genome_top=6)
    total = sum(c for *_, c in parts)
    with torch.no_grad():
        direct = (model.encode_movies(torch.tensor([0]), low)[0] - model.content.proj.bias) @ d
    assert total == pytest.approx(float(direct), abs=1e-4)
    again = FeatureTensors(f, bases=model.content.bases())  # as a saved model rebuilds them
    torch.testing.assert_close(model.encode_movies(rows, again), model.encode_movies(rows, low))
    with pytest.raises(ValueError, match="tag block has rank 2, the features 0"):
        model.content.set_bases(FeatureTensors(f))


def test_fused_encoder_equals_the_block_wise_one():
    """With every block projected the encoder is one matmul on the side-by-side inputs: the
    same vectors and gradients as the block-wise forward (with and without a genome)."""
    for genome in (True, False):
        f = toy_features()
        if not genome:
            f.genome = f.genome_mask = f.genome_tags = None
        low = FeatureTensors(f, tag_rank=2, genome_rank=3 if genome else 0)
        assert low.inputs is not None and low.inputs.shape[1] == 2 + low.genre_width + 4 * genome
        cfg = ModelConfig(n_users=3, n_movies=4, n_tags=4, n_genres=20,
                          n_genome_tags=6 if genome else 0, dim=8, tag_rank=2,
                          genome_rank=3 if genome else 0)
        model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
        assert model.content.fused(low)
        rows = torch.tensor([3, 0, 2, 0])
        fused = model.encode_movies(rows, low)
        fused.pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.content.parameters()]
        model.zero_grad()
        low.inputs = None  # the block-wise forward
        assert not model.content.fused(low)
        blocks = model.encode_movies(rows, low)
        blocks.pow(2).sum().backward()
        torch.testing.assert_close(fused, blocks, atol=1e-6, rtol=1e-5)
        for g, p in zip(grads, model.content.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-5)


def test_row_adam_equals_sparse_adam():
    """RowAdam is SparseAdam's arithmetic on gathered rows: equal up to the order in which a
    row's repeated gradients are summed; two tables read by the same rows (a user's vector and
    bias) share one sort and update exactly as with an optimiser each."""
    from movierec.train import RowAdam, summed_rows

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


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_unique_indices_equals_torch_unique(size):
    from movierec.model import unique_indices

    g = torch.Generator().manual_seed(size)
    for n in (0, 1, 5, 300):
        index = torch.randint(size, (n,), generator=g)
        for got, expected in zip(unique_indices(index, size),
                                 torch.unique(index, return_inverse=True), strict=True):
            assert torch.equal(got, expected)
    with pytest.raises(IndexError):
        unique_indices(torch.tensor([0, size]), size)


def test_test_users_sample_is_seeded_and_consistent(tiny_dir):
    prep = prepare(load_movielens(tiny_dir))
    full = Experiment(prep, resolve_device("cpu"))
    a, b = (Experiment(prep, resolve_device("cpu"), max_test_users=20) for _ in range(2))
    assert len(a.test_users) == 20 and np.array_equal(a.test_users, b.test_users)
    assert set(a.test_users) <= set(full.test_users)
    i = np.searchsorted(full.test_users, a.test_users[3])
    assert np.array_equal(a.test_relevant.row(3), full.test_relevant.row(i))
    assert np.array_equal(a.test_history.row(3), full.test_history.row(i))


def test_unknown_names_list_the_known_ones():
    from movierec import baselines, experiment

    with pytest.raises(ValueError, match=r"unknown model variant 'nope'; known: .*'mf'"):
        experiment.variant("nope")
    with pytest.raises(ValueError, match=r"unknown baseline 'nope'; known: .*'ease'"):
        baselines.baseline("nope")


@pytest.mark.parametrize("prior", [False, True])
def test_bounded_softmax_equals_the_plain_one(prior):
    """The training step's softmax (logits in factors, less a constant bound, the prior as a
    row) is the sampled softmax of retrieval_logits, values and gradients, and the bound
    bounds every logit."""
    from movierec.loss import bounded_softmax, sampled_softmax

    cfg = ModelConfig(n_users=5, n_movies=30, n_tags=4, n_genres=20, dim=8, encoder="id",
                      score="cosine_bias", prior=prior)
    model = MovieRecModel(cfg, torch.Generator().manual_seed(0))
    if prior:
        model.init_prior(torch.arange(30) * 40)  # a wide prior: log counts 0..7
    g = torch.Generator().manual_seed(1)
    un = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    mn = torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=1)
    un.requires_grad_(True)
    mn.requires_grad_(True)
    negs = torch.randint(30, (10,), generator=g)
    pos = torch.randn(6, generator=g)
    mt, offset, bound = model.negative_factors(mn, negs)
    shifted = un @ mt.T + offset
    plain = model.retrieval_logits(un, mn, negs, pairwise=False)
    torch.testing.assert_close(shifted + bound, plain, atol=1e-5, rtol=1e-5)
    assert (shifted <= 1e-6).all()
    fast = bounded_softmax(pos, un, mt, offset, bound)
    reference = sampled_softmax(pos, plain)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    for a, b in zip(torch.autograd.grad(fast, (un, mn)),
                    torch.autograd.grad(reference, (un, mn)), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_exp_row_sums_gradients():
    """ExpRowSums' hand-written backward pass: gradcheck in double precision, every input."""
    from movierec.loss import ExpRowSums

    g = torch.Generator().manual_seed(0)
    a, b, offset = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                    for shape in ((7, 4), (5, 4), (5,)))
    assert torch.autograd.gradcheck(ExpRowSums.apply, (a, b, offset))
    torch.testing.assert_close(ExpRowSums.apply(a, b, offset),
                               torch.exp(a @ b.T + offset).sum(1))


@pytest.mark.parametrize("variant", ["seed", "mf", "hybrid_rank"])
def test_batch_loss_is_the_plain_formula(tiny_exp, variant):
    """The training step's fused loss (movie tables read once, unit vectors shared by the
    rating and retrieval terms, only positives' rows scored against the negatives) equals the
    plain composition: RMSE of the model's ratings + w x the sampled softmax of
    retrieval_logits over the positives + reg x the rows' squared norms; gradients too."""
    from movierec.loss import batch_loss, rmse, sampled_softmax

    spec = VARIANTS[variant]
    cfg = spec.train_config(quick_config(rank_weight=0.7))
    model = spec.build(tiny_exp, spec.model_config(tiny_exp, 8), cfg, tiny_exp.train, TRAIN)
    data = tiny_exp.train
    users, movies, ratings = data.users[:300], data.movies[:300], data.ratings[:300]
    negs = (torch.randint(tiny_exp.feats.n_movies, (40,),
                          generator=torch.Generator().manual_seed(2))
            if "softmax" in cfg.loss else None)

    def plain() -> torch.Tensor:
        u = model.user(users)
        m = model.encode_movies(movies, tiny_exp.feats)
        ub = None if model.head is None else model.head.user_bias(users).squeeze(1)
        loss = rmse(model.rating_from_vectors(u, m, movies, ub), ratings)
        if negs is not None:
            un = torch.nn.functional.normalize(u, dim=1)
            pos = model.retrieval_logits(un, torch.nn.functional.normalize(m, dim=1), movies)
            neg = model.retrieval_logits(un, torch.nn.functional.normalize(
                model.encode_movies(negs, tiny_exp.feats), dim=1), negs, pairwise=False)
            keep = (ratings >= cfg.min_positive).float()
            loss = loss + cfg.rank_weight * sampled_softmax(pos, neg, keep)
        norms = u.pow(2).sum(1)
        if model.movie is not None:
            norms = norms + model.movie(movies).pow(2).sum(1)
        if model.head is not None:
            norms = norms + ub**2 + model.head.movie_bias(movies).squeeze(1) ** 2
        return loss + cfg.reg * norms.mean()

    def value_and_grads(loss: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), [p.grad.to_dense() if p.grad.is_sparse else p.grad
                               for p in model.parameters() if p.grad is not None]

    fused, fused_grads = value_and_grads(
        batch_loss(model, tiny_exp.feats, users, movies, ratings, cfg, negs))
    reference, reference_grads = value_and_grads(plain())
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    assert len(fused_grads) == len(reference_grads)
    for a, b in zip(fused_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
