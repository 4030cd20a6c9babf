//! The base model's next-token distributions, saved by `sprig perplexity
//! --save-logits` and read back by `--kl-base`, as llama.cpp's
//! `--kl-divergence-base` file does for it (the same idea, Sprig's own layout).
//!
//! Layout, little-endian: the magic `SPRIGKLD`, `u32` version (1), `u32`
//! vocabulary size, `u32` context, `u32` chunks, then the chunks' token ids
//! (`u32` × chunks × context), then for each scored position, chunk after
//! chunk: `f32` lowest and `f32` step, and the vocabulary's log-probabilities
//! as `u16` steps above the lowest (the lowest is at most 32 nats below the
//! highest; anything less likely reads as that: e^−32 per token, under 10⁻⁹
//! of probability over a vocabulary of 50,000, so the tail adds nothing
//! measurable to a KL divergence).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"SPRIGKLD";
const VERSION: u32 = 1;
const HEADER: u64 = 8 + 4 * 4;
/// The range kept below the most likely token, in nats (a step of
/// 32 / 65,535 ≈ 0.0005 nats).
const RANGE: f32 = 32.0;
/// Bounds a header may claim (checked before anything is allocated).
const MAX_VOCAB: u32 = 1 << 20;
const MAX_CTX: u32 = 1 << 20;

/// Errors of a saved distributions file.
#[derive(Debug, thiserror::Error)]
pub enum LogitsFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not one, or is damaged.
    #[error("{path} is not a distributions file sprig perplexity --save-logits wrote: {problem}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Written with other settings than the ones compared.
    #[error("{path} was saved for {saved}, but this run has {here}: use the same text, --ctx and model vocabulary")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What the file holds.
        saved: String,
        /// What this run has.
        here: String,
    },
}

/// What a file describes: the vocabulary, the context and the chunks' tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Vocabulary size.
    pub vocab: u32,
    /// Tokens per chunk.
    pub ctx: u32,
    /// The chunks' tokens, `ctx` each.
    pub tokens: Vec<u32>,
}

impl Layout {
    /// Number of chunks.
    pub fn chunks(&self) -> usize {
        self.tokens.len() / self.ctx.max(1) as usize
    }

    /// Positions scored per chunk: `ctx − 1 − ctx/2`.
    pub fn scored_per_chunk(&self) -> usize {
        (self.ctx as usize).saturating_sub(1 + self.ctx as usize / 2)
    }

    fn record_bytes(&self) -> u64 {
        8 + 2 * u64::from(self.vocab)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LogitsFileError + '_ {
    move |source| LogitsFileError::Io { path: path.to_path_buf(), source }
}

/// Writes a distributions file, one scored position at a time.
pub struct LogitsWriter {
    out: BufWriter<File>,
    path: PathBuf,
    vocab: usize,
    left: usize,
    buf: Vec<u8>,
}

impl LogitsWriter {
    /// Creates `path` for `layout`.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn create(path: &Path, layout: &Layout) -> Result<Self, LogitsFileError> {
        let mut out = BufWriter::new(File::create(path).map_err(io(path))?);
        let chunks = u32::try_from(layout.chunks()).unwrap_or(u32::MAX);
        let mut head = MAGIC.to_vec();
        for v in [VERSION, layout.vocab, layout.ctx, chunks] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend(layout.tokens.iter().flat_map(|t| t.to_le_bytes()));
        out.write_all(&head).map_err(io(path))?;
        Ok(Self {
            out,
            path: path.to_path_buf(),
            vocab: layout.vocab as usize,
            left: layout.chunks() * layout.scored_per_chunk(),
            buf: Vec::new(),
        })
    }

    /// Writes one position's log-probabilities (`vocab` of them).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&mut self, log_probs: &[f32]) -> Result<(), LogitsFileError> {
        debug_assert_eq!(log_probs.len(), self.vocab);
        let max = log_probs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let min = log_probs.iter().copied().fold(f32::INFINITY, f32::min).max(max - RANGE);
        let step = if max > min { (max - min) / f32::from(u16::MAX) } else { 1.0 };
        self.buf.clear();
        self.buf.extend_from_slice(&min.to_le_bytes());
        self.buf.extend_from_slice(&step.to_le_bytes());
        for &lp in log_probs {
            let q = ((lp.max(min) - min) / step).round().clamp(0.0, f32::from(u16::MAX)) as u16;
            self.buf.extend_from_slice(&q.to_le_bytes());
        }
        self.left = self.left.saturating_sub(1);
        self.out.write_all(&self.buf).map_err(io(&self.path))
    }

    /// Flushes the file; every position the layout promised must be written.
    ///
    /// # Errors
    /// The file cannot be written, or positions are missing.
    pub fn finish(mut self) -> Result<(), LogitsFileError> {
        self.out.flush().map_err(io(&self.path))?;
        if self.left > 0 {
            return Err(LogitsFileError::Bad { path: self.path, problem: format!("{} scored positions were never written", self.left) });
        }
        Ok(())
    }
}

/// Reads a distributions file back, one scored position at a time.
pub struct LogitsReader {
    input: BufReader<File>,
    path: PathBuf,
    /// What the file holds.
    pub layout: Layout,
    buf: Vec<u8>,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl LogitsReader {
    /// Opens `path`, checking its header and that its length is exactly what
    /// the header implies before reading anything else.
    ///
    /// # Errors
    /// Not such a file, damaged or truncated.
    pub fn open(path: &Path) -> Result<Self, LogitsFileError> {
        let bad = |problem: String| LogitsFileError::Bad { path: path.to_path_buf(), problem };
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut input = BufReader::new(file);
        let mut head = [0u8; HEADER as usize];
        input.read_exact(&mut head).map_err(|_| bad(format!("{len} bytes is shorter than the header")))?;
        if &head[..8] != MAGIC {
            return Err(bad("its magic is not SPRIGKLD".into()));
        }
        let (version, vocab, ctx, chunks) = (u32_at(&head, 8), u32_at(&head, 12), u32_at(&head, 16), u32_at(&head, 20));
        if version != VERSION {
            return Err(bad(format!("version {version}, this sprig reads {VERSION}")));
        }
        if !(2..=MAX_VOCAB).contains(&vocab) || !(4..=MAX_CTX).contains(&ctx) || chunks == 0 {
            return Err(bad(format!("its header gives vocabulary {vocab}, context {ctx}, {chunks} chunks")));
        }
        let mut layout = Layout { vocab, ctx, tokens: Vec::new() };
        let n_tokens = u64::from(chunks) * u64::from(ctx);
        let records = u64::from(chunks) * layout.scored_per_chunk() as u64;
        let expected = HEADER + 4 * n_tokens + records * layout.record_bytes();
        if len != expected {
            return Err(bad(format!("it is {len} bytes, its header implies {expected}")));
        }
        let mut raw = vec![0u8; 4 * n_tokens as usize];
        input.read_exact(&mut raw).map_err(io(path))?;
        layout.tokens = raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(t) = layout.tokens.iter().find(|&&t| t >= vocab) {
            return Err(bad(format!("token {t} is outside its vocabulary of {vocab}")));
        }
        Ok(Self { input, path: path.to_path_buf(), buf: vec![0; layout.record_bytes() as usize], layout })
    }

    /// Checks that this file was saved for `here` (the same chunks of the same
    /// text, the same vocabulary size).
    ///
    /// # Errors
    /// [`LogitsFileError::Mismatch`].
    pub fn check(&self, here: &Layout) -> Result<(), LogitsFileError> {
        let describe = |l: &Layout| format!("vocabulary {}, context {}, {} chunks", l.vocab, l.ctx, l.chunks());
        let mismatch = |saved: String, here: String| Err(LogitsFileError::Mismatch { path: self.path.clone(), saved, here });
        let saved = &self.layout;
        if (saved.vocab, saved.ctx) != (here.vocab, here.ctx) || saved.chunks() < here.chunks() {
            return mismatch(describe(saved), describe(here));
        }
        let n = here.tokens.len();
        if let Some(i) = saved.tokens[..n].iter().zip(&here.tokens).position(|(a, b)| a != b) {
            return mismatch(format!("token {} at position {i}", saved.tokens[i]), format!("token {} (another text?)", here.tokens[i]));
        }
        Ok(())
    }

    /// Reads the next scored position's log-probabilities into `out` (`vocab` long).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn next(&mut self, out: &mut [f32]) -> Result<(), LogitsFileError> {
        self.input.read_exact(&mut self.buf).map_err(io(&self.path))?;
        let min = f32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let step = f32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        for (o, q) in out.iter_mut().zip(self.buf[8..].chunks_exact(2)) {
            *o = min + step * f32::from(u16::from_le_bytes([q[0], q[1]]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::score::log_softmax;

    fn layout() -> Layout {
        Layout { vocab: 5, ctx: 8, tokens: (0..16).map(|i| i % 5).collect() }
    }

    fn dist(seed: f32) -> Vec<f32> {
        let mut l: Vec<f32> = (0..5).map(|i| (i as f32 * seed).sin() * 3.0).collect();
        log_softmax(&mut l);
        l
    }

    fn write(path: &Path) {
        let l = layout();
        let mut w = LogitsWriter::create(path, &l).unwrap();
        for i in 0..l.chunks() * l.scored_per_chunk() {
            w.write(&dist(i as f32 + 1.0)).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn distributions_round_trip_within_a_step() {
        let dir = std::env::temp_dir().join(format!("sprig-kld-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("base.kld");
        write(&path);
        let mut r = LogitsReader::open(&path).unwrap();
        assert_eq!(r.layout, layout());
        assert_eq!(layout().scored_per_chunk(), 3);
        r.check(&layout()).unwrap();
        let mut out = vec![0.0; 5];
        for i in 0..6 {
            r.next(&mut out).unwrap();
            for (a, b) in out.iter().zip(dist(i as f32 + 1.0)) {
                assert!((a - b).abs() < RANGE / 65535.0, "{a} vs {b}");
            }
        }
        // Another text, or another context, is refused by name.
        let other = Layout { tokens: (1..17).map(|i| i % 5).collect(), ..layout() };
        assert!(r.check(&other).unwrap_err().to_string().contains("another text"));
        assert!(r.check(&Layout { ctx: 4, tokens: vec![0; 8], ..layout() }).is_err());

        // Damaged files are refused before anything big is read.
        let bytes = std::fs::read(&path).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (bytes[..bytes.len() - 1].to_vec(), "header implies"),
            (b"NOTAKLD!".iter().chain(&bytes[8..]).copied().collect(), "magic"),
            (
                {
                    let mut b = bytes.clone();
                    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
                    b
                },
                "vocabulary 4294967295",
            ),
            (
                {
                    let mut b = bytes.clone();
                    b[20..24].copy_from_slice(&(1u32 << 30).to_le_bytes());
                    b
                },
                "header implies",
            ),
            (bytes[..10].to_vec(), "shorter than the header"),
        ];
        for (damaged, says) in cases {
            std::fs::write(&path, &damaged).unwrap();
            let err = LogitsReader::open(&path).err().expect("refused").to_string();
            assert!(err.contains(says), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
