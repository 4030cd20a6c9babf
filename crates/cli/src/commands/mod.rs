//! One module per subcommand, and what they share: opening a model file,
//! reading a size.

pub mod bench;
pub mod chat_prompt;
pub mod convert;
pub mod generate;
pub mod inspect;
pub mod manifest;
pub mod perplexity;
pub mod prune;
pub mod publish;
pub mod requant;
pub mod split;
pub mod synth;
pub mod synth_gguf;
pub mod tokenize;
pub mod verify;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::Context;
use sprig_engine::gguf::split_paths;
use sprig_engine::GgufFile;

/// Opens a GGUF model: one file, or all shards of a gguf-split model when
/// `path` names one of them.
pub fn open_gguf(path: &Path) -> anyhow::Result<GgufFile<BufReader<File>>> {
    let readers = split_paths(path)
        .into_iter()
        .map(|p| File::open(&p).map(BufReader::new).with_context(|| format!("cannot open {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    GgufFile::open_split(readers).with_context(|| format!("cannot read {}", path.display()))
}

/// The ids of plain `text` as llama.cpp's tools tokenize it: BOS first when
/// the model adds one, text that looks like a special token read as text.
///
/// # Errors
/// The tokenizer fails on the text.
pub fn text_ids(tokenizer: &sprig_engine::Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    let mut ids: Vec<u32> = tokenizer.bos().filter(|_| tokenizer.add_bos()).into_iter().collect();
    ids.extend(tokenizer.encode(text)?);
    Ok(ids)
}

/// Loads a chat session from a GGUF model on the CPU.
pub fn load_session(path: &Path) -> anyhow::Result<sprig_engine::Session> {
    let mut file = open_gguf(path)?;
    sprig_engine::Session::load(&mut file).with_context(|| format!("cannot load {}", path.display()))
}

/// Parses a byte size: a plain number of bytes (`1048576`), or a number with a
/// unit, decimal (`40MB`, `1GB`, `40M` as llama.cpp's gguf-split reads it) or
/// binary (`512MiB`); units are case-insensitive, a fraction is allowed
/// (`1.5GB`). The result is rounded down and must be at least one byte.
///
/// # Errors
/// A message naming the string and the accepted forms.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size `{text}`: expected bytes or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. 40MB or 512MiB"
        )
    };
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(bad());
    }
    let bytes = match number.split_once('.') {
        None => number.parse::<u64>().map_err(|_| bad())?.checked_mul(multiplier).ok_or_else(|| format!("size `{text}` is too large"))?,
        Some((whole, fraction)) => {
            let whole = whole.parse::<u64>().map_err(|_| bad())?;
            if fraction.contains('.') || fraction.len() > 9 {
                return Err(bad());
            }
            let digits: u64 = fraction.parse().map_err(|_| bad())?;
            let scale = 10u64.pow(fraction.len() as u32);
            let whole = whole.checked_mul(multiplier).ok_or_else(|| format!("size `{text}` is too large"))?;
            let part = u128::from(digits) * u128::from(multiplier) / u128::from(scale);
            whole.checked_add(part as u64).ok_or_else(|| format!("size `{text}` is too large"))?
        }
    };
    if bytes == 0 {
        return Err(format!("invalid size `{text}`: it must be at least one byte"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_size("40MB"), Ok(40_000_000));
        assert_eq!(parse_size("40M"), Ok(40_000_000));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 10 kb "), Ok(10_000));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_text() {
        for bad in ["", "MB", "40XB", "-1MB", "1..5GB", ".5GB", "5.GB", "1e9", "0", "0MB", "99999999999TB"] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }
}
