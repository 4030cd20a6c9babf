//! Reads a worker's slice of every weight from a GGUF file: whole rows in one
//! read, column ranges a few MiB of rows at a time, so memory never holds more
//! than the slice plus one read buffer.

use std::io::{Read, Seek};
use std::ops::Range;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};

use crate::gguf::{tensor_size, GgufError, GgufFile};
use crate::kernels::QMatrix;

use super::{LoadProgress, ModelError};

/// Bytes of whole rows read at a time when only some columns are kept.
const READ_BLOCK: usize = 4 << 20;

pub(super) struct Loader<'f, R> {
    pub file: &'f mut GgufFile<R>,
    pub progress: LoadProgress,
    pub on_progress: &'f mut dyn FnMut(LoadProgress),
    pub types: Vec<(String, GgmlDType)>,
    buf: Vec<u8>,
}

impl<'f, R: Read + Seek> Loader<'f, R> {
    pub fn new(file: &'f mut GgufFile<R>, on_progress: &'f mut dyn FnMut(LoadProgress)) -> Self {
        let all = file.tensors();
        let progress = LoadProgress {
            tensors_done: 0,
            tensors_total: all.len(),
            bytes_done: 0,
            bytes_total: all.iter().map(|(_, t)| tensor_size(t)).sum(),
        };
        Self { file, progress, on_progress, types: Vec::new(), buf: Vec::new() }
    }

    /// The type of tensor `name`, checking its shape.
    pub fn dtype(&self, name: &str, expected: &[usize]) -> Result<GgmlDType, ModelError> {
        let info = self.file.tensor_info(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
        if info.shape.dims() != expected {
            return Err(GgufError::Shape { name: name.into(), expected: expected.to_vec(), actual: info.shape.dims().to_vec() }.into());
        }
        Ok(info.ggml_dtype)
    }

    fn done(&mut self, name: &str, dtype: GgmlDType) {
        if let Some(info) = self.file.tensor_info(name) {
            self.progress.bytes_done += tensor_size(info);
        }
        self.progress.tensors_done += 1;
        (self.on_progress)(self.progress);
        self.types.push((name.to_string(), dtype));
    }

    fn matrix(name: &str, dtype: GgmlDType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix, ModelError> {
        QMatrix::new(dtype, rows, cols, data).map_err(|source| ModelError::Kernel { context: format!("cannot use `{name}`"), source })
    }

    fn row_bytes(name: &str, dtype: GgmlDType, cols: usize) -> Result<usize, ModelError> {
        QMatrix::row_bytes(dtype, cols).map_err(|source| ModelError::Kernel { context: format!("cannot use `{name}`"), source })
    }

    /// Rows `rows` of the `[shape[0], shape[1]]` matrix `name`.
    pub fn rows(&mut self, name: &str, shape: [usize; 2], rows: Range<usize>) -> Result<QMatrix, ModelError> {
        let dtype = self.dtype(name, &shape)?;
        let row_bytes = Self::row_bytes(name, dtype, shape[1])?;
        let mut data = vec![0u8; rows.len() * row_bytes];
        self.file.read_tensor_bytes(name, (rows.start * row_bytes) as u64, &mut data)?;
        self.done(name, dtype);
        Self::matrix(name, dtype, rows.len(), shape[1], data)
    }

    /// Columns `cols` (whole quantization blocks) of every row of the
    /// `[shape[0], shape[1]]` matrix `name`.
    pub fn columns(&mut self, name: &str, shape: [usize; 2], cols: Range<usize>) -> Result<QMatrix, ModelError> {
        if cols == (0..shape[1]) {
            return self.rows(name, shape, 0..shape[0]);
        }
        let dtype = self.dtype(name, &shape)?;
        let block = dtype.block_size();
        if !cols.start.is_multiple_of(block) || !cols.end.is_multiple_of(block) {
            return Err(ModelError::Partition(format!(
                "`{name}` ({dtype:?}) cannot be split at columns {}..{}: its blocks hold {block} values",
                cols.start, cols.end
            )));
        }
        let row_bytes = Self::row_bytes(name, dtype, shape[1])?;
        let (skip, keep) = (cols.start / block * dtype.type_size(), cols.len() / block * dtype.type_size());
        let mut data = Vec::with_capacity(shape[0] * keep);
        let per_read = (READ_BLOCK / row_bytes.max(1)).max(1);
        let mut row = 0;
        while row < shape[0] {
            let n = per_read.min(shape[0] - row);
            self.buf.resize(n * row_bytes, 0);
            self.file.read_tensor_bytes(name, (row * row_bytes) as u64, &mut self.buf)?;
            for r in self.buf.chunks_exact(row_bytes) {
                data.extend_from_slice(&r[skip..skip + keep]);
            }
            row += n;
        }
        self.done(name, dtype);
        Self::matrix(name, dtype, shape[0], cols.len(), data)
    }

    /// A vector (norm weights) as f32.
    pub fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let dtype = self.dtype(name, &[len])?;
        let t = self.file.tensor(name, &Device::Cpu)?;
        let v = t
            .dequantize(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|source| ModelError::Compute { context: format!("cannot dequantize `{name}`"), source })?;
        self.done(name, dtype);
        Ok(v)
    }
}
