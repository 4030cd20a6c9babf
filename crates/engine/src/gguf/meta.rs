//! Typed access to GGUF metadata, with errors that name the key.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::GgufError;

/// A view of a GGUF file's metadata with typed, checked getters.
#[derive(Debug, Clone, Copy)]
pub struct Metadata<'a>(pub &'a HashMap<String, Value>);

fn bad(key: &str, reason: impl Into<String>) -> GgufError {
    GgufError::BadKey { key: key.into(), reason: reason.into() }
}

fn as_u64(value: &Value) -> Option<u64> {
    Some(match value {
        Value::U8(v) => u64::from(*v),
        Value::U16(v) => u64::from(*v),
        Value::U32(v) => u64::from(*v),
        Value::U64(v) => *v,
        Value::I8(v) => u64::try_from(*v).ok()?,
        Value::I16(v) => u64::try_from(*v).ok()?,
        Value::I32(v) => u64::try_from(*v).ok()?,
        Value::I64(v) => u64::try_from(*v).ok()?,
        _ => return None,
    })
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F32(v) => Some(f64::from(*v)),
        Value::F64(v) => Some(*v),
        other => as_u64(other).map(|v| v as f64),
    }
}

impl<'a> Metadata<'a> {
    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value, GgufError> {
        self.0.get(key).ok_or_else(|| GgufError::MissingKey { key: key.into() })
    }

    /// A string value.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`].
    pub fn string(&self, key: &str) -> Result<&'a str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(bad(key, format!("expected a string, found {:?}", other.value_type()))),
        }
    }

    /// A string value, if present.
    ///
    /// # Errors
    /// [`GgufError::BadKey`] when present but not a string.
    pub fn opt_string(&self, key: &str) -> Result<Option<&'a str>, GgufError> {
        self.0.get(key).map(|_| self.string(key)).transpose()
    }

    /// A non-negative integer of any width.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`].
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        as_u64(v).ok_or_else(|| bad(key, format!("expected a non-negative integer, found {v:?}")))
    }

    /// A non-negative integer, if present.
    ///
    /// # Errors
    /// [`GgufError::BadKey`] when present but not a non-negative integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.0.get(key).map(|_| self.u64(key)).transpose()
    }

    /// A non-negative integer that must fit a `usize` and be at least `min`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`].
    pub fn usize_at_least(&self, key: &str, min: usize) -> Result<usize, GgufError> {
        let v = self.u64(key)?;
        let v = usize::try_from(v).map_err(|_| bad(key, format!("{v} is too large")))?;
        if v < min {
            return Err(bad(key, format!("{v} is below the minimum {min}")));
        }
        Ok(v)
    }

    /// A number (float or integer), if present.
    ///
    /// # Errors
    /// [`GgufError::BadKey`] when present but not a number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.0.get(key).map(|v| as_f64(v).ok_or_else(|| bad(key, format!("expected a number, found {v:?}")))).transpose()
    }

    /// A boolean, if present.
    ///
    /// # Errors
    /// [`GgufError::BadKey`] when present but not a boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(bad(key, format!("expected a bool, found {other:?}"))),
        }
    }

    /// An array value.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`].
    pub fn array(&self, key: &str) -> Result<&'a [Value], GgufError> {
        match self.require(key)? {
            Value::Array(v) => Ok(v),
            other => Err(bad(key, format!("expected an array, found {:?}", other.value_type()))),
        }
    }

    /// An array of strings.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`] (naming the bad element).
    pub fn strings(&self, key: &str) -> Result<Vec<&'a str>, GgufError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(bad(key, format!("element {i} is not a string"))),
            })
            .collect()
    }

    /// An array of numbers, as `f32`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`] (naming the bad element).
    pub fn f32s(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| as_f64(v).map(|x| x as f32).ok_or_else(|| bad(key, format!("element {i} is not a number"))))
            .collect()
    }

    /// An array of integers, as `i64`.
    ///
    /// # Errors
    /// [`GgufError::MissingKey`] or [`GgufError::BadKey`] (naming the bad element).
    pub fn i64s(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::I8(x) => Ok(i64::from(*x)),
                Value::I16(x) => Ok(i64::from(*x)),
                Value::I32(x) => Ok(i64::from(*x)),
                Value::I64(x) => Ok(*x),
                other => {
                    as_u64(other).and_then(|x| i64::try_from(x).ok()).ok_or_else(|| bad(key, format!("element {i} is not an integer")))
                }
            })
            .collect()
    }
}
