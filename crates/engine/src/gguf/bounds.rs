//! A bounded pass over a GGUF header before candle's reader parses it.
//!
//! candle's reader trusts the file: it allocates every string and array at
//! the length the file states, divides by `general.alignment` (0 panics),
//! and sizes nothing against the file. In wasm32 a stated length of a few
//! GiB is an abort or a memory that never shrinks, so this pass reads the
//! header with every count capped and checked against the bytes the file
//! holds, and every tensor's extent computed with checked arithmetic, before
//! anything is allocated for it. It allocates only the keys it reads (at
//! most [`MAX_KEY`] bytes each).

use std::io::{Read, Seek, SeekFrom};

use super::GgufError;

/// The most tensors a header may list.
pub const MAX_TENSORS: u64 = 1 << 16;
/// The most metadata keys a header may hold.
pub const MAX_KEYS: u64 = 1 << 16;
/// The most elements of one metadata array (a vocabulary of 2 Mi tokens).
pub const MAX_ARRAY: u64 = 1 << 21;
/// The longest metadata string value (a chat template is a few KiB).
pub const MAX_STRING: u64 = 1 << 20;
/// The longest key or tensor name.
pub const MAX_KEY: u64 = 1 << 16;
/// The most elements of one tensor (2^40: far past any model's).
pub const MAX_ELEMENTS: u64 = 1 << 40;
/// The largest alignment accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;
/// GGML's most dimensions.
const MAX_DIMS: u32 = 4;

/// Block size in elements and bytes per block of GGML tensor type `t`, for
/// the types candle reads.
fn block(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> GgufError {
    GgufError::Bounds { field: field.into(), reason: reason.into() }
}

/// A reader that knows where it is and how long the file is.
struct Scan<'a, R> {
    r: &'a mut R,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Scan<'_, R> {
    fn io(&self, e: std::io::Error) -> GgufError {
        GgufError::Io { what: format!("the GGUF header at byte {}", self.pos), source: e }
    }

    fn bytes<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        if self.len.saturating_sub(self.pos) < N as u64 {
            return Err(bad(field, format!("is cut off by the end of the file at byte {}", self.len)));
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(field)?))
    }

    /// Skips `n` bytes, which must lie in the file.
    fn skip(&mut self, n: u64, field: &str) -> Result<(), GgufError> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(bad(field, format!("claims {n} bytes, past the end of the file ({} bytes)", self.len)));
        }
        self.pos += n;
        // Relative, so that a buffered reader keeps its buffer (a vocabulary
        // is tens of thousands of short skips).
        let n = i64::try_from(n).map_err(|_| bad(field, format!("claims {n} bytes")))?;
        self.r.seek_relative(n).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// A string's length, checked against `max` and the file.
    fn string_len(&mut self, field: &str, max: u64) -> Result<u64, GgufError> {
        let n = self.u64(field)?;
        if n > max {
            return Err(bad(field, format!("is a string of {n} bytes; at most {max} are accepted")));
        }
        if n > self.len.saturating_sub(self.pos) {
            return Err(bad(field, format!("is a string of {n} bytes, past the end of the file")));
        }
        Ok(n)
    }

    /// Reads a short string (a key or tensor name).
    fn name(&mut self, field: &str) -> Result<String, GgufError> {
        let n = self.string_len(field, MAX_KEY)?;
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| self.io(e))?;
        self.pos += n;
        String::from_utf8(b).map_err(|_| bad(field, "is not UTF-8"))
    }

    /// Skips a metadata value of type `t`; returns it when it is an unsigned
    /// integer of at most 64 bits (for `general.alignment`).
    fn value(&mut self, t: u32, field: &str, depth: u32) -> Result<Option<u64>, GgufError> {
        let fixed = |t: u32| match t {
            0 | 1 | 7 => Some(1u64),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        match t {
            0 => Ok(Some(u64::from(self.bytes::<1>(field)?[0]))),
            2 => Ok(Some(u64::from(u16::from_le_bytes(self.bytes(field)?)))),
            4 => Ok(Some(u64::from(self.u32(field)?))),
            10 => Ok(Some(self.u64(field)?)),
            8 => {
                let n = self.string_len(field, MAX_STRING)?;
                self.skip(n, field)?;
                Ok(None)
            }
            9 => {
                if depth > 0 {
                    return Err(bad(field, "is an array of arrays of arrays"));
                }
                let item = self.u32(field)?;
                let n = self.u64(field)?;
                if n > MAX_ARRAY {
                    return Err(bad(field, format!("is an array of {n} values; at most {MAX_ARRAY} are accepted")));
                }
                match fixed(item) {
                    Some(size) => self.skip(n * size, field)?,
                    None => {
                        // Every value takes at least 8 bytes (a length or a type).
                        if n > self.len.saturating_sub(self.pos) / 8 {
                            return Err(bad(field, format!("is an array of {n} values, past the end of the file")));
                        }
                        for _ in 0..n {
                            self.value(item, field, depth + 1)?;
                        }
                    }
                }
                Ok(None)
            }
            t => match fixed(t) {
                Some(size) => self.skip(size, field).map(|()| None),
                None => Err(bad(field, format!("has the unknown value type {t}"))),
            },
        }
    }
}

/// Checks the header of the GGUF file `r` (any position; left at the start):
/// magic and version; the counts of keys, tensors, array values and string
/// bytes against their caps and the file's length; `general.alignment`
/// (non-zero, a power of two, at most 1 MiB); each tensor's dimensions (1 to
/// 4, none 0), element count, type and whole blocks; and that each tensor's
/// data lies inside the file.
///
/// # Errors
/// [`GgufError::Bounds`] naming the field and what is wrong;
/// [`GgufError::Io`] when reading fails.
pub fn check_header<R: Read + Seek>(r: &mut R) -> Result<(), GgufError> {
    let io = |e| GgufError::Io { what: "the GGUF file's length".into(), source: e };
    let len = r.seek(SeekFrom::End(0)).map_err(io)?;
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut s = Scan { r, pos: 0, len };
    if &s.bytes::<4>("magic")? != b"GGUF" {
        return Err(bad("magic", "is not `GGUF`: this is not a GGUF file"));
    }
    let version = s.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(bad("version", format!("is {version}; GGUF versions 2 and 3 are read")));
    }
    let tensors = s.u64("tensor_count")?;
    if tensors > MAX_TENSORS {
        return Err(bad("tensor_count", format!("is {tensors}; at most {MAX_TENSORS} are accepted")));
    }
    let keys = s.u64("metadata_kv_count")?;
    if keys > MAX_KEYS {
        return Err(bad("metadata_kv_count", format!("is {keys}; at most {MAX_KEYS} are accepted")));
    }
    let mut alignment = 32u64;
    for i in 0..keys {
        let key = s.name(&format!("metadata key {i}"))?;
        let t = s.u32(&key)?;
        let v = s.value(t, &key, 0)?;
        if key == "general.alignment" {
            let a = v.ok_or_else(|| bad(&key, "is not an unsigned integer"))?;
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(bad(&key, format!("is {a}; it must be a power of two from 1 to {MAX_ALIGNMENT}")));
            }
            alignment = a;
        }
    }
    let mut extents = Vec::with_capacity(tensors as usize);
    for i in 0..tensors {
        let name = s.name(&format!("tensor {i}'s name"))?;
        let field = format!("tensor `{name}`");
        let dims = s.u32(&field)?;
        if !(1..=MAX_DIMS).contains(&dims) {
            return Err(bad(&field, format!("has {dims} dimensions; 1 to {MAX_DIMS} are possible")));
        }
        let mut elements = 1u64;
        let mut first = 0;
        for d in 0..dims {
            let n = s.u64(&field)?;
            if n == 0 {
                return Err(bad(&field, format!("has a dimension of 0 (dimension {d})")));
            }
            if d == 0 {
                first = n;
            }
            elements = elements
                .checked_mul(n)
                .filter(|&e| e <= MAX_ELEMENTS)
                .ok_or_else(|| bad(&field, format!("has more than {MAX_ELEMENTS} elements")))?;
        }
        let t = s.u32(&field)?;
        let (per, size) = block(t).ok_or_else(|| bad(&field, format!("has the unknown tensor type {t}")))?;
        if first % per != 0 {
            return Err(bad(&field, format!("has rows of {first} values, not whole blocks of {per} for its type")));
        }
        let offset = s.u64(&field)?;
        if offset % alignment != 0 {
            return Err(bad(&field, format!("starts at offset {offset}, not a multiple of the alignment {alignment}")));
        }
        extents.push((field, offset, elements / per * size));
    }
    let data = s.pos.div_ceil(alignment) * alignment;
    for (field, offset, bytes) in extents {
        let end = data.checked_add(offset).and_then(|a| a.checked_add(bytes));
        if end.is_none_or(|end| end > len) {
            return Err(bad(
                &field,
                format!(
                    "needs bytes {offset} to {} of the tensor data, past the end of the file ({len} bytes)",
                    offset.saturating_add(bytes)
                ),
            ));
        }
    }
    r.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(())
}
