#!/usr/bin/env python3
"""Independent NumPy reference forward pass for llama-architecture GGUF models.

What it is
    A deliberately small, readable, slow re-implementation of the llama
    forward pass (token embedding -> N x [RMSNorm, GQA causal attention with
    llama.cpp "normal" RoPE, RMSNorm, SwiGLU FFN] -> final RMSNorm -> output
    projection). Weights are read and dequantized with the PyPI `gguf`
    package (GGUFReader + gguf.quants.dequantize), so it shares no code with
    Sprig's Rust engine. Its purpose is to check Sprig's logits / greedy
    continuations against an independent implementation.

    No KV cache: every step re-runs the whole sequence. Compute is float64
    by default (weights are dequantized to float32 first, as llama.cpp does).

How to run
    Needs numpy and the PyPI `gguf` package (`pip install gguf==0.19.0`); it is
    a tool for regenerating tests/fixtures/smollm2_reference.json, not run by
    scripts/test, which only reads that committed fixture.

    python3 tests/reference/llama_numpy.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --ids 1,9690,198 --steps 8 [--neox] [--text]

    Prints JSON: {"greedy_ids": [...], "top5": [[[id, logit], ...] per step],
    "logits_first_step_sample": [first 8 logits of step 1], ...}.
    --neox switches to the NeoX half-split RoPE (for diagnosis only; llama
    GGUF models need the default adjacent-pair rotation).
    --text adds a "text" field decoded with the GGUF byte-level BPE vocab.
"""
import argparse
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


class Model:
    def __init__(self, path, dtype=np.float64):
        r = GGUFReader(path)
        arch = field(r, "general.architecture")
        if arch != "llama":
            raise SystemExit(f"unsupported architecture {arch!r}")
        self.n_layer = int(field(r, "llama.block_count"))
        self.n_embd = int(field(r, "llama.embedding_length"))
        self.n_head = int(field(r, "llama.attention.head_count"))
        self.n_head_kv = int(field(r, "llama.attention.head_count_kv", self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.rope_dim = int(field(r, "llama.rope.dimension_count", self.head_dim))
        self.rope_base = float(field(r, "llama.rope.freq_base", 10000.0))
        self.eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.tokens = field(r, "tokenizer.ggml.tokens")
        self.dtype = dtype

        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            # GGUF ne = [in, out]; numpy shape is reversed -> (out, in), i.e. y = W @ x.
            a = np.asarray(a, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
            self.w[t.name] = a.astype(dtype)
        self.emb = self.w["token_embd.weight"]  # (n_vocab, n_embd)
        assert self.emb.shape[1] == self.n_embd, self.emb.shape
        # Tied embeddings when there is no separate output matrix.
        self.out = self.w.get("output.weight", self.emb)

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, neox=False):
        """x: (T, n_heads, head_dim); positions 0..T-1."""
        T = x.shape[0]
        d = self.rope_dim
        i = np.arange(d // 2, dtype=np.float64)
        theta = self.rope_base ** (-2.0 * i / d)            # (d/2,)
        ang = np.arange(T, dtype=np.float64)[:, None] * theta  # (T, d/2)
        cos = np.cos(ang)[:, None, :].astype(self.dtype)
        sin = np.sin(ang)[:, None, :].astype(self.dtype)
        x = x.copy()
        r = x[..., :d]
        if neox:  # pairs (i, i + d/2)
            a, b = r[..., : d // 2], r[..., d // 2:]
        else:     # llama.cpp "normal": adjacent pairs (2i, 2i+1)
            a, b = r[..., 0::2], r[..., 1::2]
        ra, rb = a * cos - b * sin, a * sin + b * cos
        if neox:
            r[..., : d // 2], r[..., d // 2:] = ra, rb
        else:
            r[..., 0::2], r[..., 1::2] = ra, rb
        return x

    def forward(self, ids, neox=False):
        """Returns logits (n_vocab,) for the last position."""
        T, hd, H, Hkv = len(ids), self.head_dim, self.n_head, self.n_head_kv
        group = H // Hkv
        x = self.emb[np.asarray(ids)]  # (T, n_embd)
        mask = np.triu(np.full((T, T), -np.inf, dtype=self.dtype), k=1)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rmsnorm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(T, H, hd)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(T, Hkv, hd)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(T, Hkv, hd)
            q, k = self.rope(q, neox), self.rope(k, neox)
            att_out = np.empty((T, H, hd), dtype=self.dtype)
            for hh in range(H):
                kv = hh // group  # GQA: query head -> KV head
                s = (q[:, hh, :] @ k[:, kv, :].T) / np.sqrt(hd) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att_out[:, hh, :] = s @ v[:, kv, :]
            x = x + att_out.reshape(T, H * hd) @ self.w[p + "attn_output.weight"].T
            h = self.rmsnorm(x, self.w[p + "ffn_norm.weight"])
            g = h @ self.w[p + "ffn_gate.weight"].T
            u = h @ self.w[p + "ffn_up.weight"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ self.w[p + "ffn_down.weight"].T
        x = self.rmsnorm(x[-1], self.w["output_norm.weight"])
        return self.out @ x


def bytes_to_unicode():
    """GPT-2 byte <-> printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def decode(tokens, ids):
    inv = {c: b for b, c in bytes_to_unicode().items()}
    out = bytearray()
    for i in ids:
        for ch in tokens[i]:
            if ch in inv:
                out.append(inv[ch])
            else:
                out.extend(ch.encode("utf-8"))
    return out.decode("utf-8", errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--ids", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--neox", action="store_true", help="use NeoX RoPE (diagnosis only)")
    ap.add_argument("--f32", action="store_true", help="compute in float32 instead of float64")
    ap.add_argument("--text", action="store_true", help="also print decoded text")
    a = ap.parse_args()

    m = Model(a.model, np.float32 if a.f32 else np.float64)
    ids = [int(s) for s in a.ids.split(",") if s.strip()]
    greedy, top5, first = [], [], None
    for step in range(a.steps):
        logits = m.forward(ids + greedy, neox=a.neox)
        if first is None:
            first = [float(v) for v in logits[:8]]
        order = np.argsort(-logits, kind="stable")[:5]
        top5.append([(int(i), float(logits[i])) for i in order])
        greedy.append(int(order[0]))
        print(f"step {step}: {greedy[-1]} top2 margin {logits[order[0]] - logits[order[1]]:.4f}",
              file=sys.stderr, flush=True)
    res = {"greedy_ids": greedy, "top5": top5, "logits_first_step_sample": first}
    if a.text:
        res["text"] = decode(m.tokens, greedy)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
