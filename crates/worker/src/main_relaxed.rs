//! The worker binary built with the relaxed-SIMD kernels (the crate's
//! `relaxed-simd` feature): only registers the worker (see the library).

fn main() {
    #[cfg(target_arch = "wasm32")]
    sprig_worker::start();
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("sprig-worker-relaxed runs only as a Web Worker (wasm32); build it with trunk");
}
