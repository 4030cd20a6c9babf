//! Typed access to the browser's Origin Private File System (OPFS) from a
//! dedicated worker: directories, small files, and synchronous access handles
//! for reading and writing at offsets (which only workers have).

use std::io;

use js_sys::{AsyncIterator, Uint8Array};
use sprig_engine::gguf::ByteSource;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, File, FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions, FileSystemGetFileOptions,
    FileSystemReadWriteOptions, FileSystemRemoveOptions, FileSystemSyncAccessHandle, WorkerGlobalScope,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The browser offers no OPFS here.
    #[error("the browser's file storage (OPFS) is unavailable: {0}")]
    Unavailable(String),
    /// The storage is full (quota exceeded).
    #[error("the browser's storage is full while writing {what}: {message}")]
    Full {
        /// The file being written.
        what: String,
        /// What the browser said.
        message: String,
    },
    /// Another tab holds the file open.
    #[error("{what} is in use by another Sprig tab or window; close it and try again")]
    Locked {
        /// The file.
        what: String,
    },
    /// Any other failure.
    #[error("cannot {action} {what}: {message}")]
    Io {
        /// What was attempted (`read`, `write`, `open`…).
        action: &'static str,
        /// The file or directory.
        what: String,
        /// What the browser said.
        message: String,
    },
}

impl StoreError {
    fn from_js(action: &'static str, what: &str, e: &JsValue) -> Self {
        let what = what.to_string();
        if let Some(d) = e.dyn_ref::<DomException>() {
            let message = format!("{}: {}", d.name(), d.message());
            return match d.name().as_str() {
                "QuotaExceededError" => Self::Full { what, message },
                "NoModificationAllowedError" => Self::Locked { what },
                _ => Self::Io { action, what, message },
            };
        }
        let message = e.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{e:?}"), |e| String::from(e.message()));
        Self::Io { action, what, message }
    }
}

fn is_not_found(e: &JsValue) -> bool {
    e.dyn_ref::<DomException>().is_some_and(|d| d.name() == "NotFoundError" || d.name() == "TypeMismatchError")
}

/// A directory of the OPFS.
#[derive(Debug, Clone)]
pub struct Dir {
    handle: FileSystemDirectoryHandle,
    path: String,
}

impl Dir {
    /// The origin's OPFS root.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the browser has no OPFS.
    pub async fn root() -> Result<Self, StoreError> {
        let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
        let storage = scope.navigator().storage();
        let handle = JsFuture::from(storage.get_directory())
            .await
            .map_err(|e| StoreError::Unavailable(StoreError::from_js("open", "/", &e).to_string()))?;
        Ok(Self { handle: handle.unchecked_into(), path: String::new() })
    }

    fn child(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    /// The subdirectory `name`; `None` if absent and `create` is false.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn dir(&self, name: &str, create: bool) -> Result<Option<Dir>, StoreError> {
        let opts = FileSystemGetDirectoryOptions::new();
        opts.set_create(create);
        match JsFuture::from(self.handle.get_directory_handle_with_options(name, &opts)).await {
            Ok(h) => Ok(Some(Dir { handle: h.unchecked_into(), path: self.child(name) })),
            Err(e) if !create && is_not_found(&e) => Ok(None),
            Err(e) => Err(StoreError::from_js("open", &self.child(name), &e)),
        }
    }

    async fn file_handle(&self, name: &str, create: bool) -> Result<Option<FileSystemFileHandle>, StoreError> {
        let opts = FileSystemGetFileOptions::new();
        opts.set_create(create);
        match JsFuture::from(self.handle.get_file_handle_with_options(name, &opts)).await {
            Ok(h) => Ok(Some(h.unchecked_into())),
            Err(e) if !create && is_not_found(&e) => Ok(None),
            Err(e) => Err(StoreError::from_js("open", &self.child(name), &e)),
        }
    }

    /// Opens `name` for synchronous access; `None` if absent and `create` is
    /// false. Read-only handles may be open in several tabs at once; a
    /// writable one is exclusive.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another tab has it open; other refusals.
    pub async fn open(&self, name: &str, create: bool, read_only: bool) -> Result<Option<SyncFile>, StoreError> {
        let Some(file) = self.file_handle(name, create).await? else { return Ok(None) };
        let what = self.child(name);
        let promise = if read_only {
            // `{ mode: "read-only" }` (Chromium 121+) lets several tabs read at once;
            // web-sys marks the options unstable, so they are passed by hand.
            let opts = js_sys::Object::new();
            js_sys::Reflect::set(&opts, &"mode".into(), &"read-only".into()).map_err(|e| StoreError::from_js("open", &what, &e))?;
            let create =
                js_sys::Reflect::get(&file, &"createSyncAccessHandle".into()).map_err(|e| StoreError::from_js("open", &what, &e))?;
            let create: js_sys::Function = create.dyn_into().map_err(|e| StoreError::from_js("open", &what, &e))?;
            create.call1(&file, &opts).map_err(|e| StoreError::from_js("open", &what, &e))?.unchecked_into()
        } else {
            file.create_sync_access_handle()
        };
        let handle: FileSystemSyncAccessHandle =
            JsFuture::from(promise).await.map_err(|e| StoreError::from_js("open", &what, &e))?.unchecked_into();
        let size = handle.get_size().map_err(|e| StoreError::from_js("measure", &what, &e))? as u64;
        Ok(Some(SyncFile { handle, size, what }))
    }

    /// The whole content of a small file; `None` if absent.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(file) = self.file_handle(name, false).await? else { return Ok(None) };
        let what = self.child(name);
        let f: File = JsFuture::from(file.get_file()).await.map_err(|e| StoreError::from_js("read", &what, &e))?.unchecked_into();
        let buf = JsFuture::from(f.array_buffer()).await.map_err(|e| StoreError::from_js("read", &what, &e))?;
        Ok(Some(Uint8Array::new(&buf).to_vec()))
    }

    /// The size of a file; `None` if absent.
    ///
    /// # Errors
    /// The browser's refusal (e.g. the file is being written by a sync handle).
    pub async fn size(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let Some(file) = self.file_handle(name, false).await? else { return Ok(None) };
        let f: File =
            JsFuture::from(file.get_file()).await.map_err(|e| StoreError::from_js("measure", &self.child(name), &e))?.unchecked_into();
        Ok(Some(f.size() as u64))
    }

    /// Replaces the content of a small file (created if absent), flushed.
    ///
    /// # Errors
    /// The browser's refusal, [`StoreError::Full`] when out of space.
    pub async fn write(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(mut f) = self.open(name, true, false).await? else {
            return Err(StoreError::Io { action: "create", what: self.child(name), message: "not created".into() });
        };
        f.truncate(0)?;
        f.write_at(0, bytes)?;
        f.flush()
    }

    /// Removes a file or a directory with its content; absent is fine.
    ///
    /// # Errors
    /// The browser's refusal (e.g. a file is open in another tab).
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let opts = FileSystemRemoveOptions::new();
        opts.set_recursive(true);
        match JsFuture::from(self.handle.remove_entry_with_options(name, &opts)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(StoreError::from_js("delete", &self.child(name), &e)),
        }
    }

    /// The names of the entries in this directory.
    ///
    /// # Errors
    /// The browser's refusal.
    pub async fn names(&self) -> Result<Vec<String>, StoreError> {
        let iter: AsyncIterator = self.handle.keys();
        let mut names = Vec::new();
        loop {
            let next = iter.next().map_err(|e| StoreError::from_js("list", &self.path, &e))?;
            let step = JsFuture::from(next).await.map_err(|e| StoreError::from_js("list", &self.path, &e))?;
            let done = js_sys::Reflect::get(&step, &"done".into()).map(|v| v.is_truthy()).unwrap_or(true);
            if done {
                return Ok(names);
            }
            if let Some(name) = js_sys::Reflect::get(&step, &"value".into()).ok().and_then(|v| v.as_string()) {
                names.push(name);
            }
        }
    }
}

/// A file open for synchronous reads and writes at offsets. Closed on drop.
#[derive(Debug)]
pub struct SyncFile {
    handle: FileSystemSyncAccessHandle,
    size: u64,
    what: String,
}

fn at(offset: u64) -> FileSystemReadWriteOptions {
    let opts = FileSystemReadWriteOptions::new();
    opts.set_at(offset as f64);
    opts
}

impl SyncFile {
    /// The file's path in the store, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Writes `bytes` at `offset`, growing the file as needed.
    ///
    /// # Errors
    /// [`StoreError::Full`] when out of space; other refusals.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let n =
            self.handle.write_with_u8_array_and_options(bytes, &at(offset)).map_err(|e| StoreError::from_js("write", &self.what, &e))?;
        if (n as usize) < bytes.len() {
            return Err(StoreError::Full { what: self.what.clone(), message: format!("wrote {n} of {} bytes", bytes.len()) });
        }
        self.size = self.size.max(offset + bytes.len() as u64);
        Ok(())
    }

    /// Fills `buf` from `offset`.
    ///
    /// # Errors
    /// A short read (the file is shorter than expected) or a refusal.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let n = self.handle.read_with_u8_array_and_options(buf, &at(offset)).map_err(|e| StoreError::from_js("read", &self.what, &e))?;
        if (n as usize) < buf.len() {
            return Err(StoreError::Io {
                action: "read",
                what: self.what.clone(),
                message: format!("only {n} of {} bytes at offset {offset}", buf.len()),
            });
        }
        Ok(())
    }

    /// Cuts or extends the file to `size` bytes.
    ///
    /// # Errors
    /// The browser's refusal.
    pub fn truncate(&mut self, size: u64) -> Result<(), StoreError> {
        self.handle.truncate_with_f64(size as f64).map_err(|e| StoreError::from_js("resize", &self.what, &e))?;
        self.size = size;
        Ok(())
    }

    /// Makes the writes so far durable.
    ///
    /// # Errors
    /// The browser's refusal.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.handle.flush().map_err(|e| StoreError::from_js("flush", &self.what, &e))
    }
}

impl Drop for SyncFile {
    fn drop(&mut self) {
        self.handle.close();
    }
}

impl ByteSource for SyncFile {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} ends at {} bytes", self.what, self.size)));
        }
        self.read_exact_at(offset, buf).map_err(|e| io::Error::other(e.to_string()))
    }
}

impl crate::failure::Failure for StoreError {
    fn kind(&self) -> sprig_protocol::ErrorKind {
        sprig_protocol::ErrorKind::Storage
    }
}
