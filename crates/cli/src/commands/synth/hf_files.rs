//! The JSON files around the weights, as in mistralai/Mistral-7B-Instruct-v0.2:
//! written as `transformers` writes them (`json.dumps(..., indent=2,
//! sort_keys=True)` and a final newline), so numbers keep Python's spelling
//! (`1e-05`, `1000000.0`).

use super::shape::Shape;
use super::values::Dtype;

/// Mistral-7B-Instruct-v0.2's chat template, verbatim from the `chat_template`
/// of its `tokenizer_config.json` on the Hugging Face Hub (the version
/// published with the model in December 2023): BOS once, `[INST] … [/INST]`
/// around user turns, assistant turns followed by EOS, and an exception when
/// roles do not alternate user/assistant.
pub const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

/// The `transformers` version Mistral-7B-Instruct-v0.2's files name.
const TRANSFORMERS_VERSION: &str = "4.36.0";

/// `config.json`: Mistral-7B-Instruct-v0.2's, with the shape's dimensions and
/// `torch_dtype` naming the stored type.
pub fn config_json(shape: &Shape, dtype: Dtype) -> String {
    format!(
        r#"{{
  "architectures": [
    "MistralForCausalLM"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": {hidden},
  "initializer_range": 0.02,
  "intermediate_size": {intermediate},
  "max_position_embeddings": {max_positions},
  "model_type": "mistral",
  "num_attention_heads": {heads},
  "num_hidden_layers": {layers},
  "num_key_value_heads": {kv_heads},
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "{torch_dtype}",
  "transformers_version": "{TRANSFORMERS_VERSION}",
  "use_cache": true,
  "vocab_size": {vocab}
}}
"#,
        hidden = shape.hidden,
        intermediate = shape.intermediate,
        max_positions = shape.max_positions,
        heads = shape.heads,
        layers = shape.layers,
        kv_heads = shape.kv_heads,
        vocab = shape.vocab,
        torch_dtype = dtype.torch_name(),
    )
}

/// `generation_config.json`.
pub fn generation_config_json() -> String {
    format!(
        r#"{{
  "_from_model_config": true,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "transformers_version": "{TRANSFORMERS_VERSION}"
}}
"#
    )
}

/// One special token as `added_tokens_decoder` and `special_tokens_map.json`
/// describe it (`special` only in the former).
fn special_token(content: &str, indent: &str, special: bool) -> String {
    let special = if special { format!(",\n{indent}  \"special\": true") } else { String::new() };
    format!(
        "{{\n{indent}  \"content\": \"{content}\",\n{indent}  \"lstrip\": false,\n{indent}  \"normalized\": false,\n{indent}  \"rstrip\": false,\n{indent}  \"single_word\": false{special}\n{indent}}}"
    )
}

/// `tokenizer_config.json`: Mistral-7B-Instruct-v0.2's, with its chat
/// template; `model_max_length` is `transformers`' "unlimited" default
/// (`int(1e30)`) as in the real file.
pub fn tokenizer_config_json() -> String {
    let token = |c| special_token(c, "    ", true);
    let template = serde_json::Value::from(CHAT_TEMPLATE).to_string();
    format!(
        r#"{{
  "add_bos_token": true,
  "add_eos_token": false,
  "added_tokens_decoder": {{
    "0": {unk},
    "1": {bos},
    "2": {eos}
  }},
  "additional_special_tokens": [],
  "bos_token": "<s>",
  "chat_template": {template},
  "clean_up_tokenization_spaces": false,
  "eos_token": "</s>",
  "legacy": true,
  "model_max_length": 1000000000000000019884624838656,
  "pad_token": null,
  "sp_model_kwargs": {{}},
  "spaces_between_special_tokens": false,
  "tokenizer_class": "LlamaTokenizer",
  "unk_token": "<unk>",
  "use_default_system_prompt": false
}}
"#,
        unk = token("<unk>"),
        bos = token("<s>"),
        eos = token("</s>"),
    )
}

/// `special_tokens_map.json`.
pub fn special_tokens_map_json() -> String {
    let token = |c| special_token(c, "  ", false);
    format!("{{\n  \"bos_token\": {},\n  \"eos_token\": {},\n  \"unk_token\": {}\n}}\n", token("<s>"), token("</s>"), token("<unk>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::synth::shape::ShapeName;

    #[test]
    fn every_file_is_valid_json() {
        let shape = Shape::new(ShapeName::Mistral7b, 32_000);
        for text in [config_json(&shape, Dtype::Bf16), generation_config_json(), tokenizer_config_json(), special_tokens_map_json()] {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(value.is_object() && text.ends_with("}\n"));
        }
        let config: serde_json::Value = serde_json::from_str(&config_json(&shape, Dtype::Bf16)).unwrap();
        assert_eq!(config["torch_dtype"], "bfloat16");
        assert_eq!(config["rms_norm_eps"], 1e-5);
        let tok: serde_json::Value = serde_json::from_str(&tokenizer_config_json()).unwrap();
        assert_eq!(tok["chat_template"], CHAT_TEMPLATE);
        assert_eq!(tok["added_tokens_decoder"]["2"]["content"], "</s>");
    }
}
