//! Reading a SentencePiece `tokenizer.model` (a protobuf `ModelProto`) into the
//! GGUF tokenizer keys (`tokenizer.ggml.*`), the way llama.cpp's converter
//! writes them.

use candle_core::quantized::gguf_file::Value;

/// Errors of reading a SentencePiece model.
#[derive(Debug, thiserror::Error)]
pub enum SentencePieceError {
    /// The bytes are not a valid protobuf message of the expected shape.
    #[error("malformed SentencePiece model at byte {offset}: {reason}")]
    Malformed {
        /// Where parsing stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The model is not a BPE model (Mistral and Llama use BPE).
    #[error("SentencePiece model type {0} is not BPE (2)")]
    NotBpe(u64),
    /// The model holds no pieces.
    #[error("the SentencePiece model has no pieces")]
    Empty,
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece's text (`▁` for spaces, `<0x0A>` for byte pieces).
    pub text: String,
    /// Its score (higher merges first).
    pub score: f32,
    /// SentencePiece type, numbered as GGUF's `token_type` (1 normal, 2 unknown,
    /// 3 control, 4 user-defined, 5 unused, 6 byte).
    pub kind: i32,
}

/// The parts of a SentencePiece model a tokenizer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SentencePieceModel {
    /// The vocabulary, by id.
    pub pieces: Vec<Piece>,
    /// Unknown token id.
    pub unk_id: u32,
    /// Beginning-of-sequence id.
    pub bos_id: u32,
    /// End-of-sequence id.
    pub eos_id: u32,
    /// Whether a space is put before the text (`add_dummy_prefix`).
    pub add_dummy_prefix: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> SentencePieceError {
        SentencePieceError::Malformed { offset: self.pos, reason }
    }

    fn varint(&mut self) -> Result<u64, SentencePieceError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], SentencePieceError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| self.err("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next (field number, wire type, payload).
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, SentencePieceError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(self.bytes(8)?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| self.err("length too large"))?;
                Field::Bytes(self.bytes(n)?)
            }
            5 => Field::Fixed32(self.bytes(4)?),
            _ => return Err(self.err("unsupported wire type")),
        };
        Ok(Some((number, value)))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(#[allow(dead_code)] &'a [u8]),
    Bytes(&'a [u8]),
    Fixed32(&'a [u8]),
}

fn fields<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(u64, Field<'a>, usize) -> Result<(), SentencePieceError>,
) -> Result<(), SentencePieceError> {
    let mut r = Reader { buf, pos: 0 };
    while let Some((n, f)) = r.field()? {
        each(n, f, r.pos)?;
    }
    Ok(())
}

impl SentencePieceModel {
    /// Parses the bytes of a `tokenizer.model`.
    ///
    /// # Errors
    /// [`SentencePieceError`] for malformed bytes, a non-BPE model or no pieces.
    pub fn parse(bytes: &[u8]) -> Result<Self, SentencePieceError> {
        let mut pieces = Vec::new();
        let (mut unk_id, mut bos_id, mut eos_id) = (0u32, 1u32, 2u32);
        let mut model_type = 1u64;
        let mut add_dummy_prefix = true;
        fields(bytes, |n, f, at| {
            match (n, f) {
                (1, Field::Bytes(p)) => {
                    let mut piece = Piece { text: String::new(), score: 0.0, kind: 1 };
                    fields(p, |n, f, _| {
                        match (n, f) {
                            (1, Field::Bytes(s)) => {
                                piece.text = String::from_utf8(s.to_vec())
                                    .map_err(|_| SentencePieceError::Malformed { offset: at, reason: "piece is not UTF-8" })?
                            }
                            (2, Field::Fixed32(b)) => piece.score = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                            (3, Field::Varint(v)) => piece.kind = i32::try_from(v).unwrap_or(1),
                            _ => {}
                        }
                        Ok(())
                    })?;
                    pieces.push(piece);
                }
                (2, Field::Bytes(spec)) => fields(spec, |n, f, _| {
                    match (n, f) {
                        (3, Field::Varint(v)) => model_type = v,
                        (40, Field::Varint(v)) => unk_id = v as u32,
                        (41, Field::Varint(v)) => bos_id = v as u32,
                        (42, Field::Varint(v)) => eos_id = v as u32,
                        _ => {}
                    }
                    Ok(())
                })?,
                (3, Field::Bytes(spec)) => fields(spec, |n, f, _| {
                    if let (3, Field::Varint(v)) = (n, f) {
                        add_dummy_prefix = v != 0;
                    }
                    Ok(())
                })?,
                _ => {}
            }
            Ok(())
        })?;
        if model_type != 2 {
            return Err(SentencePieceError::NotBpe(model_type));
        }
        if pieces.is_empty() {
            return Err(SentencePieceError::Empty);
        }
        let n = pieces.len() as u32;
        if unk_id >= n || bos_id >= n || eos_id >= n {
            return Err(SentencePieceError::Malformed { offset: 0, reason: "special token id outside the vocabulary" });
        }
        Ok(Self { pieces, unk_id, bos_id, eos_id, add_dummy_prefix })
    }

    /// The `tokenizer.ggml.*` keys of a GGUF file for this vocabulary.
    pub fn gguf_metadata(&self) -> Vec<(String, Value)> {
        let u32v = |v: u32| Value::U32(v);
        vec![
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            ("tokenizer.ggml.tokens".into(), Value::Array(self.pieces.iter().map(|p| Value::String(p.text.clone())).collect())),
            ("tokenizer.ggml.scores".into(), Value::Array(self.pieces.iter().map(|p| Value::F32(p.score)).collect())),
            ("tokenizer.ggml.token_type".into(), Value::Array(self.pieces.iter().map(|p| Value::I32(p.kind)).collect())),
            ("tokenizer.ggml.bos_token_id".into(), u32v(self.bos_id)),
            ("tokenizer.ggml.eos_token_id".into(), u32v(self.eos_id)),
            ("tokenizer.ggml.unknown_token_id".into(), u32v(self.unk_id)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
            ("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)),
            ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(self.add_dummy_prefix)),
        ]
    }
}
