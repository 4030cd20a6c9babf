//! Converting a pruned Hugging Face checkpoint (safetensors) into quantized
//! gguf-split shards the browser loads: reading it ([`checkpoint`]), naming and
//! permuting its tensors the llama.cpp way ([`mapping`]), choosing each
//! tensor's type ([`recipe`]), the GGUF metadata ([`metadata`]) and quantizing
//! tensor by tensor, in row blocks, with figures ([`quantize`]).

pub mod checkpoint;
pub mod mapping;
pub mod metadata;
pub mod quantize;
pub mod recipe;
