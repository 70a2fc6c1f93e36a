"""The model's parts: the content encoder, the rating heads, the retrieval score in its forms,
and the model's own loss."""

import dataclasses

import numpy as np
import pytest
import torch

from movierec.csr import Csr
from movierec.features import MovieFeatures
from movierec.loss import Objective, rmse, sampled_softmax
from movierec.model import ModelConfig, MovieRecModel
from movierec.ops import unique_indices
from movierec.split import TRAIN
from movierec.tensors import FeatureTensors
from movierec.variants import model_config

from .conftest import spec


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


def toy_model(encoder="content", score="cosine", genome=True, **kw) -> MovieRecModel:
    cfg = ModelConfig(n_users=3, n_movies=4, n_tags=4, n_genres=20, dim=8,
                      n_genome_tags=6 if genome else 0, encoder=encoder, score=score, **kw)
    return MovieRecModel(cfg, torch.Generator().manual_seed(0))


def rate(model, users, movies, feats):
    return model.predict(users, model.user(users), movies, model.encode_movies(movies, feats))


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
    pred = rate(model, users, movies, feats)
    assert ((pred >= 0.5) & (pred <= 5.0)).all()
    u, m = model.user(users), model.encode_movies(movies, feats)
    cos = torch.nn.functional.cosine_similarity(u, m)
    torch.testing.assert_close(pred, 2.75 + 2.25 * cos)


def test_biased_heads_add_their_biases_and_scale():
    feats = FeatureTensors(toy_features())
    users, movies = torch.tensor([0, 2]), torch.tensor([1, 3])
    for score, inter in (("cosine_bias", torch.nn.functional.cosine_similarity),
                         ("dot_bias", lambda u, m: (u * m).sum(1))):
        model = toy_model("hybrid" if score == "cosine_bias" else "id", score)
        head = model.head
        with torch.no_grad():
            head.user_biases.weight.copy_(torch.arange(3.0).unsqueeze(1))
            head.movie_biases.weight.copy_(10 * torch.arange(4.0).unsqueeze(1))
            if head.scale is not None:
                head.scale.fill_(0.5)
        u, m = model.user(users), model.encode_movies(movies, feats)
        scale = 0.5 if score == "cosine_bias" else 1.0
        want = head.global_bias + torch.tensor([0.0, 2.0]) + torch.tensor([10.0, 30.0]) \
            + scale * inter(u, m)
        torch.testing.assert_close(rate(model, users, movies, feats), want)


def test_genome_tag_one_learns_and_batch_without_genome_movie_works():
    model, feats = toy_model(), FeatureTensors(toy_features())
    rate(model, torch.tensor([0]), torch.tensor([0]), feats).sum().backward()
    assert model.content.genome_tag.grad[0].abs().sum() > 0  # tag 1 is not padding
    model.zero_grad()
    rate(model, torch.tensor([1]), torch.tensor([2]), feats).sum().backward()  # no genome
    content = model.content
    assert content.genome_tag.grad.abs().sum() == 0 and content.no_genome.grad.abs().sum() > 0


def test_hybrid_unseen_movie_is_encoded_by_content():
    model, feats = toy_model("hybrid", "cosine_bias"), FeatureTensors(toy_features())
    model.set_seen(torch.tensor([True, True, True, False]))
    with torch.no_grad():
        model.movie.table.weight.fill_(1.0)  # as if trained, also the unseen row
    rows = torch.tensor([3])
    torch.testing.assert_close(model.encode_movies(rows, feats),
                               model.encode_movies(rows, feats, use_id=False))
    assert not torch.allclose(model.encode_movies(torch.tensor([2]), feats),
                              model.encode_movies(torch.tensor([2]), feats, use_id=False))
    with pytest.raises(ValueError, match="only a hybrid's movie-id table is masked"):
        toy_model("id", "dot_bias").set_seen(torch.ones(4, dtype=torch.bool))


def test_prior_starts_at_centred_log_popularity_and_ranks_by_it():
    model = toy_model("hybrid", "cosine_bias", prior=True)
    counts = torch.tensor([40, 0, 3, 7])
    model.init_prior(counts)
    prior = model.retrieval.prior
    assert abs(float(prior.mean())) < 1e-6
    assert torch.equal(torch.argsort(prior), torch.argsort(counts))  # monotone in popularity
    vectors = model.ranking(model.all_user_vectors(), torch.randn(4, 8), "cosine")
    assert vectors.offset is prior  # the search adds it to every user's scores
    with pytest.raises(ValueError, match="no retrieval prior"):
        toy_model().init_prior(counts)


@pytest.mark.parametrize("score,by", [("cosine", "cosine"), ("cosine", "rating"),
                                      ("cosine_bias", "rating"), ("dot_bias", "cosine"),
                                      ("dot_bias", "rating")])
@pytest.mark.parametrize("prior", [False, True])
def test_ranking_vectors_order_movies_by_the_score_they_factor(score, by, prior):
    """The factored form (user vectors . movie vectors + offset) ranks every user's movies as
    the score it stands for: the retrieval score (interaction / temperature + prior) or the
    predicted rating."""
    model = toy_model("hybrid" if score != "dot_bias" else "id", score, prior=prior)
    if prior:
        model.init_prior(torch.tensor([9, 0, 2, 30]))
    feats = FeatureTensors(toy_features())
    with torch.no_grad():
        model.user.weight.normal_(generator=torch.Generator().manual_seed(1))
        if score != "cosine":
            model.head.movie_biases.weight.copy_(torch.tensor([[0.3], [-0.2], [0.1], [0.0]]))
        v = model.ranking_vectors(feats, by)
        factored = v.users @ v.movies.T + (0 if v.offset is None else v.offset)
        users, movies = torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3)
        u, m = model.user(users), model.encode_movies(movies, feats)
        if by == "rating":
            direct = rate(model, users, movies, feats)
        else:
            direct = model.retrieval.score(model.interaction.pair(u, m),
                                           model.retrieval.prior_of(movies))
    for row in range(3):
        assert torch.equal(torch.argsort(factored[row], descending=True),
                           torch.argsort(direct.view(3, 4)[row], descending=True))
    with pytest.raises(ValueError, match="by must be 'cosine' or 'rating'"):
        model.rank_users(model.user.weight, "popularity")


def test_objective_needs_a_term_and_weights_are_not_negative():
    with pytest.raises(ValueError, match="needs the rating term"):
        Objective(rating=False)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        Objective(rank_weight=-1.0)
    config = toy_model(objective=Objective(rank_weight=0.5, reg=0.1)).config
    assert ModelConfig.from_dict(config.to_dict()) == config  # as a checkpoint stores it


def test_low_rank_encoder_is_its_basis_times_coefficients():
    """With ranks, the tag/genome blocks equal the exact encoder whose tables are
    basis @ coef, and the explanation of a score still adds up."""
    f = toy_features()
    low = FeatureTensors(f, tag_rank=2, genome_rank=3)
    assert low.rank("tag") == 2 and low.rank("genome") == 3 and set(low.kept) == {"tag", "genome"}
    model = toy_model(tag_rank=2, genome_rank=3)
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
        model = toy_model(genome=genome, tag_rank=2, genome_rank=3 if genome else 0)
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


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_unique_indices_equals_torch_unique(size):
    g = torch.Generator().manual_seed(size)
    for n in (0, 1, 5, 300):
        index = torch.randint(size, (n,), generator=g)
        for got, expected in zip(unique_indices(index, size),
                                 torch.unique(index, return_inverse=True), strict=True):
            assert torch.equal(got, expected)
    with pytest.raises(IndexError):
        unique_indices(torch.tensor([0, size]), size)


@pytest.mark.parametrize("prior", [False, True])
def test_bounded_softmax_equals_the_plain_one(prior):
    """The training step's softmax (scores in factors, less a constant bound, the prior as a
    row) is the sampled softmax of the retrieval score, values and gradients, and the bound
    bounds every score."""
    from movierec.loss import bounded_softmax

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
    mt, offset, bound = model.retrieval.bounded(mn, model.retrieval.prior_of(negs))
    shifted = un @ mt.T + offset
    plain = model.retrieval.score(un @ mn.T, model.retrieval.prior_of(negs))
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
def test_the_model_loss_is_the_plain_formula(tiny_exp, variant):
    """The model's fused loss (movie tables read once, unit vectors shared by the rating and
    retrieval terms, only positives' rows scored against the negatives) equals the plain
    composition: RMSE of the model's ratings + w x the sampled softmax of the retrieval score
    over the positives + reg x the rows' squared norms; gradients too."""
    s = spec(variant, axes={"rank_weight": (0.7,)} if variant == "hybrid_rank" else {})
    mcfg, _ = s.configs(tiny_exp, s.grid(0)[0])
    model = s.build(tiny_exp, mcfg, 0, tiny_exp.train)
    obj = mcfg.objective
    data = tiny_exp.train
    users, movies, ratings = data.users[:300], data.movies[:300], data.ratings[:300]
    negs = (torch.randint(tiny_exp.feats.n_movies, (40,),
                          generator=torch.Generator().manual_seed(2))
            if obj.rank_weight else None)
    feats = tiny_exp.feats

    def plain() -> torch.Tensor:
        u = model.user(users)
        m = model.encode_movies(movies, feats)
        loss = rmse(rate(model, users, movies, feats), ratings)
        if negs is not None:
            r = model.retrieval
            un = torch.nn.functional.normalize(u, dim=1)
            mn = torch.nn.functional.normalize(model.encode_movies(negs, feats), dim=1)
            pos = r.score(model.interaction.pair(u, m), r.prior_of(movies))
            neg = r.score(un @ mn.T, r.prior_of(negs))
            keep = (ratings >= obj.min_positive).float()
            loss = loss + obj.rank_weight * sampled_softmax(pos, neg, keep)
        norms = u.pow(2).sum(1)
        if model.movie is not None:
            norms = norms + model.movie.table(movies).pow(2).sum(1)
        if model.head.biased:
            norms = norms + model.head.user_bias(users) ** 2 + model.head.movie_bias(movies) ** 2
        return loss + obj.reg * norms.mean()

    def value_and_grads(loss: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), [p.grad.to_dense() if p.grad.is_sparse else p.grad
                               for p in model.parameters() if p.grad is not None]

    fused, fused_grads = value_and_grads(model.loss(feats, users, movies, ratings, negs))
    reference, reference_grads = value_and_grads(plain())
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    assert len(fused_grads) == len(reference_grads)
    for a, b in zip(fused_grads, reference_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_softmax_positive_filter_ignores_low_ratings(tiny_exp):
    model = MovieRecModel(model_config(tiny_exp,
        dim=8, encoder="hybrid", score="cosine_bias", prior=True,
        objective=Objective(rating=False, rank_weight=1.0, min_positive=3.5)),
        torch.Generator().manual_seed(0))
    users, movies = torch.tensor([0, 1]), torch.tensor([2, 3])
    negs = torch.tensor([5, 6, 7])
    low, high = torch.tensor([1.0, 5.0]), torch.tensor([5.0, 5.0])
    feats = tiny_exp.feats
    only_second = model.loss(feats, users[1:], movies[1:], high[1:], negs)
    torch.testing.assert_close(model.loss(feats, users, movies, low, negs), only_second)
    assert not torch.allclose(model.loss(feats, users, movies, high, negs), only_second)


@pytest.mark.parametrize("variant", ["hybrid", "hybrid_rank"])
def test_gradients_bit_identical_with_several_threads(tiny_exp, variant):
    """One large batch's gradients, computed five times with >= 2 threads, are bit-identical
    (the backward of ``tensor[index]`` accumulated duplicates in a thread-dependent order)."""
    s = spec(variant, dim=64)
    mcfg, _ = s.configs(tiny_exp, s.grid(0)[0])
    train = tiny_exp.train
    negatives = (torch.randint(tiny_exp.feats.n_movies, (256,),
                               generator=torch.Generator().manual_seed(1))
                 if mcfg.objective.rank_weight else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        digests = set()
        for _ in range(5):
            model = MovieRecModel(mcfg, torch.Generator().manual_seed(0))
            model.loss(tiny_exp.feats, train.users, train.movies, train.ratings,
                       negatives).backward()
            digests.add(tuple(
                (p.grad.coalesce().to_dense() if p.grad.is_sparse else p.grad).numpy().tobytes()
                for p in model.parameters() if p.grad is not None))
    finally:
        torch.set_num_threads(threads)
    assert len(digests) == 1


def test_main_model_masks_never_rated_movies_to_their_content(tiny_exp):
    """Catalogue negatives reach every movie, but a movie the training data never rates keeps
    a zero id vector and its initial prior: its vector is its content encoding."""
    s = spec("hybrid_rank", epochs=3)
    trial = s.tune(tiny_exp, s.grid(0)[0], 3)
    model = trial.fitted.model
    rated = torch.bincount(tiny_exp.train.movies, minlength=tiny_exp.prep.n_movies) > 0
    unseen = torch.nonzero(~rated).squeeze(1)
    assert len(unseen) > 0 and bool((model.movie.seen == rated).all())
    assert bool((model.movie.table.weight[unseen] == 0).all())
    assert bool((model.movie.table.weight[rated].abs().sum(1) > 0).any())  # seen ones trained
    # the prior is log(1 + training positives), centred, for every movie, and training left it
    # as it was set (counts computed here from the prepared arrays, not the model's helper)
    _users, movies, ratings = tiny_exp.prep.part(TRAIN)
    positives = np.bincount(movies[ratings >= model.config.objective.min_positive],
                            minlength=tiny_exp.prep.n_movies)
    assert (positives < np.bincount(movies, minlength=tiny_exp.prep.n_movies)).any()
    start = np.log1p(positives) - np.log1p(positives).mean()
    np.testing.assert_allclose(model.retrieval.prior.numpy(), start, rtol=0, atol=1e-6)
    order = np.argsort(-positives, kind="stable")  # popularity order kept
    assert (np.diff(model.retrieval.prior.numpy()[order]) <= 0).all()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_movies(unseen, tiny_exp.feats),
                                   model.content(unseen, tiny_exp.feats))
