//! A file the user picked (`<input type=file>`), read in place: each read is a
//! synchronous slice of the `File` (workers have `FileReaderSync`), so nothing
//! is copied up front and nothing is uploaded.

use std::io;

use js_sys::Uint8Array;
use sprig_engine::gguf::ByteSource;
use web_sys::{File, FileReaderSync};

/// A picked file as a [`ByteSource`].
#[derive(Debug)]
pub struct FileSource {
    file: File,
    reader: FileReaderSync,
    size: u64,
}

impl FileSource {
    /// Wraps `file`.
    ///
    /// # Errors
    /// The browser's reason when `FileReaderSync` is unavailable.
    pub fn new(file: File) -> Result<Self, String> {
        let reader = FileReaderSync::new().map_err(|e| format!("cannot read local files here: {e:?}"))?;
        let size = file.size() as u64;
        Ok(Self { file, reader, size })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if end > self.size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ends at {} bytes", self.file.name(), self.size)));
        }
        let err = |what: &str| io::Error::other(format!("cannot read {}: {what}", self.file.name()));
        let slice = self.file.slice_with_f64_and_f64(offset as f64, end as f64).map_err(|_| err("slice refused"))?;
        let bytes = self.reader.read_as_array_buffer(&slice).map_err(|_| err("the file changed or is no longer readable"))?;
        let view = Uint8Array::new(&bytes);
        if view.length() as usize != buf.len() {
            return Err(err("short read"));
        }
        view.copy_to(buf);
        Ok(())
    }
}
