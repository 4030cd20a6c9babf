//! What the embedding page asked for, read from the widget's query string:
//! checked here, so the rest of the widget trusts it.

use leptos::prelude::window;
use sprig_protocol::limits;

/// The widget's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    /// Follow the device's light or dark preference.
    #[default]
    Auto,
    /// Always light.
    Light,
    /// Always dark.
    Dark,
}

impl Theme {
    fn parse(s: &str) -> Self {
        match s {
            "light" => Self::Light,
            "dark" => Self::Dark,
            _ => Self::Auto,
        }
    }
}

/// What the embedding page asked for, read from the widget's query string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbedConfig {
    /// The model to load, if any: a catalog id, or a manifest or GGUF URL
    /// (loaded only where the catalog allows custom URLs:
    /// [`crate::catalog::CatalogState::widget_model`]).
    pub model: Option<String>,
    /// The title bar's text.
    pub title: String,
    /// Light, dark or automatic colours.
    pub theme: Theme,
    /// The embedding page's origin, when it is a valid http(s) origin: the
    /// only origin the bridge listens to and posts to. `None`: no bridge.
    pub parent: Option<String>,
    /// embed.js's random nonce (16 to 64 letters and digits), echoed in
    /// every bridge message.
    pub nonce: Option<String>,
    /// A system prompt for every conversation.
    pub system_prompt: Option<String>,
    /// The longest reply, in tokens.
    pub max_tokens: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
}

impl EmbedConfig {
    /// The configuration in a query's key/value pairs, or `None` when the
    /// query does not ask for the widget (`embed=1`).
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Option<Self> {
        let mut embed = false;
        let mut c = Self { title: "Sprig".into(), ..Self::default() };
        for (k, v) in pairs {
            let v = v.as_ref().trim();
            match k.as_ref() {
                "embed" => embed = v == "1",
                "model" if !v.is_empty() => c.model = Some(v.to_string()),
                "title" if !v.is_empty() => c.title = v.chars().take(80).collect(),
                "theme" => c.theme = Theme::parse(v),
                "parent" if is_origin(v) => c.parent = Some(v.to_string()),
                "nonce" if (16..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric()) => c.nonce = Some(v.to_string()),
                "system" if !v.is_empty() => c.system_prompt = Some(v.to_string()),
                "max_tokens" => c.max_tokens = v.parse().ok().filter(|n| limits::MAX_TOKENS.contains(n)),
                "temperature" => c.temperature = v.parse().ok().filter(|t: &f64| limits::TEMPERATURE.contains(t)),
                _ => {}
            }
        }
        embed.then_some(c)
    }

    /// The configuration of this page's URL, or `None` when it is not the widget.
    pub fn from_location() -> Option<Self> {
        let search = window().location().search().ok()?;
        let params = web_sys::UrlSearchParams::new_with_str(&search).ok()?;
        let entries = js_sys::try_iter(&params).ok()??;
        let pairs = entries.filter_map(Result::ok).filter_map(|pair| {
            let pair = js_sys::Array::from(&pair);
            Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
        });
        Self::from_pairs(pairs)
    }
}

/// Whether `s` is a serialized http(s) origin (`https://host[:port]`, as
/// `location.origin` gives it): never `null`, `*`, a path or credentials.
pub fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else { return false };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((inner, after)) = v6.split_once(']') else { return false };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return false;
        }
        ("v6", port)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(query: &[(&str, &str)]) -> Option<EmbedConfig> {
        EmbedConfig::from_pairs(query.iter().copied())
    }

    #[test]
    fn only_embed_1_is_the_widget() {
        assert_eq!(config(&[]), None);
        assert_eq!(config(&[("embed", "0"), ("model", "m.json")]), None);
        let c = config(&[("embed", "1")]).unwrap();
        assert_eq!((c.title.as_str(), c.theme, c.model, c.parent), ("Sprig", Theme::Auto, None, None));
    }

    #[test]
    fn options_are_read_and_checked() {
        let c = config(&[
            ("embed", "1"),
            ("model", "https://sprig.example/models/m.manifest.json"),
            ("title", "Help"),
            ("theme", "dark"),
            ("parent", "https://shop.example:8443"),
            ("system", "Be brief."),
            ("max_tokens", "64"),
            ("temperature", "0"),
        ])
        .unwrap();
        assert_eq!(c.model.as_deref(), Some("https://sprig.example/models/m.manifest.json"));
        assert_eq!((c.title.as_str(), c.theme), ("Help", Theme::Dark));
        assert_eq!(c.parent.as_deref(), Some("https://shop.example:8443"));
        assert_eq!((c.system_prompt.as_deref(), c.max_tokens, c.temperature), (Some("Be brief."), Some(64), Some(0.0)));
        let c = config(&[("embed", "1"), ("theme", "purple"), ("max_tokens", "0"), ("temperature", "9"), ("parent", "*")]).unwrap();
        assert_eq!((c.theme, c.max_tokens, c.temperature, c.parent), (Theme::Auto, None, None, None));
        let nonce = |v: &str| config(&[("embed", "1"), ("nonce", v)]).unwrap().nonce;
        assert_eq!(nonce("0123456789abcdef0123").as_deref(), Some("0123456789abcdef0123"));
        for bad in ["short", "0123456789abcdef'><", &"a".repeat(65)] {
            assert_eq!(nonce(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_real_origins_are_parents() {
        for ok in ["https://a.example", "http://127.0.0.1:8080", "http://localhost", "https://[::1]:443", "http://[::1]"] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "*",
            "",
            "https://",
            "https://a.example/",
            "https://a.example/x",
            "https://u@a.example",
            "file://",
            "javascript:x",
            "https://a.example:",
            "https://a.example:80x",
            "https://a b",
            "https://[::1",
            "https://[::1]x",
            "https://[]",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
