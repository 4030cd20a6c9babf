//! The two model shapes `sprig synth` writes and their tensors, named and
//! ordered as Hugging Face's `MistralForCausalLM` state dict.

/// A shape `sprig synth` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeName {
    /// Two layers, width 256 (a whole K-quant block per row): about 35 MB in
    /// f16, for tests.
    Tiny,
    /// Mistral-7B-Instruct-v0.2: 32 layers, width 4096, 7.24 billion parameters.
    #[value(name = "mistral-7b")]
    Mistral7b,
}

/// The dimensions of a Mistral model (the fields of its `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `hidden_size`.
    pub hidden: usize,
    /// `intermediate_size`.
    pub intermediate: usize,
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `num_key_value_heads`.
    pub kv_heads: usize,
    /// `max_position_embeddings`.
    pub max_positions: usize,
    /// `vocab_size`.
    pub vocab: usize,
}

impl Shape {
    /// The dimensions of `name` with a vocabulary of `vocab` tokens.
    pub fn new(name: ShapeName, vocab: usize) -> Self {
        match name {
            ShapeName::Tiny => Self { hidden: 256, intermediate: 512, layers: 2, heads: 4, kv_heads: 2, max_positions: 512, vocab },
            ShapeName::Mistral7b => {
                Self { hidden: 4096, intermediate: 14_336, layers: 32, heads: 32, kv_heads: 8, max_positions: 32_768, vocab }
            }
        }
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Every tensor in the order of the model's state dict: the embeddings,
    /// each layer (attention, MLP, then its two norms), the final norm, the
    /// output head.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let (h, kv) = (self.hidden, self.kv_heads * self.head_dim());
        let q = self.heads * self.head_dim();
        let mut out = vec![TensorSpec::matrix("model.embed_tokens.weight", self.vocab, h, Kind::Dense)];
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let linear = |name: &str, rows, cols, input: &str| {
                TensorSpec::matrix(&format!("{p}.{name}.weight"), rows, cols, Kind::Pruned { input: format!("{p}.{input}") })
            };
            out.push(linear("self_attn.q_proj", q, h, "self_attn.input"));
            out.push(linear("self_attn.k_proj", kv, h, "self_attn.input"));
            out.push(linear("self_attn.v_proj", kv, h, "self_attn.input"));
            out.push(linear("self_attn.o_proj", h, q, "self_attn.o_proj.input"));
            out.push(linear("mlp.gate_proj", self.intermediate, h, "mlp.input"));
            out.push(linear("mlp.up_proj", self.intermediate, h, "mlp.input"));
            out.push(linear("mlp.down_proj", h, self.intermediate, "mlp.down_proj.input"));
            out.push(TensorSpec::vector(&format!("{p}.input_layernorm.weight"), h));
            out.push(TensorSpec::vector(&format!("{p}.post_attention_layernorm.weight"), h));
        }
        out.push(TensorSpec::vector("model.norm.weight", h));
        out.push(TensorSpec::matrix("lm_head.weight", self.vocab, h, Kind::Dense));
        out
    }
}

/// What a tensor's values look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Embeddings and the output head: noise of standard deviation 0.02.
    Dense,
    /// An RMS norm's scale: near 1.
    Norm,
    /// A linear layer pruned Wanda-style; `input` names the activation it
    /// reads, whose per-column norms decide what is pruned.
    Pruned {
        /// The activation's name, shared by every matrix that reads it.
        input: String,
    },
}

/// One tensor: its name, its shape, and what its values look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The Hugging Face name (`model.layers.0.mlp.up_proj.weight`).
    pub name: String,
    /// The shape as torch stores it: `[out_features, in_features]` or `[n]`.
    pub shape: Vec<usize>,
    /// What its values look like.
    pub kind: Kind,
}

impl TensorSpec {
    fn matrix(name: &str, rows: usize, cols: usize, kind: Kind) -> Self {
        Self { name: name.to_string(), shape: vec![rows, cols], kind }
    }

    fn vector(name: &str, n: usize) -> Self {
        Self { name: name.to_string(), shape: vec![n], kind: Kind::Norm }
    }

    /// The number of rows (1 for a vector).
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len() - 1].iter().product()
    }

    /// The length of a row (the last dimension).
    pub fn cols(&self) -> usize {
        self.shape[self.shape.len() - 1]
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistral_7b_has_the_real_parameter_and_tensor_counts() {
        let tensors = Shape::new(ShapeName::Mistral7b, 32_000).tensors();
        assert_eq!(tensors.len(), 291);
        // Twice the `total_size` of Mistral-7B-Instruct-v0.2's index (bf16).
        assert_eq!(tensors.iter().map(|t| t.len() as u64).sum::<u64>(), 14_483_464_192 / 2);
        let k = tensors.iter().find(|t| t.name == "model.layers.31.self_attn.k_proj.weight").unwrap();
        assert_eq!(k.shape, [1024, 4096]);
        let down = tensors.iter().find(|t| t.name == "model.layers.0.mlp.down_proj.weight").unwrap();
        assert_eq!((down.rows(), down.cols()), (4096, 14_336));
        assert_eq!(down.kind, Kind::Pruned { input: "model.layers.0.mlp.down_proj.input".into() });
    }

    #[test]
    fn tensors_that_read_the_same_input_share_its_name() {
        let tensors = Shape::new(ShapeName::Tiny, 32_000).tensors();
        let input = |n: &str| match &tensors.iter().find(|t| t.name == n).unwrap().kind {
            Kind::Pruned { input } => input.clone(),
            k => panic!("{n}: {k:?}"),
        };
        assert_eq!(input("model.layers.1.self_attn.q_proj.weight"), input("model.layers.1.self_attn.v_proj.weight"));
        assert_eq!(input("model.layers.1.mlp.gate_proj.weight"), input("model.layers.1.mlp.up_proj.weight"));
        assert_ne!(input("model.layers.1.mlp.up_proj.weight"), input("model.layers.0.mlp.up_proj.weight"));
        assert_ne!(input("model.layers.1.self_attn.o_proj.weight"), input("model.layers.1.self_attn.q_proj.weight"));
    }
}
