//! Byte sources: anything that can read a range of bytes at an offset, such as
//! a set of downloaded chunks, seen through [`SourceReader`] as `Read + Seek`.

use std::io::{self, Read, Seek, SeekFrom};

/// Random-access bytes of a known length: a file, a set of chunks in a browser
/// store, a byte-range fetcher.
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes starting at `offset`.
    ///
    /// # Errors
    /// `UnexpectedEof` when the range passes the end; any error of the store.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A [`ByteSource`] seen as `Read + Seek`, so the GGUF reader can use it.
#[derive(Debug)]
pub struct SourceReader<S> {
    source: S,
    pos: u64,
}

impl<S: ByteSource> SourceReader<S> {
    /// Reads `source` from its start.
    pub fn new(source: S) -> Self {
        Self { source, pos: 0 }
    }

    /// The source back.
    pub fn into_inner(self) -> S {
        self.source
    }
}

impl<S: ByteSource> Read for SourceReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.source.len().saturating_sub(self.pos);
        let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.source.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: ByteSource> Seek for SourceReader<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.source.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if target < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the source"));
        }
        self.pos = u64::try_from(target).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

/// A byte source made of equal-sized chunks (the last may be shorter), as a
/// download store keeps them. A chunk that is absent reads as an error, never
/// as zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBytes {
    chunk_size: usize,
    len: u64,
    chunks: Vec<Option<Vec<u8>>>,
}

impl ChunkedBytes {
    /// An empty store for `len` bytes in chunks of `chunk_size` (> 0).
    ///
    /// # Panics
    /// When `chunk_size` is zero (a programming error, not data).
    pub fn new(len: u64, chunk_size: usize) -> Self {
        assert!(chunk_size > 0, "chunk size must be positive");
        let count = len.div_ceil(chunk_size as u64) as usize;
        Self { chunk_size, len, chunks: vec![None; count] }
    }

    /// Splits `bytes` into chunks of `chunk_size` (> 0).
    pub fn from_bytes(bytes: &[u8], chunk_size: usize) -> Self {
        let mut store = Self::new(bytes.len() as u64, chunk_size);
        for (i, chunk) in bytes.chunks(chunk_size).enumerate() {
            store.chunks[i] = Some(chunk.to_vec());
        }
        store
    }

    /// Stores chunk `index`.
    ///
    /// # Errors
    /// `InvalidInput` when the index is out of range or the length is not the
    /// chunk's length.
    pub fn put(&mut self, index: usize, bytes: Vec<u8>) -> io::Result<()> {
        let expected = self.expected_len(index)?;
        if bytes.len() != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("chunk {index} has {} bytes, expected {expected}", bytes.len()),
            ));
        }
        self.chunks[index] = Some(bytes);
        Ok(())
    }

    /// The bytes of chunk `index`, if stored.
    pub fn chunk(&self, index: usize) -> Option<&[u8]> {
        self.chunks.get(index).and_then(|c| c.as_deref())
    }

    /// The size of every chunk but the last.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Whether every chunk is present.
    pub fn is_complete(&self) -> bool {
        self.chunks.iter().all(Option::is_some)
    }

    fn expected_len(&self, index: usize) -> io::Result<usize> {
        if index >= self.chunks.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("chunk {index} out of range")));
        }
        let start = index as u64 * self.chunk_size as u64;
        Ok((self.len - start).min(self.chunk_size as u64) as usize)
    }
}

impl ByteSource for ChunkedBytes {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("read of {} bytes at {offset} passes the end", buf.len()))
        })?;
        let mut pos = offset;
        let mut out = 0;
        while pos < end {
            let index = (pos / self.chunk_size as u64) as usize;
            let within = (pos % self.chunk_size as u64) as usize;
            let chunk = self.chunks[index].as_ref().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("chunk {index} (bytes from {}) is not stored", index as u64 * self.chunk_size as u64),
                )
            })?;
            let n = (chunk.len() - within).min((end - pos) as usize);
            buf[out..out + n].copy_from_slice(&chunk[within..within + n]);
            out += n;
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_reads_cross_chunk_boundaries() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut r = SourceReader::new(ChunkedBytes::from_bytes(&bytes, 7));
        r.seek(SeekFrom::Start(5)).unwrap();
        let mut buf = [0u8; 20];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(buf.to_vec(), (5..25).collect::<Vec<u8>>());
        assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), 255);
        let mut last = Vec::new();
        r.read_to_end(&mut last).unwrap();
        assert_eq!(last, vec![255]);
    }

    #[test]
    fn a_missing_chunk_is_an_error_not_zeros() {
        let mut store = ChunkedBytes::new(20, 8);
        store.put(0, vec![1; 8]).unwrap();
        store.put(2, vec![3; 4]).unwrap();
        assert!(!store.is_complete());
        let mut buf = [0u8; 10];
        let err = store.read_at(4, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(store.put(1, vec![2; 7]).is_err(), "wrong length accepted");
        assert!(store.put(3, vec![]).is_err(), "out of range accepted");
    }
}
