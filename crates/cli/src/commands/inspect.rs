//! `sprig inspect FILE`: metadata, tensor table, per-tensor types and total size,
//! read from the header alone; with `--sparsity`, also the share of exact
//! zeros in the blocks' linear layers, read from the weights (dequantized).

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;

/// Arguments of `sprig inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF file (any shard of a gguf-split model).
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also list every tensor.
    #[arg(long)]
    pub tensors: bool,
    /// Also measure the sparsity of the linear layers (reads every weight).
    #[arg(long)]
    pub sparsity: bool,
}

/// The share of weights that are exactly 0 in the blocks' linear layers
/// (`blk.N.{attn_q, …, ffn_down}.weight`) of `file`, as they dequantize.
fn linear_sparsity<R: std::io::Read + std::io::Seek>(file: &mut sprig_engine::GgufFile<R>) -> anyhow::Result<f64> {
    let names: Vec<String> = file
        .tensors()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| n.starts_with("blk.") && super::prune::LINEAR.iter().any(|k| n.ends_with(&format!(".{k}.weight"))))
        .collect();
    let (mut zeros, mut all) = (0usize, 0usize);
    for name in names {
        let t = file.tensor(&name, &candle_core::Device::Cpu)?;
        let v = t.dequantize(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        zeros += v.iter().filter(|x| **x == 0.0).count();
        all += v.len();
    }
    Ok(if all == 0 { 0.0 } else { zeros as f64 / all as f64 })
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 80 => {
            format!("{:?}… ({} bytes)", &s[..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i)], s.len())
        }
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{} values]", a.len()),
        other => format!("{other:?}").trim_start_matches(|c: char| c.is_alphanumeric()).trim_matches(|c| c == '(' || c == ')').to_string(),
    }
}

/// Runs `sprig inspect`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut file = super::open_gguf(&args.file)?;
    let sparsity = if args.sparsity { Some(linear_sparsity(&mut file)?) } else { None };
    let info = file.info()?;
    let tensors = file.tensors();
    if args.json {
        let table: Vec<_> = tensors
            .iter()
            .map(|(n, t)| serde_json::json!({ "name": n, "type": format!("{:?}", t.ggml_dtype), "shape": t.shape.dims() }))
            .collect();
        let json = serde_json::json!({
            "name": info.name,
            "architecture": info.architecture,
            "shards": file.shard_count(),
            "context_length": info.context_length,
            "block_count": info.block_count,
            "tensor_count": info.tensor_count,
            "parameter_count": info.parameter_count,
            "tensor_bytes": info.tensor_bytes,
            "tensor_types": info.tensor_types,
            "tensors": if args.tensors { serde_json::Value::Array(table) } else { serde_json::Value::Null },
            "linear_sparsity": sparsity,
        });
        println!("{json:#}");
        return Ok(());
    }
    println!("name:         {}", info.name);
    println!("architecture: {}", info.architecture);
    println!("shards:       {}", file.shard_count());
    println!("tensors:      {}", info.tensor_count);
    println!("parameters:   {} ({:.1} M)", info.parameter_count, info.parameter_count as f64 / 1e6);
    println!("tensor data:  {:.1} MiB", info.tensor_bytes as f64 / (1024.0 * 1024.0));
    println!("types:        {}", info.tensor_types.iter().map(|(t, n)| format!("{t} ×{n}")).collect::<Vec<_>>().join(", "));
    if let Some(s) = sparsity {
        println!("sparsity:     {:.3} % of the linear layers' weights are 0", s * 100.0);
    }
    println!("\nmetadata:");
    let meta = file.metadata();
    let mut keys: Vec<_> = meta.0.keys().collect();
    keys.sort();
    for k in keys {
        println!("  {k:<44} {}", short(&meta.0[k]));
    }
    if args.tensors {
        println!("\n{:<40} {:<6} shape", "tensor", "type");
        for (n, t) in &tensors {
            println!("{n:<40} {:<6} {:?}", format!("{:?}", t.ggml_dtype), t.shape.dims());
        }
    }
    Ok(())
}
