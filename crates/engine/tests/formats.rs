//! Every quantization type the engine promises loads and runs; gguf-split
//! shards load like the single file; chat templates can raise errors.

mod common;

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use sprig_engine::chat::{ChatError, ChatFormat, ChatMessage};
use sprig_engine::synthetic::SyntheticSpec;
use sprig_engine::{GgufError, GgufFile, Role, SamplingParams, Session};

fn greedy_ids(file: &mut GgufFile<Cursor<Vec<u8>>>) -> Vec<u32> {
    let mut s = Session::load(file).unwrap();
    let prompt = s.chat_prompt(&[ChatMessage::new(Role::User, "Hello")]).unwrap();
    s.generate(&prompt, SamplingParams::greedy(6), &mut |_| {}).unwrap().0
}

#[test]
fn every_promised_quantization_type_loads_and_runs() {
    use GgmlDType::*;
    for dtype in [F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K] {
        // K-quants need rows of 256.
        let spec = SyntheticSpec { dtype, n_embd: 256, n_head: 4, n_head_kv: 2, n_ff: 512, ..SyntheticSpec::tiny_mistral() };
        let mut file = common::open(common::tiny_mistral_bytes(&spec));
        let s = Session::load(&mut file).unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        assert!(s.model().weight_types().iter().any(|(_, t)| *t == dtype), "{dtype:?}");
        let ids = greedy_ids(&mut common::open(common::tiny_mistral_bytes(&spec)));
        assert_eq!(ids.len(), 6, "{dtype:?}");
    }
}

/// Splits a GGUF file into `n` gguf-split shards, as llama.cpp's gguf-split does:
/// all metadata in the first shard, `split.*` keys in every shard.
fn split(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut cur = Cursor::new(bytes.to_vec());
    let content = Content::read(&mut cur).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let tensors: Vec<(String, QTensor)> =
        names.iter().map(|n| ((*n).clone(), content.tensor(&mut cur, n, &Device::Cpu).unwrap())).collect();
    let per = tensors.len().div_ceil(n);
    (0..n)
        .map(|i| {
            let mut meta: Vec<(String, Value)> =
                if i == 0 { content.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect() } else { vec![] };
            meta.push(("split.no".into(), Value::U16(i as u16)));
            meta.push(("split.count".into(), Value::U16(n as u16)));
            meta.push(("split.tensors.count".into(), Value::I32(tensors.len() as i32)));
            let part = &tensors[i * per..((i + 1) * per).min(tensors.len())];
            let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let t: Vec<(&str, &QTensor)> = part.iter().map(|(k, v)| (k.as_str(), v)).collect();
            let mut out = Cursor::new(Vec::new());
            gguf_file::write(&mut out, &m, &t).unwrap();
            out.into_inner()
        })
        .collect()
}

#[test]
fn gguf_split_shards_load_in_any_order_and_match_the_single_file() {
    let bytes = common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral());
    let want = greedy_ids(&mut common::open(bytes.clone()));
    let mut shards = split(&bytes, 3);
    shards.swap(0, 2);
    let mut file = GgufFile::open_split(shards.into_iter().map(Cursor::new).collect()).unwrap();
    assert_eq!(file.shard_count(), 3);
    assert_eq!(file.info().unwrap().tensor_count, 2 * 9 + 3);
    assert_eq!(greedy_ids(&mut file), want);
}

#[test]
fn a_missing_or_repeated_shard_is_named() {
    let bytes = common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral());
    let shards = split(&bytes, 3);
    let err = GgufFile::open_split(vec![Cursor::new(shards[0].clone()), Cursor::new(shards[1].clone())]).unwrap_err();
    assert!(matches!(err, GgufError::Split(_)), "{err}");
    assert!(err.to_string().contains("3 shards, 2 were given"), "{err}");
    let err = GgufFile::open_split(vec![Cursor::new(shards[0].clone()), Cursor::new(shards[1].clone()), Cursor::new(shards[1].clone())])
        .unwrap_err();
    assert!(err.to_string().contains("missing or repeated"), "{err}");
    // One shard alone is not a model either.
    let err = GgufFile::open(Cursor::new(shards[0].clone())).unwrap_err();
    assert!(err.to_string().contains("3 shards, 1 were given"), "{err}");
}

#[test]
fn templates_can_raise_exceptions_and_use_python_methods() {
    let bytes = common::tiny_mistral_bytes(&SyntheticSpec::tiny_mistral());
    let file = common::open(bytes);
    let t = sprig_engine::Tokenizer::from_gguf(&file.metadata()).unwrap();
    let template = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}\
                    {{ bos_token }}{{ m['role'].upper() }}: {{ m['content'].strip() }}\n{% endfor %}";
    let format = ChatFormat::Template(template.into());
    let err = format.encode(&t, &[ChatMessage::new(Role::System, "x"), ChatMessage::new(Role::User, "hi")], true).unwrap_err();
    assert!(matches!(err, ChatError::Template(ref m) if m.contains("System role not supported")), "{err}");
    let ids = format.encode(&t, &[ChatMessage::new(Role::User, "hi </s>")], true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1, "bos from the template only: {ids:?}");
    assert!(!ids.contains(&2), "`</s>` in the message stays text: {ids:?}");
    assert_eq!(t.decode(&ids, true).unwrap(), "USER: hi </s>\n");
}
