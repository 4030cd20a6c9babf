//! The token embedding table, kept in its quantized form: only the rows of the
//! tokens being run are dequantized, so a 7B model's table does not take 0.5 GiB
//! of f32 in wasm memory.

use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, QTensor};
use candle_core::{Device, Result, Tensor};

/// A `[vocab, n_embd]` embedding table in any GGUF type.
#[derive(Debug, Clone)]
pub struct QEmbedding {
    table: Arc<QTensor>,
    vocab: usize,
    n_embd: usize,
    row_bytes: usize,
}

impl QEmbedding {
    /// Wraps a `[vocab, n_embd]` quantized table.
    ///
    /// # Errors
    /// When the table is not 2-D or its rows are not whole quantization blocks.
    pub fn new(table: Arc<QTensor>) -> Result<Self> {
        let (vocab, n_embd) = table.shape().dims2()?;
        let dtype = table.dtype();
        if n_embd % dtype.block_size() != 0 {
            candle_core::bail!("embedding rows of {n_embd} are not whole {dtype:?} blocks");
        }
        let row_bytes = n_embd / dtype.block_size() * dtype.type_size();
        Ok(Self { table, vocab, n_embd, row_bytes })
    }

    /// The shared table, for a tied output projection.
    pub fn table(&self) -> Arc<QTensor> {
        self.table.clone()
    }

    /// Number of rows (the vocabulary size).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The rows of `ids` as f32, `[1, ids.len(), n_embd]`.
    ///
    /// # Errors
    /// An id outside the vocabulary; candle errors.
    pub fn forward(&self, ids: &[u32], device: &Device) -> Result<Tensor> {
        let data = self.table.data()?;
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let id = id as usize;
            if id >= self.vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {}", self.vocab);
            }
            let bytes = &data[id * self.row_bytes..(id + 1) * self.row_bytes];
            let row = qtensor_from_ggml(self.table.dtype(), bytes, vec![self.n_embd], device)?;
            rows.push(row.dequantize(device)?);
        }
        Tensor::stack(&rows, 0)?.unsqueeze(0)
    }
}
