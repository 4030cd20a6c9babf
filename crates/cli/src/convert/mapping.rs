//! Hugging Face tensor names to GGUF names, in the order llama.cpp writes
//! them, and the row permutation llama.cpp's converter applies to the query
//! and key projections: Hugging Face stores each head's rotary pairs as two
//! halves, GGUF (and the engine's RoPE) as interleaved pairs.

use super::checkpoint::HfConfig;

/// What role a tensor plays (decides its type and whether it was pruned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The token embedding.
    Embedding,
    /// A norm's scale vector.
    Norm,
    /// A linear layer of a block: Wanda pruned these.
    Linear,
    /// The output (lm_head) matrix.
    Output,
}

/// One tensor to convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    /// Name in the checkpoint.
    pub hf: String,
    /// Name in the GGUF file.
    pub gguf: String,
    /// Shape (rows, cols), or (len) for a vector.
    pub shape: Vec<usize>,
    /// Its role.
    pub role: Role,
    /// The block it belongs to.
    pub layer: Option<usize>,
    /// For the query/key projections: the heads its rows are permuted in.
    pub permute_heads: Option<usize>,
}

impl TensorPlan {
    /// The GGUF name's last part before `.weight` (`attn_v`, `ffn_down`…).
    pub fn kind(&self) -> &str {
        let base = self.gguf.strip_suffix(".weight").unwrap_or(&self.gguf);
        base.rsplit('.').next().unwrap_or(base)
    }
}

/// Every tensor of the model, in GGUF order.
pub fn plan(cfg: &HfConfig) -> Vec<TensorPlan> {
    let (h, ff, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let q = cfg.num_attention_heads * cfg.head_dim();
    let kv = cfg.kv_heads() * cfg.head_dim();
    let t = |hf: String, gguf: String, shape: Vec<usize>, role, layer, permute_heads| TensorPlan {
        hf,
        gguf,
        shape,
        role,
        layer,
        permute_heads,
    };
    let mut out = vec![t("model.embed_tokens.weight".into(), "token_embd.weight".into(), vec![v, h], Role::Embedding, None, None)];
    for i in 0..cfg.num_hidden_layers {
        let hf = |s: &str| format!("model.layers.{i}.{s}.weight");
        let g = |s: &str| format!("blk.{i}.{s}.weight");
        out.push(t(hf("input_layernorm"), g("attn_norm"), vec![h], Role::Norm, Some(i), None));
        out.push(t(hf("self_attn.q_proj"), g("attn_q"), vec![q, h], Role::Linear, Some(i), Some(cfg.num_attention_heads)));
        out.push(t(hf("self_attn.k_proj"), g("attn_k"), vec![kv, h], Role::Linear, Some(i), Some(cfg.kv_heads())));
        out.push(t(hf("self_attn.v_proj"), g("attn_v"), vec![kv, h], Role::Linear, Some(i), None));
        out.push(t(hf("self_attn.o_proj"), g("attn_output"), vec![h, q], Role::Linear, Some(i), None));
        out.push(t(hf("post_attention_layernorm"), g("ffn_norm"), vec![h], Role::Norm, Some(i), None));
        out.push(t(hf("mlp.gate_proj"), g("ffn_gate"), vec![ff, h], Role::Linear, Some(i), None));
        out.push(t(hf("mlp.up_proj"), g("ffn_up"), vec![ff, h], Role::Linear, Some(i), None));
        out.push(t(hf("mlp.down_proj"), g("ffn_down"), vec![h, ff], Role::Linear, Some(i), None));
    }
    out.push(t("model.norm.weight".into(), "output_norm.weight".into(), vec![h], Role::Norm, None, None));
    if !cfg.tie_word_embeddings {
        out.push(t("lm_head.weight".into(), "output.weight".into(), vec![v, h], Role::Output, None, None));
    }
    out
}

/// The checkpoint row that becomes GGUF row `row` of a query/key projection
/// with `rows` rows in `heads` heads: within each head, GGUF row `2i + j`
/// is Hugging Face row `j · half + i` (llama.cpp's
/// `reshape(heads, 2, half, cols).swapaxes(1, 2)`).
pub fn source_row(row: usize, rows: usize, heads: usize) -> usize {
    let dim = rows / heads;
    let half = dim / 2;
    let (head, within) = (row / dim, row % dim);
    let (i, j) = (within / 2, within % 2);
    head * dim + j * half + i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_interleaves_the_halves_of_each_head() {
        // 2 heads of width 4: HF rows [a0 a1 b0 b1 | c0 c1 d0 d1] -> [a0 b0 a1 b1 | c0 d0 c1 d1].
        let order: Vec<usize> = (0..8).map(|r| source_row(r, 8, 2)).collect();
        assert_eq!(order, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        // A bijection on a Mistral-sized key projection.
        let mut seen: Vec<usize> = (0..1024).map(|r| source_row(r, 1024, 8)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1024).collect::<Vec<_>>());
    }
}
