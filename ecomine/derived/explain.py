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

Settings come in typed: ``settings`` is the config's ``explain`` section
(:class:`ecomine.config.ExplainConfig`).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from ecomine.config import ExplainConfig, TaskSpec

if TYPE_CHECKING:
    import torch
    from pyspark.sql import Column, DataFrame, SparkSession

    from ecomine.model.predict import Predictor

__all__ = [
    "EXPLANATION_COLUMNS",
    "EXPLANATIONS_DDL",
    "KEYS",
    "REASON_FRAUD",
    "REASON_LOW_CONFIDENCE",
    "STAMP_COLUMNS",
    "confidence_column",
    "explain_run",
    "explain_texts",
    "explanations_frame",
    "log_odds",
    "merge_pieces",
    "select_for_explanation",
    "top_words",
    "word_spans",
]

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
_SAMPLE_COLUMNS = ["review_id", "language", "text", "selection_reason", "confidence", "fraud_score"]


# --------------------------------------------------------------------------- selection (Spark)


def _task_list(tasks: Iterable[TaskSpec]) -> list[dict[str, Any]]:
    out = []
    for task in tasks:
        if isinstance(task, Mapping):
            out.append({"name": task["name"], "kind": task["kind"], "classes": list(task.get("classes") or ())})
        else:
            out.append({"name": task.name, "kind": task.kind, "classes": list(task.classes)})
    return out


def confidence_column(columns: Sequence[str], tasks: Iterable[TaskSpec]) -> Column:
    """Spark Column: the review's smallest task confidence in [0, 1] (see module doc);
    null when no class task has a probability for the row."""
    from pyspark.sql import functions as F

    parts = []
    for task in _task_list(tasks):
        column = f"{task['name']}_prob"
        if column not in columns or task["kind"] == "regression":
            continue
        prob = F.col(column).cast("double")
        prob = F.when(~F.isnan(prob), prob)
        if task["kind"] == "binary":
            parts.append(F.abs(F.lit(2.0) * prob - F.lit(1.0)))
        elif len(task["classes"]) >= 2:
            n_classes = float(len(task["classes"]))
            parts.append((prob - F.lit(1.0 / n_classes)) / F.lit(1.0 - 1.0 / n_classes))
    if not parts:
        return F.lit(None).cast("double")
    return parts[0] if len(parts) == 1 else F.least(*parts)


def _candidates(
    scores: DataFrame, reviews: DataFrame, fraud: DataFrame | None, tasks: list[TaskSpec], run_id: str | None
) -> DataFrame:
    """review_id, language, confidence, text, fraud_score of every review that may be picked."""
    from pyspark.sql import functions as F

    candidates = scores.where(F.col("review_id").isNotNull())
    if run_id is not None:
        candidates = candidates.where(F.col("run_id") == F.lit(run_id))
    candidates = candidates.select(
        "review_id", "language", confidence_column(scores.columns, tasks).alias("confidence")
    )
    texts = (
        reviews.where(F.col("review_id").isNotNull() & F.col("text").isNotNull())
        .groupBy(F.col("review_id").cast("string").alias("review_id"))
        .agg(F.min("text").alias("text"))
    )
    candidates = candidates.join(texts, on="review_id", how="inner")
    if fraud is None:
        return candidates.withColumn("fraud_score", F.lit(None).cast("double"))
    highest = fraud.groupBy("review_id").agg(F.max("fraud_score").alias("fraud_score"))
    return candidates.join(highest, on="review_id", how="left")


def select_for_explanation(
    scores: DataFrame,
    reviews: DataFrame,
    fraud: DataFrame | None,
    tasks: Iterable[TaskSpec],
    settings: ExplainConfig,
    *,
    run_id: str | None = None,
) -> pd.DataFrame:
    """The bounded sample to explain, collected to the driver: at most
    ``settings.sample_size`` rows of ``review_id, language, text, selection_reason,
    confidence, fraud_score``.

    ``scores``: review_scores (only rows with ``run_id`` are candidates when it is
    given); ``reviews``: conformed reviews (for ``text``); ``fraud``: review_fraud or
    None (then only low-confidence picks); ``tasks``: the model's task list. Reviews
    without text are skipped. ``text`` is the cleaned text the model scored."""
    from pyspark.sql import functions as F

    from ecomine import text as textlib

    empty = pd.DataFrame(columns=_SAMPLE_COLUMNS)
    if settings.sample_size == 0:
        return empty
    candidates = _candidates(scores, reviews, fraud, list(tasks), run_id)
    picked: list[dict[str, Any]] = []
    n_fraud = int(math.floor(settings.sample_size * settings.fraud_share + 0.5))
    if fraud is not None and n_fraud > 0:
        rows = (
            candidates.where(F.col("fraud_score") >= F.lit(settings.min_fraud_score))
            .orderBy(F.col("fraud_score").desc(), F.col("review_id"))
            .limit(n_fraud)
            .collect()
        )
        picked += [r.asDict() | {"selection_reason": REASON_FRAUD} for r in rows]
    rest = settings.sample_size - len(picked)
    if rest > 0:
        taken = [r["review_id"] for r in picked]
        least_confident = candidates.where(F.col("confidence").isNotNull())
        if taken:
            least_confident = least_confident.where(~F.col("review_id").isin(taken))
        rows = least_confident.orderBy(F.col("confidence").asc(), F.col("review_id")).limit(rest).collect()
        picked += [r.asDict() | {"selection_reason": REASON_LOW_CONFIDENCE} for r in rows]
    if not picked:
        return empty
    out = pd.DataFrame(picked)[_SAMPLE_COLUMNS]
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


def log_odds(logits: torch.Tensor) -> torch.Tensor:
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


@dataclass(frozen=True)
class _Encoded:
    """One review tokenized for attribution: ids, mask, piece offsets, and the baseline
    (special tokens and the prefix kept, every text token replaced by the pad token)."""

    ids: torch.Tensor
    mask: torch.Tensor
    offsets: list[tuple[int, int]]
    baseline: torch.Tensor


def _encode(model: Any, text: str, max_length: int) -> _Encoded:
    import torch

    prefix = model.prefix or ""
    tokenizer = model.tokenizer
    enc = tokenizer(
        prefix + text, truncation=True, max_length=max_length, return_offsets_mapping=True, return_tensors="pt"
    )
    ids = enc["input_ids"].to(model.device)
    offsets = [tuple(int(v) for v in o) for o in enc["offset_mapping"][0].tolist()]
    special = set(tokenizer.all_special_ids)
    keep = torch.tensor(
        [
            (int(i) in special) or (b > a and a < len(prefix))
            for i, (a, b) in zip(ids[0].tolist(), offsets, strict=True)
        ],
        device=model.device,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline = torch.where(keep.unsqueeze(0), ids, torch.full_like(ids, pad))
    return _Encoded(ids, enc["attention_mask"].to(model.device), offsets, baseline)


@dataclass(frozen=True)
class _Prediction:
    target: int | None  # the class attributed (None: regression)
    label: str | None
    prob: float | None
    value: float | None


def _predict(task: Mapping[str, Any], head_output: torch.Tensor, spec: Mapping[str, Any]) -> _Prediction:
    """The prediction the attribution explains, with review_scores' meaning of ``prob``
    (P(positive) for binary, P(predicted class) otherwise) and ``value`` (regression, on
    the target scale when the artifact has its mean/std)."""
    import torch

    if task["kind"] == "regression":
        raw = float(head_output.float().reshape(-1)[0])
        value = None
        if "mean" in spec and "std" in spec:
            value = raw * float(spec["std"]) + float(spec["mean"])
            if spec.get("log"):
                value = math.expm1(value)
        return _Prediction(None, None, None, value)
    probs = torch.softmax(head_output.float(), dim=-1)[0]
    target = int(probs.argmax())
    classes = list(task["classes"])
    positive = probs[classes.index(task["positive"])] if task["kind"] == "binary" else probs[target]
    return _Prediction(target, classes[target], float(positive), None)


def _attribute(
    net: Any, task: Mapping[str, Any], encoded: _Encoded, target: int | None, settings: ExplainConfig
) -> tuple[Any, float]:
    """Per-piece attributions (numpy, summed over the embedding dimensions) and the
    convergence delta of Integrated Gradients for one task."""
    from captum.attr import LayerIntegratedGradients

    name, kind = task["name"], task["kind"]

    def forward(input_ids, attention_mask):
        outputs, _ = net(input_ids, attention_mask)
        if kind == "regression":
            return outputs[name].float().reshape(-1)
        return log_odds(outputs[name].float())

    lig = LayerIntegratedGradients(forward, net.encoder.get_input_embeddings())
    attr, delta = lig.attribute(
        inputs=encoded.ids,
        baselines=encoded.baseline,
        additional_forward_args=(encoded.mask,),
        target=target,
        n_steps=settings.n_steps,
        internal_batch_size=settings.internal_batch_size,
        return_convergence_delta=True,
    )
    return attr.sum(dim=-1)[0].detach().float().cpu().numpy(), float(delta.reshape(-1)[0])


def _explain_review(predictor: Predictor, record: Mapping[str, Any], settings: ExplainConfig) -> list[dict[str, Any]]:
    """One row per task the review's language model was trained on (see explain_texts)."""
    import torch

    text, language = record["text"], record["language"]
    model = predictor.models[language]
    encoded = _encode(model, text, predictor.max_length)
    with torch.no_grad():
        heads, _ = model.net(encoded.ids, encoded.mask)
    rows = []
    for task in predictor.tasks:
        name = task["name"]
        if name not in model.trained or task.get("inputs"):
            continue
        prediction = _predict(task, heads[name], model.task_specs.get(name, {}))
        per_piece, delta = _attribute(model.net, task, encoded, prediction.target, settings)
        words = merge_pieces(text, encoded.offsets, per_piece, language, shift=len(model.prefix or ""))
        rows.append(
            {
                "review_id": record.get("review_id"),
                "language": language,
                "task": name,
                "predicted_label": prediction.label,
                "prob": prediction.prob,
                "value": prediction.value,
                "top_tokens": top_words(words, settings.top_k),
                "convergence_delta": delta,
                "selection_reason": record.get("selection_reason"),
                "method": _method(settings.n_steps),
                "model_version": predictor.model_version,
            }
        )
    return rows


def explain_texts(predictor: Predictor, rows: pd.DataFrame, settings: ExplainConfig) -> pd.DataFrame:
    """Integrated-Gradients explanations for ``rows`` (``review_id``, ``text``,
    ``language``, optional ``selection_reason``) with an ``ecomine.model.predict.Predictor``.

    One output row per (review, task its language model was trained on): review_id,
    language, task, predicted_label (null for regression), prob (as in review_scores:
    P(positive) for binary, P(predicted class) otherwise; null for regression), value
    (regression prediction on the target scale when the artifact has its mean/std, else
    null), top_tokens (list of {token, attribution}), convergence_delta,
    selection_reason, method, model_version. Rows with an empty text or a language the
    artifact lacks are skipped (logged)."""
    started = time.time()
    out: list[dict[str, Any]] = []
    for record in rows.to_dict("records"):
        text, language = record.get("text"), record.get("language")
        if not text or language not in predictor.models:
            log.info(
                "explain: skipping review %s (empty text or no model for language %r)",
                record.get("review_id"),
                language,
            )
            continue
        out += _explain_review(predictor, record, settings)
    log.info("explained %d (review, task) pairs in %.1fs", len(out), time.time() - started)
    return pd.DataFrame(out, columns=[c for c in EXPLANATION_COLUMNS if c not in STAMP_COLUMNS])


def explanations_frame(
    spark: SparkSession, explained: pd.DataFrame, run_id: str | None, explained_at: datetime
) -> DataFrame:
    """``explain_texts`` output as a Spark DataFrame with ``EXPLANATIONS_DDL`` (adds the
    ``run_id`` and ``explained_at`` stamps). Bounded: the input is the driver-side sample."""
    rows = []
    for record in explained.to_dict("records"):
        record = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
        record["top_tokens"] = [(t["token"], float(t["attribution"])) for t in record["top_tokens"]]
        rows.append({**record, "run_id": run_id, "explained_at": explained_at})
    return spark.createDataFrame([tuple(r.get(c) for c in EXPLANATION_COLUMNS) for r in rows], schema=EXPLANATIONS_DDL)


def explain_run(
    spark: SparkSession,
    settings: ExplainConfig,
    run_id: str,
    artifact_path: str,
    scores: DataFrame,
    reviews: DataFrame,
    fraud: DataFrame | None = None,
    *,
    explained_at: datetime,
    device: str = "cpu",
) -> DataFrame:
    """Select, explain and frame in one call (what the nightly job runs after scoring):
    returns the Spark DataFrame to MERGE into review_explanations on ``KEYS``."""
    from ecomine.model.predict import Predictor

    predictor = Predictor(artifact_path, device=device)
    picked = select_for_explanation(scores, reviews, fraud, predictor.tasks, settings, run_id=run_id)
    explained = explain_texts(predictor, picked, settings)
    return explanations_frame(spark, explained, run_id, explained_at)
