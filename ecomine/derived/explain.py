"""Which words pushed a prediction: Integrated Gradients on a bounded sample of reviews.

Runs on the DRIVER, never on executors, over at most ``sample_size`` reviews per run:

1. :func:`select_for_explanation` (Spark, bounded, collected): reviews scored in the run
   where the fraud score is high (``fraud_score >= min_fraud_score``, highest first, up
   to ``round(sample_size * fraud_share)`` of them), then the reviews where the model
   was least confident, until ``sample_size`` is reached. Confidence of one task:
   binary ``|2 * prob - 1|`` (prob = P(positive class)); multiclass / ordinal
   ``(prob - 1/K) / (1 - 1/K)`` (prob = P(predicted class), K classes); a review's
   confidence is the smallest over its tasks. Ties go to the smaller review_id.
2. :func:`explain_texts` (torch + captum): for every selected review and every task the
   review's language model was trained on, ``captum.attr.LayerIntegratedGradients`` on
   the encoder's input (word-piece) embedding layer. The baseline keeps the special
   tokens (and an E5 ``query: `` prefix) and replaces every text token by the pad
   token. The attributed output is the log-odds of the predicted class,
   ``log(p / (1 - p))`` (class tasks; unlike the probability it does not saturate, so
   a confident prediction still gets attributions), or the standardized prediction
   (regression tasks). A positive attribution means "pushed towards the predicted
   label / a higher value". Attributions are summed over the embedding dimensions,
   then word pieces are summed into words (regex words and punctuation; jieba words
   for Chinese). Per IG's completeness property the attributions of all pieces add up
   to f(text) - f(baseline), up to ``convergence_delta``.
3. :func:`explanations_frame`: the rows as a Spark DataFrame (``EXPLANATIONS_DDL``) for
   the nightly job to MERGE on (review_id, task).

Tasks whose model input is composed from several columns (a non-empty ``inputs`` in
the task spec) are skipped: their input is not the review text alone.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from ecomine.config import ExplainConfig

log = logging.getLogger(__name__)

_EXPLANATION_FIELDS: tuple[tuple[str, str], ...] = (
    ("review_id", "string"),
    ("language", "string"),
    ("task", "string"),
    ("predicted_label", "string"),
    ("prob", "double"),
    ("value", "double"),
    ("top_tokens", "array<struct<token: string, attribution: double>>"),
    ("convergence_delta", "double"),
    ("selection_reason", "string"),
    ("method", "string"),
    ("model_version", "string"),
    ("run_id", "string"),
    ("explained_at", "timestamp"),
)
#: Columns of review_explanations, in order.
EXPLANATION_COLUMNS: tuple[str, ...] = tuple(name for name, _ in _EXPLANATION_FIELDS)
EXPLANATIONS_DDL = ", ".join(f"{name} {typ}" for name, typ in _EXPLANATION_FIELDS)
#: MERGE keys of review_explanations; ``run_id``/``explained_at`` are stamps.
KEYS: tuple[str, ...] = ("review_id", "task")
STAMP_COLUMNS: tuple[str, ...] = ("run_id", "explained_at")

REASON_FRAUD = "high_fraud_risk"
REASON_LOW_CONFIDENCE = "low_confidence"

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)


def settings(cfg: Any = None, **overrides: Any) -> ExplainConfig:
    """``cfg.explain`` when the project config has that section, else the defaults;
    keyword arguments that are not None override single fields."""
    base = getattr(cfg, "explain", None)
    values: dict[str, Any] = {}
    if base is not None:
        values = {f: getattr(base, f) for f in ExplainConfig.__dataclass_fields__ if hasattr(base, f)}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ExplainConfig(**values)


# --------------------------------------------------------------------------- selection (Spark)


def _task_list(tasks: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for t in tasks:
        if isinstance(t, Mapping):
            out.append({"name": t["name"], "kind": t["kind"], "classes": list(t.get("classes") or ())})
        else:
            out.append({"name": t.name, "kind": t.kind, "classes": list(getattr(t, "classes", ()) or ())})
    return out


def confidence_column(columns: Sequence[str], tasks: Iterable[Any]):
    """Spark Column: the review's smallest task confidence in [0, 1] (see module doc);
    null when no class task has a probability for the row."""
    from pyspark.sql import functions as F

    parts = []
    for t in _task_list(tasks):
        col = f"{t['name']}_prob"
        if col not in columns or t["kind"] == "regression":
            continue
        p = F.col(col).cast("double")
        p = F.when(~F.isnan(p), p)
        if t["kind"] == "binary":
            parts.append(F.abs(F.lit(2.0) * p - F.lit(1.0)))
        elif len(t["classes"]) >= 2:
            k = float(len(t["classes"]))
            parts.append((p - F.lit(1.0 / k)) / F.lit(1.0 - 1.0 / k))
    if not parts:
        return F.lit(None).cast("double")
    return parts[0] if len(parts) == 1 else F.least(*parts)


def select_for_explanation(
    scores,
    reviews,
    fraud,
    tasks: Iterable[Any],
    run_id: str | None = None,
    cfg: Any = None,
    *,
    sample_size: int | None = None,
    fraud_share: float | None = None,
    min_fraud_score: float | None = None,
) -> pd.DataFrame:
    """The bounded sample to explain, collected to the driver: at most ``sample_size``
    rows of ``review_id, language, text, selection_reason, confidence, fraud_score``.

    ``scores``: review_scores (only rows with ``run_id`` are candidates when it is
    given); ``reviews``: conformed reviews (for ``text``); ``fraud``: review_fraud or
    None (then only low-confidence picks); ``tasks``: the model's task list. Reviews
    without text are skipped. ``text`` is the cleaned text the model scored."""
    from pyspark.sql import functions as F

    from ecomine import text as textlib

    s = settings(cfg, sample_size=sample_size, fraud_share=fraud_share, min_fraud_score=min_fraud_score)
    empty = pd.DataFrame(columns=["review_id", "language", "text", "selection_reason", "confidence", "fraud_score"])
    if s.sample_size == 0:
        return empty
    tasks = list(tasks)
    cand = scores.where(F.col("review_id").isNotNull())
    if run_id is not None:
        cand = cand.where(F.col("run_id") == F.lit(run_id))
    cand = cand.select("review_id", "language", confidence_column(scores.columns, tasks).alias("confidence"))
    texts = (
        reviews.where(F.col("review_id").isNotNull() & F.col("text").isNotNull())
        .groupBy(F.col("review_id").cast("string").alias("review_id"))
        .agg(F.min("text").alias("text"))
    )
    cand = cand.join(texts, on="review_id", how="inner")
    if fraud is not None:
        fr = fraud.groupBy("review_id").agg(F.max("fraud_score").alias("fraud_score"))
        cand = cand.join(fr, on="review_id", how="left")
    else:
        cand = cand.withColumn("fraud_score", F.lit(None).cast("double"))

    picked: list[dict[str, Any]] = []
    n_fraud = int(math.floor(s.sample_size * s.fraud_share + 0.5))
    if fraud is not None and n_fraud > 0:
        rows = (
            cand.where(F.col("fraud_score") >= F.lit(s.min_fraud_score))
            .orderBy(F.col("fraud_score").desc(), F.col("review_id"))
            .limit(n_fraud)
            .collect()
        )
        picked += [r.asDict() | {"selection_reason": REASON_FRAUD} for r in rows]
    rest = s.sample_size - len(picked)
    if rest > 0:
        taken = [r["review_id"] for r in picked]
        low = cand.where(F.col("confidence").isNotNull())
        if taken:
            low = low.where(~F.col("review_id").isin(taken))
        rows = low.orderBy(F.col("confidence").asc(), F.col("review_id")).limit(rest).collect()
        picked += [r.asDict() | {"selection_reason": REASON_LOW_CONFIDENCE} for r in rows]
    if not picked:
        return empty
    out = pd.DataFrame(picked)[list(empty.columns)]
    out["text"] = [textlib.clean_text(t) for t in out["text"]]
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- word pieces -> words


def word_spans(text: str, language: str | None) -> list[tuple[int, int]]:
    """(start, end) character spans of the words of ``text``: jieba words for Chinese
    (whitespace dropped), else runs of word characters (with inner apostrophes) and
    single punctuation marks."""
    if language == "zh":
        import jieba

        jieba.setLogLevel(60)
        return [(s, e) for w, s, e in jieba.tokenize(text) if w.strip()]
    return [m.span() for m in _WORD.finditer(text)]


def merge_pieces(
    text: str,
    offsets: Sequence[tuple[int, int]],
    attributions: Sequence[float],
    language: str | None,
    shift: int = 0,
) -> list[tuple[str, float]]:
    """Sum word-piece attributions into words of ``text``, in text order.

    ``offsets``: each piece's (start, end) in the tokenized string, (0, 0) for special
    tokens; ``shift``: characters before ``text`` in that string (a prefix), so a piece
    at ``start < shift`` belongs to the prefix and is ignored. A piece goes to the word
    that contains its first character (else the first word it overlaps). Words no
    piece reached (cut by truncation) are left out."""
    spans = word_spans(text, language)
    starts = [s for s, _ in spans]
    sums: dict[int, float] = {}
    for (a, b), attr in zip(offsets, attributions, strict=True):
        if b <= a or a < shift:
            continue
        a, b = a - shift, b - shift
        i = bisect.bisect_right(starts, a) - 1
        if not (i >= 0 and spans[i][0] <= a < spans[i][1]):
            i = next((j for j, (s, e) in enumerate(spans) if s < b and a < e), -1)
        if i < 0:
            continue
        sums[i] = sums.get(i, 0.0) + float(attr)
    return [(text[spans[i][0] : spans[i][1]], sums[i]) for i in sorted(sums)]


def top_words(words: Sequence[tuple[str, float]], k: int) -> list[dict[str, Any]]:
    """The ``k`` words with the largest |attribution| (ties: earlier word first)."""
    order = sorted(range(len(words)), key=lambda i: (-abs(words[i][1]), i))[:k]
    return [{"token": words[i][0], "attribution": float(words[i][1])} for i in order]


# --------------------------------------------------------------------------- attributions (torch)


def log_odds(logits):
    """(n, K) logits -> (n, K) log-odds of each class against all the others,
    ``log(p_k / (1 - p_k)) = logit_k - logsumexp(logits without k)``; unlike the
    probability it does not saturate, so a confident prediction still has attributions."""
    import torch

    k = logits.shape[-1]
    cols = []
    for i in range(k):
        rest = torch.cat([logits[..., :i], logits[..., i + 1 :]], dim=-1)
        cols.append(logits[..., i] - torch.logsumexp(rest, dim=-1))
    return torch.stack(cols, dim=-1)


def _method(n_steps: int) -> str:
    return f"captum.LayerIntegratedGradients(input_embeddings, pad_baseline, target=log_odds, n_steps={n_steps})"


def explain_texts(
    predictor: Any,
    rows: pd.DataFrame,
    cfg: Any = None,
    *,
    top_k: int | None = None,
    n_steps: int | None = None,
    internal_batch_size: int | None = None,
) -> pd.DataFrame:
    """Integrated-Gradients explanations for ``rows`` (``review_id``, ``text``,
    ``language``, optional ``selection_reason``) with an ``ecomine.model.predict.Predictor``.

    One output row per (review, task its language model was trained on): review_id,
    language, task, predicted_label (null for regression), prob (as in review_scores:
    P(positive) for binary, P(predicted class) otherwise; null for regression), value
    (regression prediction on the target scale when the artifact has its mean/std, else
    null), top_tokens (list of {token, attribution}), convergence_delta,
    selection_reason, method, model_version. Rows with an empty text or a language the
    artifact lacks are skipped (logged)."""
    import torch
    from captum.attr import LayerIntegratedGradients

    s = settings(cfg, top_k=top_k, n_steps=n_steps, internal_batch_size=internal_batch_size)
    t0 = time.time()
    out: list[dict[str, Any]] = []
    tasks = list(predictor.tasks)
    for rec in rows.to_dict("records"):
        text, lang = rec.get("text"), rec.get("language")
        if not text or lang not in predictor.models:
            log.info("explain: skipping review %s (empty text or no model for language %r)", rec.get("review_id"), lang)
            continue
        lm = predictor.models[lang]
        prefix = lm.prefix or ""
        enc = lm.tokenizer(
            prefix + text,
            truncation=True,
            max_length=predictor.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        ids = enc["input_ids"].to(lm.device)
        mask = enc["attention_mask"].to(lm.device)
        offsets = [tuple(int(v) for v in o) for o in enc["offset_mapping"][0].tolist()]
        special = set(lm.tokenizer.all_special_ids)
        keep = torch.tensor(
            [
                (int(i) in special) or (b > a and a < len(prefix))
                for i, (a, b) in zip(ids[0].tolist(), offsets, strict=True)
            ],
            device=lm.device,
        )
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        baseline = torch.where(keep.unsqueeze(0), ids, torch.full_like(ids, pad))
        specs = getattr(lm, "task_specs", {t["name"]: t for t in tasks})
        with torch.no_grad():
            heads, _ = lm.net(ids, mask)
        for t in tasks:
            name = t["name"]
            if name not in lm.trained or t.get("inputs"):
                continue
            kind = t["kind"]
            if kind == "regression":
                target = None
                raw = float(heads[name].float().reshape(-1)[0])
                spec = specs.get(name, {})
                value = None
                if "mean" in spec and "std" in spec:
                    value = raw * float(spec["std"]) + float(spec["mean"])
                    if spec.get("log"):
                        value = math.expm1(value)
                label, prob = None, None
            else:
                probs = torch.softmax(heads[name].float(), dim=-1)[0]
                target = int(probs.argmax())
                classes = list(t["classes"])
                label = classes[target]
                prob = float(probs[classes.index(t["positive"])]) if kind == "binary" else float(probs[target])
                value = None

            def forward(input_ids, attention_mask, _net=lm.net, _name=name, _kind=kind):
                o, _ = _net(input_ids, attention_mask)
                if _kind == "regression":
                    return o[_name].float().reshape(-1)
                return log_odds(o[_name].float())

            lig = LayerIntegratedGradients(forward, lm.net.encoder.get_input_embeddings())
            attr, delta = lig.attribute(
                inputs=ids,
                baselines=baseline,
                additional_forward_args=(mask,),
                target=target,
                n_steps=s.n_steps,
                internal_batch_size=s.internal_batch_size,
                return_convergence_delta=True,
            )
            per_piece = attr.sum(dim=-1)[0].detach().float().cpu().numpy()
            words = merge_pieces(text, offsets, per_piece, lang, shift=len(prefix))
            out.append(
                {
                    "review_id": rec.get("review_id"),
                    "language": lang,
                    "task": name,
                    "predicted_label": label,
                    "prob": prob,
                    "value": value,
                    "top_tokens": top_words(words, s.top_k),
                    "convergence_delta": float(delta.reshape(-1)[0]),
                    "selection_reason": rec.get("selection_reason"),
                    "method": _method(s.n_steps),
                    "model_version": predictor.model_version,
                }
            )
    log.info("explained %d (review, task) pairs in %.1fs", len(out), time.time() - t0)
    return pd.DataFrame(out, columns=[c for c in EXPLANATION_COLUMNS if c not in STAMP_COLUMNS])


def explanations_frame(spark, explained: pd.DataFrame, run_id: str | None, explained_at: datetime):
    """``explain_texts`` output as a Spark DataFrame with ``EXPLANATIONS_DDL`` (adds the
    ``run_id`` and ``explained_at`` stamps). Bounded: the input is the driver-side sample."""
    rows = []
    for rec in explained.to_dict("records"):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        rec["top_tokens"] = [(t["token"], float(t["attribution"])) for t in rec["top_tokens"]]
        rows.append({**rec, "run_id": run_id, "explained_at": explained_at})
    return spark.createDataFrame([tuple(r.get(c) for c in EXPLANATION_COLUMNS) for r in rows], schema=EXPLANATIONS_DDL)


def explain_run(
    spark,
    cfg: Any,
    run_id: str,
    artifact_path: str,
    scores,
    reviews,
    fraud=None,
    *,
    explained_at: datetime,
    device: str = "cpu",
    sample_size: int | None = None,
    top_k: int | None = None,
    n_steps: int | None = None,
):
    """Select, explain and frame in one call (what the nightly job runs after scoring):
    returns the Spark DataFrame to MERGE into review_explanations on ``KEYS``. The
    keyword settings override ``cfg.explain`` (or the defaults)."""
    from ecomine.model.predict import Predictor

    predictor = Predictor(artifact_path, device=device)
    picked = select_for_explanation(scores, reviews, fraud, predictor.tasks, run_id, cfg, sample_size=sample_size)
    explained = explain_texts(predictor, picked, cfg, top_k=top_k, n_steps=n_steps)
    return explanations_frame(spark, explained, run_id, explained_at)


__all__ = [
    "EXPLANATION_COLUMNS",
    "EXPLANATIONS_DDL",
    "KEYS",
    "STAMP_COLUMNS",
    "ExplainConfig",
    "explain_run",
    "explain_texts",
    "explanations_frame",
    "merge_pieces",
    "select_for_explanation",
    "settings",
    "top_words",
    "word_spans",
]
