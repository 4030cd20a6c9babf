//! Times the quantized matmul kernels: `cargo run --release -p sprig-engine
//! --example kernels_bench [budget_ms]`. Threads: `RAYON_NUM_THREADS=1` for one.

use sprig_engine::kernels::bench;

fn main() {
    let budget_ms = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500.0);
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_default();
    println!("kernels bench: {threads} thread(s), simd128 {}", sprig_engine::SIMD128);
    for (dtype, rows, cols, tokens) in bench::default_cases() {
        match bench::measure(dtype, rows, cols, tokens, budget_ms) {
            Ok(r) => println!("{r}"),
            Err(e) => {
                eprintln!("{dtype:?} [{rows} x {cols}] tokens {tokens}: {e}");
                std::process::exit(1);
            }
        }
    }
}
