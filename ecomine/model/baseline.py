"""The classical baseline every quality claim is compared with: TF-IDF (word + char n-grams)
+ logistic regression, one per task, trained on the same split as the fine-tuned model.

Chinese has no spaces, so for 'zh' the word analyser runs on jieba tokens when jieba is
installed and falls back to character n-grams only otherwise (said in the report).
"""

from __future__ import annotations

import time

import numpy as np

from ecomine.metrics import classification_report


def _vectorizer(language: str):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True, max_features=200_000)
    if language == "zh":
        try:
            import jieba

            jieba.setLogLevel(60)
            word = TfidfVectorizer(tokenizer=jieba.lcut, token_pattern=None, lowercase=False, min_df=2, sublinear_tf=True)
        except ImportError:
            return char
    else:
        word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    return FeatureUnion([("word", word), ("char", char)])


def tfidf_baseline(
    train_texts: list[str], train_y: np.ndarray, test_texts: list[str], test_y: np.ndarray, n_classes: int, language: str, seed: int = 42
) -> dict[str, float]:
    """Fit on rows with a label (y >= 0), report accuracy / macro-F1 on test rows with a label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    t0 = time.time()
    tr = train_y >= 0
    te = test_y >= 0
    X = [t for t, k in zip(train_texts, tr) if k]
    model = make_pipeline(_vectorizer(language), LogisticRegression(C=4.0, max_iter=2000, random_state=seed))
    model.fit(X, train_y[tr])
    pred = model.predict([t for t, k in zip(test_texts, te) if k])
    report = classification_report(test_y[te], pred, n_classes)
    report["train_seconds"] = round(time.time() - t0, 2)
    return report
