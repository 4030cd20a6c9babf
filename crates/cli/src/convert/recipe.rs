//! Which GGUF type each tensor gets: one type for every matrix, or a mix like
//! llama.cpp's Q4_K_M (more bits where the error costs most). Norms stay F32;
//! a matrix whose rows are not a whole number of the type's blocks falls back
//! to Q8_0 (or F16).

use std::str::FromStr;

use candle_core::quantized::GgmlDType;

use super::mapping::{Role, TensorPlan};

/// A quantization recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// Every matrix of this type (the output matrix gets Q6_K when the type
    /// is smaller, as llama.cpp does).
    Uniform(GgmlDType),
    /// llama.cpp's Q4_K_M: Q4_K, with Q6_K for the output matrix and for
    /// attn_v and ffn_down in the first and last eighth of the layers and every
    /// third layer between.
    Q4KM,
}

/// The names `--quant` accepts.
pub const NAMES: &str = "f32, f16, q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, q3_k, q2_k, q4_k_m";

impl FromStr for Recipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => Self::Uniform(GgmlDType::F32),
            "f16" => Self::Uniform(GgmlDType::F16),
            "q8_0" => Self::Uniform(GgmlDType::Q8_0),
            "q6_k" => Self::Uniform(GgmlDType::Q6K),
            "q5_k" => Self::Uniform(GgmlDType::Q5K),
            "q5_1" => Self::Uniform(GgmlDType::Q5_1),
            "q5_0" => Self::Uniform(GgmlDType::Q5_0),
            "q4_1" => Self::Uniform(GgmlDType::Q4_1),
            "q4_k" => Self::Uniform(GgmlDType::Q4K),
            "q4_0" => Self::Uniform(GgmlDType::Q4_0),
            "q3_k" => Self::Uniform(GgmlDType::Q3K),
            "q2_k" => Self::Uniform(GgmlDType::Q2K),
            "q4_k_m" => Self::Q4KM,
            other => return Err(format!("unknown quantization `{other}`; one of {NAMES}")),
        })
    }
}

fn bits(t: GgmlDType) -> f64 {
    t.type_size() as f64 * 8.0 / t.block_size() as f64
}

/// llama.cpp's `use_more_bits`.
fn more_bits(layer: usize, layers: usize) -> bool {
    let (first, last) = (layers / 8, 7 * layers / 8);
    !(first..last).contains(&layer) || (layer - first) % 3 == 2
}

/// A type's name as llama.cpp spells it (`Q4_K`, `Q8_0`, `F16`).
pub fn type_name(t: GgmlDType) -> String {
    format!("{t:?}").replace('K', "_K").to_uppercase()
}

impl Recipe {
    /// The recipe's name as GGUF files and file names say it.
    pub fn name(self) -> String {
        match self {
            Self::Q4KM => "Q4_K_M".into(),
            Self::Uniform(t) => type_name(t),
        }
    }

    /// llama.cpp's `general.file_type` number.
    pub fn file_type(self) -> u32 {
        match self {
            Self::Q4KM => 15,
            Self::Uniform(t) => match t {
                GgmlDType::F32 => 0,
                GgmlDType::F16 => 1,
                GgmlDType::Q4_0 => 2,
                GgmlDType::Q4_1 => 3,
                GgmlDType::Q5_0 => 8,
                GgmlDType::Q5_1 => 9,
                GgmlDType::Q8_0 => 7,
                GgmlDType::Q2K => 10,
                GgmlDType::Q3K => 12,
                GgmlDType::Q4K => 14,
                GgmlDType::Q5K => 16,
                GgmlDType::Q6K => 18,
                _ => 0,
            },
        }
    }

    /// The type of `t` in a model of `layers` blocks.
    pub fn dtype(self, t: &TensorPlan, layers: usize) -> GgmlDType {
        if t.role == Role::Norm {
            return GgmlDType::F32;
        }
        let wanted = match self {
            Self::Uniform(base) if t.role == Role::Output && bits(base) < bits(GgmlDType::Q6K) => GgmlDType::Q6K,
            Self::Uniform(base) => base,
            Self::Q4KM => match (t.role, t.kind(), t.layer) {
                (Role::Output, ..) => GgmlDType::Q6K,
                (_, "attn_v" | "ffn_down", Some(i)) if more_bits(i, layers) => GgmlDType::Q6K,
                _ => GgmlDType::Q4K,
            },
        };
        let cols = t.shape.last().copied().unwrap_or(1);
        if cols % wanted.block_size() == 0 {
            wanted
        } else if cols % GgmlDType::Q8_0.block_size() == 0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::F16
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(gguf: &str, layer: usize, cols: usize) -> TensorPlan {
        TensorPlan {
            hf: String::new(),
            gguf: format!("blk.{layer}.{gguf}.weight"),
            shape: vec![256, cols],
            role: Role::Linear,
            layer: Some(layer),
            permute_heads: None,
        }
    }

    #[test]
    fn q4_k_m_gives_more_bits_where_llama_cpp_does() {
        let r: Recipe = "q4_k_m".parse().unwrap();
        let v: Vec<bool> = (0..32).map(|i| r.dtype(&linear("attn_v", i, 4096), 32) == GgmlDType::Q6K).collect();
        // llama.cpp, 32 layers: 0-3, 28-31, and 6, 9, 12, ... 27.
        let expected: Vec<bool> = (0..32).map(|i| !(4..28).contains(&i) || (i - 4) % 3 == 2).collect();
        assert_eq!(v, expected);
        assert_eq!(r.dtype(&linear("ffn_up", 0, 4096), 32), GgmlDType::Q4K);
        assert_eq!(r.name(), "Q4_K_M");
        assert_eq!("Q6_K".parse::<Recipe>().unwrap().name(), "Q6_K");
        assert_eq!("q8_0".parse::<Recipe>().unwrap().name(), "Q8_0");
    }

    #[test]
    fn rows_that_do_not_fit_the_blocks_fall_back() {
        let r = Recipe::Uniform(GgmlDType::Q4K);
        assert_eq!(r.dtype(&linear("ffn_up", 0, 64), 2), GgmlDType::Q8_0);
        assert_eq!(r.dtype(&linear("ffn_up", 0, 48), 2), GgmlDType::F16);
        assert!("q9".parse::<Recipe>().is_err());
    }
}
