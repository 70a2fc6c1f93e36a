"""A trained model used without retraining: saved and loaded, a new user folded in from a few
ratings, embeddings exported, and the explore notebook run on a saved model."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from movierec import artifact, report
from movierec.artifact import ArtifactError
from movierec.catalogue import CatalogueError
from movierec.data import load_movielens
from movierec.experiment import Experiment
from movierec.export import export_embeddings, read_embeddings
from movierec.features import GENRES
from movierec.prepare import prepare
from movierec.protocol import run
from movierec.recommend import Recommender
from movierec.split import TRAIN, VAL
from movierec.variants import set_age

from .conftest import spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tiny_dir):
    """The recommending variant (hybrid_rank: rating + retrieval loss, popularity prior)."""
    prep = prepare(load_movielens(tiny_dir))
    exp = Experiment(prep, torch.device("cpu"))
    res = run(exp, spec("hybrid_rank", dim=16, epochs=6, n_negatives=128), seed=3, ks=(5,))
    rec = Recommender(res.model, exp.feats, prep.movies, prep.user_ids,
                      prep.history(TRAIN, VAL), tag_vocab=prep.features.tag_vocab,
                      genome_tags=prep.features.genome_tags, genres=GENRES)
    return prep, rec


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    prep, rec = trained
    users = [int(u) for u in prep.user_ids[:3]]
    examples = {u: rec.recommend(u, k=10).movieId.tolist() for u in users}
    folder = rec.save(tmp_path_factory.mktemp("model") / "model", variant="hybrid_rank",
                      dataset=prep.name, data_checksums=prep.checksums, examples=examples)
    return folder


def copy_folder(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def test_loaded_model_answers_exactly_as_the_trained_one(trained, saved):
    prep, rec = trained
    loaded = Recommender.load(saved, device="cpu", expect_checksums=prep.checksums)
    for u in prep.user_ids[::17]:
        pd.testing.assert_frame_equal(loaded.recommend(int(u), k=10), rec.recommend(int(u), k=10))
    movie = int(prep.movies.movieId.iloc[5])
    pd.testing.assert_frame_equal(loaded.similar_movies(movie), rec.similar_movies(movie))
    pd.testing.assert_frame_equal(loaded.audience(movie), rec.audience(movie))
    user = int(prep.user_ids[4])
    pd.testing.assert_frame_equal(loaded.explain(user, movie), rec.explain(user, movie))
    assert loaded.manifest["variant"] == "hybrid_rank"
    for u, ids in loaded.manifest["examples"].items():
        assert loaded.recommend(int(u), k=10).movieId.tolist() == ids
    assert loaded.model.config == rec.model.config  # the objective a new user is folded in with
    assert loaded.model.config.objective.rank_weight > 0
    # the weights alone load without unpickling arbitrary objects
    state = torch.load(saved / "model.pt", weights_only=True)
    assert state["model_config"]["encoder"] == "hybrid"


def test_model_trained_on_other_data_is_refused(saved, trained):
    prep, _ = trained
    other = {**prep.checksums, "ratings.csv": "0" * 64}
    with pytest.raises(ArtifactError, match=r"trained on 'tiny'.*\['ratings.csv'\]"):
        Recommender.load(saved, device="cpu", expect_checksums=other)


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "manifest.json").unlink(), "manifest.json: missing"),
    (lambda f: (f / "arrays.npz").unlink(), "arrays.npz: missing"),
    (lambda f: (f / "model.pt").write_bytes((f / "model.pt").read_bytes()[:100]),
     "model.pt: size or SHA-256 differs"),
    (lambda f: (f / "movies.parquet").write_bytes(
        (f / "movies.parquet").read_bytes().replace(b"Synthetic", b"Synthetix")),
     "movies.parquet: size or SHA-256 differs"),
    (lambda f: (f / "manifest.json").write_text('{"format": 99}'), "format 99"),
    (lambda f: (f / "manifest.json").write_text("{"), "unreadable manifest"),
])
def test_partial_or_edited_folder_is_refused(saved, tmp_path, damage, message):
    folder = copy_folder(saved, tmp_path)
    damage(folder)
    with pytest.raises(ArtifactError, match=message):
        Recommender.load(folder, device="cpu")
    with pytest.raises(ArtifactError, match="no model folder"):
        Recommender.load(tmp_path / "absent", device="cpu")


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(files={}), r"must vouch for exactly \['model.pt', 'arrays.npz', "
                                   r"'movies.parquet'\], lists \[\]"),
    (lambda m: m["files"].pop("arrays.npz"), "must vouch for exactly"),
    (lambda m: m["files"]["model.pt"].pop("sha256"), "the entry of model.pt needs its sha256"),
    (lambda m: m.pop("by"), r"lacks \['by'\]"),
    (lambda m: m.pop("data_checksums"), r"lacks \['data_checksums'\]"),
])
def test_a_manifest_that_does_not_vouch_for_every_file_is_refused(saved, tmp_path, change,
                                                                  message):
    folder = copy_folder(saved, tmp_path)
    edit_manifest(folder, change)
    with pytest.raises(ArtifactError, match=message):
        Recommender.load(folder, device="cpu")


def test_save_is_atomic(trained, saved, tmp_path, monkeypatch):
    prep, rec = trained
    folder = copy_folder(saved, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(artifact.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        rec.save(folder, variant="hybrid_rank", dataset=prep.name,
                 data_checksums=prep.checksums)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # old one intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary left
    monkeypatch.undo()
    rec.save(folder, variant="hybrid_rank", dataset=prep.name, data_checksums=prep.checksums)
    assert Recommender.load(folder, device="cpu").manifest["examples"] == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_a_saved_model_carries_its_age_term(trained, tmp_path):
    prep, rec = trained
    assert rec.model.age is not None  # the main model has one (its weight chosen on val)
    model = copy.deepcopy(rec.model)
    set_age(Experiment(prep, torch.device("cpu")), model, (TRAIN, VAL), 1.0)
    aged = Recommender(model, rec.feats, prep.movies, prep.user_ids, rec.history,
                       tag_vocab=prep.features.tag_vocab, genome_tags=prep.features.genome_tags,
                       genres=GENRES)
    users = [int(u) for u in prep.user_ids[::9]]
    assert any(aged.recommend(u).movieId.tolist() != rec.recommend(u).movieId.tolist()
               for u in users)  # the term moves the rankings here
    folder = aged.save(tmp_path / "aged", variant="hybrid_rank", dataset=prep.name,
                       data_checksums=prep.checksums)
    loaded = Recommender.load(folder, device="cpu")
    assert loaded.model.age.weight.item() == 1.0
    for u in users:
        pd.testing.assert_frame_equal(loaded.recommend(u), aged.recommend(u))
    ratings = dict(list(user_ratings(prep, 2).items())[:5])
    pd.testing.assert_frame_equal(loaded.recommend_for_ratings(ratings),
                                  aged.recommend_for_ratings(ratings))
    movie = int(prep.movies.movieId.iloc[5])  # similarity is the embeddings', not the score's
    pd.testing.assert_frame_equal(aged.similar_movies(movie), rec.similar_movies(movie))
    pd.testing.assert_frame_equal(aged.audience(movie, content_only=False),
                                  rec.audience(movie, content_only=False))


def user_ratings(prep, row: int) -> dict[int, float]:
    mask = (prep.users == row) & np.isin(prep.split.labels, (TRAIN, VAL))
    return {int(prep.movies.movieId.iloc[m]): float(r)
            for m, r in zip(prep.items[mask], prep.ratings[mask], strict=True)}


def test_a_copy_of_a_user_is_folded_in_next_to_that_user(trained):
    prep, rec = trained
    own, other = [], []
    for row in range(0, 60, 6):
        mine = rec.recommend_for_ratings(user_ratings(prep, row), k=10)
        theirs = rec.recommend(int(prep.user_ids[row]), k=10)
        neighbour = rec.recommend(int(prep.user_ids[row + 1]), k=10)
        own.append(len(set(mine.movieId) & set(theirs.movieId)) / 10)
        other.append(len(set(neighbour.movieId) & set(theirs.movieId)) / 10)
        u, _ = rec.fold_in(user_ratings(prep, row))
        cos = torch.nn.functional.cosine_similarity(u, rec.user_vectors[row], dim=0)
        assert cos > 0.6, (row, float(cos))
    assert np.mean(own) >= 0.5 and np.mean(own) > np.mean(other) + 0.3, (own, other)


def test_fold_in_excludes_rated_explains_and_is_deterministic(trained):
    prep, rec = trained
    ratings = dict(list(user_ratings(prep, 2).items())[:5])
    a = rec.recommend_for_ratings(ratings, k=10)
    assert not set(a.movieId) & set(ratings) and len(a) == 10
    assert list(a.columns) == ["movieId", "title", "genres", "score", "because"]
    liked = [m for m, r in ratings.items() if r >= np.mean(list(ratings.values()))]
    titles = prep.movies.set_index("movieId").title
    assert set(a.because) <= set(titles[liked])
    pd.testing.assert_frame_equal(a, rec.recommend_for_ratings(ratings, k=10))
    assert a.score.is_monotonic_decreasing


def test_fold_in_by_title_and_its_errors(trained):
    prep, rec = trained
    movie = prep.movies.iloc[10]
    by_id = rec.recommend_for_ratings({int(movie.movieId): 5.0, int(prep.movies.movieId[11]): 1.0})
    by_title = rec.recommend_for_ratings({movie.title.upper(): 5.0,
                                          prep.movies.title[11]: 1.0})
    pd.testing.assert_frame_equal(by_id, by_title)
    assert by_title.attrs["rated"].title.tolist() == [movie.title, prep.movies.title[11]]
    assert rec.find_movies(movie.title[:-7].lower(), n=1).title[0].startswith(
        movie.title[:-7])
    with pytest.raises(CatalogueError, match=r"unknown movieId 999999.*; and title 'No Such "
                                             r"Film' matches no title"):
        rec.recommend_for_ratings({999999: 4.0, "No Such Film": 3.0, int(movie.movieId): 4})
    with pytest.raises(ValueError, match="ratings is empty"):
        rec.recommend_for_ratings({})
    with pytest.raises(ValueError, match=r"0.5..5.0, got \[7.0\]"):
        rec.recommend_for_ratings({int(movie.movieId): 7.0})
    with pytest.raises(ValueError, match="same movie"):
        rec.recommend_for_ratings({int(movie.movieId): 4.0, movie.title: 3.0})


def test_a_title_names_one_movie_or_is_an_error_listing_candidates(trained):
    prep, rec = trained
    titles = prep.movies.title.tolist()
    one = next(t for t in titles if sum(t[:-7] in u for u in titles) == 1)  # unique stem
    resolved = rec.resolve({one[:-7]: 4.0, titles[3]: 2.5})
    assert resolved.title.tolist() == [one, titles[3]]
    assert resolved.given.tolist() == [one[:-7], titles[3]] and resolved.rating.tolist() == [
        4.0, 2.5]
    stem = "Synthetic Movie 4"  # part of several titles, the exact title of none
    many = [t for t in titles if stem.lower() in t.lower()]
    assert len(many) > 1
    with pytest.raises(CatalogueError, match=rf"title '{stem}' is part of {len(many)} titles: "
                                             r"give the exact title or the movieId; closest: "):
        rec.resolve({stem: 5.0})
    with pytest.raises(CatalogueError, match=r"'Synthetik Movei 4 \(2004\)' matches no title.*"
                                             r"closest: Synthetic Movie"):
        rec.resolve({"Synthetik Movei 4 (2004)": 5.0})
    with pytest.raises(CatalogueError) as raised:
        rec.recommend(-5)
    assert not isinstance(raised.value, KeyError)  # a plain message, not a quoted key
    assert str(raised.value) == "unknown userId -5: not in the training data"


def test_a_title_shared_by_two_movies_names_both(trained):
    from movierec.catalogue import Catalogue

    movies = pd.DataFrame({"movieId": [1, 2, 3], "title": ["Emma (1996)", "Emma (1996)",
                                                           "Emmanuelle (1974)"],
                           "genres": ["Drama"] * 3})
    catalogue = Catalogue(movies, np.array([5, 9, 1]))
    with pytest.raises(CatalogueError, match=r"'emma \(1996\)' names 2 movies.*Emma \(1996\) "
                                             r"\(movieId 2\); Emma \(1996\) \(movieId 1\)"):
        catalogue.title_row("emma (1996)")
    assert catalogue.title_row("Emmanuelle") == catalogue.title_row(" EMMANUELLE (1974) ") == 2


def test_fold_in_leaves_the_model_untouched(trained):
    prep, rec = trained
    before = {k: v.clone() for k, v in rec.model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.to_dense().clone()
             for p in rec.model.parameters()]
    trainable = [p.requires_grad for p in rec.model.parameters()]
    assert all(trainable)  # (the fixed prior is a buffer, not a parameter)
    rec.fold_in(user_ratings(prep, 1))
    after = rec.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in rec.model.parameters()] == trainable
    for p, g in zip(rec.model.parameters(), grads, strict=True):  # no gradient written
        assert p.grad is None if g is None else torch.equal(p.grad.to_dense(), g)


def test_export_round_trip(trained, tmp_path):
    prep, rec = trained
    paths = export_embeddings(rec, tmp_path)
    movies, vectors = read_embeddings(paths["movies"])
    np.testing.assert_array_equal(vectors, rec.movie_vectors.numpy())
    assert movies.movieId.tolist() == prep.movies.movieId.tolist()
    assert movies.title.tolist() == prep.movies.title.tolist()
    _, unit = read_embeddings(paths["movies"], "unit")
    users, uvec = read_embeddings(paths["users"], "unit")
    assert users.userId.tolist() == prep.user_ids.tolist()
    # the exported ranking space reproduces a recommendation
    scores = unit @ uvec[7] + movies.offset.to_numpy()
    scores[rec.history.row(7)] = -np.inf
    top = movies.movieId.to_numpy()[np.argsort(-scores, kind="stable")[:10]]
    assert top.tolist() == rec.recommend(int(prep.user_ids[7]), k=10).movieId.tolist()
    assert pd.read_parquet(paths["users"]).shape == (len(prep.user_ids), 3)


@pytest.mark.slow
def test_explore_notebook_runs_on_a_saved_model(saved, trained, tmp_path):
    prep, _ = trained
    titles = prep.movies.title[:4].tolist()  # (papermill stores parameters as JSON: str keys)
    out = tmp_path / "explore"
    executed = report.run_report(
        ROOT / "notebooks" / "explore.ipynb", out,
        {"MODEL_DIR": str(saved), "GENRE": "Drama",
         "MY_RATINGS": dict(zip(titles, [5.0, 4.0, 1.0, 4.5], strict=True))}, html=False)
    said = "".join("".join(o.get("text", "")) for c in json.loads(executed.read_text())["cells"]
                   for o in c.get("outputs", []))
    assert "same top 10 as the report for 3 of 3 example users" in said
    assert "folded in and recommended in" in said and "x 16 dimensions" in said


def test_genre_and_ranking_errors(trained):
    _, rec = trained
    drama = rec.most_rated(5, genre="Drama")
    assert all("Drama" in g.split("|") for g in rec.movies.genres.iloc[drama])
    assert rec.popularity[drama].tolist() == sorted(rec.popularity[drama], reverse=True)
    with pytest.raises(ValueError, match="no movie of genre 'Polka'"):
        rec.most_rated(5, genre="Polka")
    with pytest.raises(ValueError, match="by must be 'cosine' or 'rating'"):
        rec.model.rank_users(rec.user_vectors, "popularity")
    with pytest.raises(ValueError, match="by must be 'cosine' or 'rating'"):
        rec.model.rank_movies(rec.movie_vectors, "popularity")
