//! GGUF model files: reading over any byte source, header first, then tensor by
//! tensor, from one file or from gguf-split shards; and writing a model as
//! gguf-split shards ([`split`]).

pub mod bounds;
mod file;
mod info;
mod meta;
mod source;
pub mod split;

pub use file::{split_paths, tensor_size, GgufFile};
pub use info::ModelInfo;
pub use meta::Metadata;
pub use source::{ByteSource, ChunkedBytes, SourceReader};
pub use split::{write_split, SplitError, WrittenShard};

/// Errors of reading a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The header, metadata or tensor table could not be parsed (wrong magic,
    /// truncated file, unknown value or tensor type...).
    #[error("cannot read the GGUF header: {source}")]
    Header {
        /// What the parser said, with the offset or key where it stopped.
        #[source]
        source: candle_core::Error,
    },
    /// The header states a count, length or extent that cannot be (checked
    /// by [`bounds::check_header`] before anything is allocated for it).
    #[error("the GGUF header's {field} {reason}")]
    Bounds {
        /// The field: a header field, a metadata key or a tensor.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A metadata key the engine needs is absent.
    #[error("GGUF metadata key `{key}` is missing")]
    MissingKey {
        /// The missing key.
        key: String,
    },
    /// A metadata key holds a value of the wrong type or range.
    #[error("GGUF metadata key `{key}` is invalid: {reason}")]
    BadKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the model needs is not in the file.
    #[error("tensor `{name}` is missing from the GGUF file")]
    MissingTensor {
        /// The tensor's GGUF name.
        name: String,
    },
    /// A tensor's data could not be read (truncated file, I/O error...).
    #[error("cannot read tensor `{name}`: {source}")]
    Tensor {
        /// The tensor's GGUF name.
        name: String,
        /// What failed.
        #[source]
        source: candle_core::Error,
    },
    /// A tensor's shape disagrees with the model's metadata.
    #[error("tensor `{name}` has shape {actual:?}, the metadata implies {expected:?}")]
    Shape {
        /// The tensor's GGUF name.
        name: String,
        /// The shape the metadata implies.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },
    /// gguf-split shards that do not fit together.
    #[error("inconsistent gguf-split shards: {0}")]
    Split(String),
    /// Reading the byte source failed.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
