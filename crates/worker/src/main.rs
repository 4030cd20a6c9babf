//! The worker binary: only registers the worker (see the library).

fn main() {
    #[cfg(target_arch = "wasm32")]
    sprig_worker::start();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("sprig-worker runs only as a Web Worker (wasm32); build it with trunk");
}
