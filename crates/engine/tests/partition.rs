//! A model split across K workers (here: threads, each holding only its slice,
//! exchanging partial sums over channels) produces the same greedy tokens as
//! the whole model in one.

mod common;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

use sprig_engine::model::{run_to_completion, Collective, CollectiveError, Model, Partition};
use sprig_engine::{GgufFile, SamplingParams, Session, Step};

/// One worker's end of a full mesh of channels.
struct Mesh {
    rank: usize,
    to: Vec<Option<Sender<Vec<f32>>>>,
    from: Vec<Option<Receiver<Vec<f32>>>>,
    /// The coordinator's line to every other worker: (position, tokens).
    commands: Vec<Sender<(usize, Vec<u32>)>>,
}

impl Collective for Mesh {
    async fn begin(&mut self, pos: usize, tokens: &[u32]) -> Result<(), CollectiveError> {
        for c in &self.commands {
            c.send((pos, tokens.to_vec())).map_err(|e| CollectiveError(e.to_string()))?;
        }
        Ok(())
    }

    async fn all_reduce(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        for tx in self.to.iter().flatten() {
            tx.send(buf.to_vec()).map_err(|e| CollectiveError(e.to_string()))?;
        }
        let mut parts = Vec::with_capacity(self.from.len());
        for (r, rx) in self.from.iter().enumerate() {
            parts.push(if r == self.rank { buf.to_vec() } else { rx.as_ref().unwrap().recv().map_err(|e| CollectiveError(e.to_string()))? });
        }
        buf.copy_from_slice(&parts[0]);
        for p in &parts[1..] {
            buf.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        Ok(())
    }
}

fn meshes(k: usize) -> (Vec<Mesh>, Vec<Receiver<(usize, Vec<u32>)>>) {
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
        .map(|(rank, (to, from))| Mesh { rank, to, from, commands: if rank == 0 { cmd_tx.clone() } else { Vec::new() } })
        .collect();
    (meshes, cmd_rx)
}

fn open() -> GgufFile<std::io::BufReader<std::fs::File>> {
    GgufFile::open(std::io::BufReader::new(std::fs::File::open(common::demo_model()).unwrap())).unwrap()
}

/// Greedy tokens of two turns (the second reusing the first's cache).
fn run_turns(session: &mut Session, mesh: &mut Mesh) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut prompt = session.tokenizer().encode_with_special("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n").unwrap();
    for follow_up in ["<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n", ""] {
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

fn split_run(k: usize) -> Vec<Vec<u32>> {
    let (mut meshes, mut commands) = meshes(k);
    let mut peers = Vec::new();
    for rank in (1..k).rev() {
        let mut mesh = meshes.pop().unwrap();
        let cmds = commands.pop().unwrap();
        peers.push(thread::spawn(move || {
            let mut model = Model::load_partition(&mut open(), Partition::new(rank, k).unwrap(), &mut |_| {}).unwrap();
            let full = model.weight_bytes();
            for (pos, tokens) in cmds {
                model.truncate_cache(pos);
                run_to_completion(model.forward_with(&tokens, &mut mesh)).unwrap().unwrap();
            }
            full
        }));
    }
    let mut mesh = meshes.pop().unwrap();
    let mut session = Session::load_partition(&mut open(), Partition::new(0, k).unwrap(), &mut |_| {}).unwrap();
    let ids = run_turns(&mut session, &mut mesh);
    let mine = session.model().weight_bytes();
    drop(mesh);
    drop(session);
    for p in peers {
        let theirs = p.join().unwrap();
        assert!(theirs < mine * 2, "a worker holds a slice, not the model: {theirs} vs {mine}");
    }
    ids
}

#[test]
fn two_and_three_workers_give_the_same_greedy_tokens_as_one() {
    let mut whole = Session::load(&mut open()).unwrap();
    let (mut alone, _) = meshes(1);
    let want = run_turns(&mut whole, &mut alone[0]);
    assert!(want.iter().all(|t| t.len() > 3), "{want:?}");
    let whole_bytes = whole.model().weight_bytes();
    for k in [2, 3] {
        assert_eq!(split_run(k), want, "{k} workers");
    }
    let half = Model::load_partition(&mut open(), Partition::new(1, 2).unwrap(), &mut |_| {}).unwrap();
    assert!(half.weight_bytes() * 10 < whole_bytes * 6, "{} of {whole_bytes}", half.weight_bytes());
}

#[test]
fn a_split_that_does_not_fit_is_refused() {
    // Three key/value heads cannot go to four workers.
    let err = Model::load_partition(&mut open(), Partition::new(0, 4).unwrap(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("at most one worker per head"), "{err}");
    // A split model refuses the one-worker forward.
    let mut m = Model::load_partition(&mut open(), Partition::new(0, 2).unwrap(), &mut |_| {}).unwrap();
    assert!(m.forward(&[1, 2]).is_err());
}
