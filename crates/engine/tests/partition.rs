//! A model split across K workers (here: threads, each holding only its slice,
//! exchanging partial sums over channels) computes bit for bit what the whole
//! model in one computes: the same logits, so the same greedy tokens.

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

use sprig_engine::model::{run_to_completion, split_parts, Collective, CollectiveError, Model, Partition};
use sprig_engine::{GgufFile, SamplingParams, Session, Step};

/// One worker's end of a full mesh of channels.
struct Mesh {
    to: Vec<Option<Sender<Vec<f32>>>>,
    from: Vec<Option<Receiver<Vec<f32>>>>,
    /// The coordinator's line to every other worker: (position, tokens).
    commands: Vec<Sender<Command>>,
}

impl Collective for Mesh {
    async fn begin(&mut self, pos: usize, tokens: &[u32]) -> Result<(), CollectiveError> {
        for c in &self.commands {
            c.send((pos, tokens.to_vec())).map_err(|e| CollectiveError(e.to_string()))?;
        }
        Ok(())
    }

    async fn all_gather(&mut self, mine: &[f32], all: &mut Vec<f32>) -> Result<(), CollectiveError> {
        for tx in self.to.iter().flatten() {
            tx.send(mine.to_vec()).map_err(|e| CollectiveError(e.to_string()))?;
        }
        all.clear();
        for (r, rx) in self.from.iter().enumerate() {
            match rx {
                None => all.extend_from_slice(mine),
                Some(rx) => all.extend(rx.recv().map_err(|e| CollectiveError(format!("worker {r}: {e}")))?),
            }
        }
        Ok(())
    }
}

/// What rank 0 tells the others to run: (position, tokens).
type Command = (usize, Vec<u32>);

fn meshes(k: usize) -> (Vec<Mesh>, Vec<Receiver<Command>>) {
    let mut to: Vec<Vec<Option<Sender<Vec<f32>>>>> = (0..k).map(|_| (0..k).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<Option<Receiver<Vec<f32>>>>> = (0..k).map(|_| (0..k).map(|_| None).collect()).collect();
    for a in 0..k {
        for b in 0..k {
            if a != b {
                let (tx, rx) = channel();
                to[a][b] = Some(tx);
                from[b][a] = Some(rx);
            }
        }
    }
    let (cmd_tx, cmd_rx): (Vec<_>, Vec<_>) = (1..k).map(|_| channel()).unzip();
    let meshes = to
        .into_iter()
        .zip(from)
        .enumerate()
        .map(|(rank, (to, from))| Mesh { to, from, commands: if rank == 0 { cmd_tx.clone() } else { Vec::new() } })
        .collect();
    (meshes, cmd_rx)
}

fn open() -> GgufFile<std::io::BufReader<std::fs::File>> {
    GgufFile::open(std::io::BufReader::new(std::fs::File::open(common::demo_model()).unwrap())).unwrap()
}

const FIRST: &str = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
const SECOND: &str = "<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n";

/// Greedy tokens of two turns, the second reusing the first's cache.
fn run_turns(session: &mut Session, mesh: &mut Mesh) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut prompt = session.tokenizer().encode_with_special(FIRST).unwrap();
    for follow_up in [SECOND, ""] {
        run_to_completion(session.start_with(&prompt, SamplingParams::greedy(24), mesh)).unwrap().unwrap();
        let mut ids = Vec::new();
        while let Step::Token { id, .. } = run_to_completion(session.next_token_with(mesh)).unwrap().unwrap() {
            ids.push(id);
        }
        prompt.extend_from_slice(&ids);
        prompt.extend(session.tokenizer().encode_with_special(follow_up).unwrap());
        out.push(ids);
    }
    out
}

/// Logits of a prompt, then of single tokens after it, then of a second
/// prompt chunk after cutting the cache back.
fn run_steps(model: &mut Model, mesh: &mut Mesh) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let mut step = |m: &mut Model, tokens: &[u32]| out.push(run_to_completion(m.forward_with(tokens, mesh)).unwrap().unwrap().to_vec());
    step(model, &[1, 9690, 198, 2683, 359, 253, 5356, 28, 4649]);
    step(model, &[504]);
    step(model, &[3575]);
    model.truncate_cache(5);
    step(model, &[282, 4649, 314, 7042, 30, 2]);
    out
}

/// Runs `k` workers: the coordinator's `lead` on rank 0, the others serving
/// its forward passes. Returns what `lead` returns and each other worker's
/// weight bytes.
fn with_workers<T>(k: usize, lead: impl FnOnce(&mut Mesh) -> T) -> (T, Vec<usize>) {
    let (mut meshes, mut commands) = meshes(k);
    let mut peers = Vec::new();
    for rank in (1..k).rev() {
        let mut mesh = meshes.pop().unwrap();
        let cmds = commands.pop().unwrap();
        peers.push(thread::spawn(move || {
            let mut model = Model::load_partition(&mut open(), Partition::new(rank, k).unwrap(), &mut |_| {}).unwrap();
            for (pos, tokens) in cmds {
                model.truncate_cache(pos);
                run_to_completion(model.forward_with(&tokens, &mut mesh)).unwrap().unwrap();
            }
            model.weight_bytes()
        }));
    }
    let mut mesh = meshes.pop().unwrap();
    let out = lead(&mut mesh);
    drop(mesh);
    (out, peers.into_iter().map(|p| p.join().unwrap()).collect())
}

#[test]
fn split_models_compute_the_same_logits_bit_for_bit() {
    let (mut alone, _) = meshes(1);
    let mut whole = Model::load(&mut open()).unwrap();
    let want = run_steps(&mut whole, &mut alone[0]);
    let whole_bytes = whole.weight_bytes();
    for k in [2, 3] {
        let (got, others) = with_workers(k, |mesh| {
            let mut model = Model::load_partition(&mut open(), Partition::new(0, k).unwrap(), &mut |_| {}).unwrap();
            (run_steps(&mut model, mesh), model.weight_bytes())
        });
        let (got, mine) = got;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "{k} workers, step {i}: logits differ (max {})",
                g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
            );
        }
        // Each worker holds a slice: together about the whole model.
        let total: usize = others.iter().sum::<usize>() + mine;
        assert!(others.iter().chain([&mine]).all(|&b| b * 10 < whole_bytes * (10 / k + 2)), "{k}: {mine} {others:?} of {whole_bytes}");
        assert!(total.abs_diff(whole_bytes) * 100 < whole_bytes, "{k}: {total} vs {whole_bytes}");
    }
}

#[test]
fn two_and_three_workers_give_the_same_greedy_replies_as_one() {
    let (mut alone, _) = meshes(1);
    let mut whole = Session::load(&mut open()).unwrap();
    let want = run_turns(&mut whole, &mut alone[0]);
    assert!(want.iter().all(|t| t.len() > 3), "{want:?}");
    for k in [2, 3] {
        let (got, _) = with_workers(k, |mesh| {
            let mut session = Session::load_partition(&mut open(), Partition::new(0, k).unwrap(), &mut |_| {}).unwrap();
            run_turns(&mut session, mesh)
        });
        assert_eq!(got, want, "{k} workers");
    }
}

#[test]
fn segments_keep_whole_quantization_blocks() {
    // A tiny Mistral-shaped model in Q4_K: its head groups are 128 columns
    // wide, half a Q4_K block, so its two groups form one segment. It cannot be
    // split, and one worker runs it as usual.
    use candle_core::quantized::GgmlDType;
    use sprig_engine::synthetic::SyntheticSpec;
    let spec = SyntheticSpec { dtype: GgmlDType::Q4K, n_embd: 256, n_head: 4, n_head_kv: 2, n_ff: 512, ..SyntheticSpec::tiny_mistral() };
    let bytes = common::tiny_mistral_bytes(&spec);
    assert_eq!(split_parts(&common::open(bytes.clone())).unwrap(), 1);
    let err = Model::load_partition(&mut common::open(bytes.clone()), Partition::new(0, 2).unwrap(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("split into 1 parts"), "{err}");
    let mut whole = Model::load(&mut common::open(bytes)).unwrap();
    assert_eq!(whole.forward(&[1, 2, 3]).unwrap().len(), whole.vocab());
}

#[test]
fn a_split_that_does_not_fit_is_refused() {
    // Three key/value heads cannot go to four workers.
    assert_eq!(split_parts(&open()).unwrap(), 3);
    let err = Model::load_partition(&mut open(), Partition::new(0, 4).unwrap(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("split into 3 parts") && err.to_string().contains("at most 3"), "{err}");
    // A split model refuses the one-worker forward.
    let mut m = Model::load_partition(&mut open(), Partition::new(0, 2).unwrap(), &mut |_| {}).unwrap();
    assert!(m.forward(&[1, 2]).is_err());
}
