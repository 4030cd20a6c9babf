//! The deployment's model catalog as the UI holds it (`models.json`, read
//! at start: [`sprig_protocol::Catalog`]), which model a widget's
//! `data-model` means, and how a catalog model's defaults become the
//! settings. Plain data and pure functions, tested natively.
//!
//! **The defaults rule.** Each setting the user has not changed in this page
//! follows the model being loaded: the catalog model's default when it sets
//! one, else the app's own default. A setting the user changed (in Settings,
//! or the widget's host page through its `data-*` options) stays as they set
//! it, whatever model loads next. Defaults apply when a model whose URL the
//! catalog lists starts loading (from the picker, the Models panel or the
//! widget); any other model (a custom URL, a picked file) brings back the
//! app's defaults for the untouched settings.

use sprig_protocol::catalog::is_model_id;
use sprig_protocol::{Catalog, CatalogModel, GenerationSettings, ModelDefaults};

use crate::state::Settings;

/// Where the catalog stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CatalogState {
    /// Being fetched.
    #[default]
    Loading,
    /// Read and checked; every model's `url` made absolute (against the
    /// catalog's own URL).
    Ready(Catalog),
    /// Missing or malformed: why, for the page to say.
    Failed(String),
}

impl CatalogState {
    /// The models offered (none unless the catalog is ready).
    pub fn models(&self) -> &[CatalogModel] {
        match self {
            Self::Ready(c) => &c.models,
            _ => &[],
        }
    }

    /// Whether the app offers loading a URL of the user's own: unless the
    /// catalog says no. Without a readable catalog the user may still type
    /// one (the page says the catalog failed).
    pub fn allows_custom_urls(&self) -> bool {
        match self {
            Self::Ready(c) => c.allow_custom_urls,
            Self::Loading | Self::Failed(_) => true,
        }
    }

    /// The catalog model whose (absolute) URL is `url`.
    pub fn model_at(&self, url: &str) -> Option<&CatalogModel> {
        self.models().iter().find(|m| m.url == url)
    }

    /// The absolute URL of the model the widget's `data-model` names: a
    /// catalog id, or (only where the catalog allows custom URLs) a URL,
    /// returned as given. `None` while the catalog is still being read.
    ///
    /// # Errors
    /// Why the widget loads nothing: an id the catalog does not list, a URL
    /// the catalog does not allow, or a catalog that could not be read
    /// (then the widget loads no URL at all: a host page must not make
    /// Sprig fetch arbitrary files because its catalog is missing).
    pub fn widget_model(&self, requested: &str) -> Option<Result<String, String>> {
        let catalog = match self {
            Self::Loading => return None,
            Self::Failed(reason) => return Some(Err(format!("{reason}; the widget loads no model without it"))),
            Self::Ready(c) => c,
        };
        Some(if is_model_id(requested) {
            catalog.find(requested).map(|m| m.url.clone()).ok_or_else(|| {
                let ids: Vec<&str> = catalog.models.iter().map(|m| m.id.as_str()).collect();
                format!("data-model names `{requested}`, which this Sprig's catalog does not list (it lists: {})", ids.join(", "))
            })
        } else if catalog.allow_custom_urls {
            Ok(requested.to_string())
        } else {
            Err("this Sprig loads only the models of its catalog: data-model must be a catalog id, not a URL".to_string())
        })
    }
}

/// Which settings the user changed in this page: those keep their value
/// when a model with defaults loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Touched {
    /// The system prompt.
    pub system_prompt: bool,
    /// The temperature.
    pub temperature: bool,
    /// Top-p.
    pub top_p: bool,
    /// Top-k.
    pub top_k: bool,
    /// The longest reply.
    pub max_tokens: bool,
    /// The context limit.
    pub context: bool,
    /// The model workers.
    pub workers: bool,
}

impl Touched {
    /// Marks the settings `pinned` names as the user's.
    pub fn pin(&mut self, pinned: Touched) {
        self.system_prompt |= pinned.system_prompt;
        self.temperature |= pinned.temperature;
        self.top_p |= pinned.top_p;
        self.top_k |= pinned.top_k;
        self.max_tokens |= pinned.max_tokens;
        self.context |= pinned.context;
        self.workers |= pinned.workers;
    }

    /// Marks what differs between `old` and `new` (a user's change).
    pub fn mark(&mut self, old: &Settings, new: &Settings) {
        let (o, n) = (&old.generation, &new.generation);
        self.system_prompt |= old.system_prompt != new.system_prompt;
        self.temperature |= o.temperature != n.temperature;
        self.top_p |= o.top_p != n.top_p;
        self.top_k |= o.top_k != n.top_k;
        self.max_tokens |= o.max_tokens != n.max_tokens;
        self.context |= old.context != new.context;
        self.workers |= old.workers != new.workers;
    }
}

/// `settings` for a model with `defaults` (none: the app's): every setting
/// not `touched` takes the model's default, or the app's when the model
/// sets none ([the rule](self)).
pub fn with_defaults(settings: &Settings, touched: Touched, defaults: Option<&ModelDefaults>) -> Settings {
    let d = defaults.cloned().unwrap_or_default();
    let (app, gen) = (Settings::default(), GenerationSettings::default());
    let mut s = settings.clone();
    let g = &mut s.generation;
    if !touched.system_prompt {
        s.system_prompt = d.system_prompt.unwrap_or(app.system_prompt);
    }
    if !touched.temperature {
        g.temperature = d.temperature.unwrap_or(gen.temperature);
    }
    if !touched.top_p {
        g.top_p = d.top_p.unwrap_or(gen.top_p);
    }
    if !touched.top_k {
        g.top_k = d.top_k.unwrap_or(gen.top_k);
    }
    if !touched.max_tokens {
        g.max_tokens = d.max_tokens.unwrap_or(gen.max_tokens);
    }
    if !touched.context {
        s.context = d.context.unwrap_or(app.context);
    }
    if !touched.workers {
        s.workers = d.workers.unwrap_or(app.workers);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str, url: &str) -> CatalogModel {
        CatalogModel {
            id: id.into(),
            label: id.into(),
            url: url.into(),
            size: 1,
            sha256: None,
            license: "MIT".into(),
            description: None,
            defaults: None,
            provenance: None,
        }
    }

    fn ready(allow_custom_urls: bool) -> CatalogState {
        CatalogState::Ready(Catalog {
            version: 1,
            allow_custom_urls,
            models: vec![model("demo", "http://app/models/demo.json"), model("big", "http://cdn/big.json")],
        })
    }

    #[test]
    fn custom_urls_are_offered_unless_the_catalog_says_no() {
        assert!(ready(true).allows_custom_urls());
        assert!(!ready(false).allows_custom_urls());
        assert!(CatalogState::Failed("HTTP 404".into()).allows_custom_urls(), "a broken catalog leaves the custom URL");
        assert!(CatalogState::Loading.models().is_empty());
        assert_eq!(ready(true).model_at("http://cdn/big.json").map(|m| m.id.as_str()), Some("big"));
    }

    #[test]
    fn the_widget_takes_an_id_and_a_url_only_where_allowed() {
        assert_eq!(CatalogState::Loading.widget_model("demo"), None, "it waits for the catalog");
        assert_eq!(ready(false).widget_model("demo"), Some(Ok("http://app/models/demo.json".into())));
        let unknown = ready(true).widget_model("nope").unwrap().unwrap_err();
        assert!(unknown.contains("`nope`") && unknown.contains("demo, big"), "{unknown}");
        let url = "https://evil.example/huge.gguf";
        assert_eq!(ready(true).widget_model(url), Some(Ok(url.into())));
        assert!(ready(false).widget_model(url).unwrap().unwrap_err().contains("must be a catalog id"));
        let failed = CatalogState::Failed("models.json: HTTP 404".into());
        assert!(failed.widget_model(url).unwrap().unwrap_err().starts_with("models.json: HTTP 404"));
        assert!(failed.widget_model("demo").unwrap().is_err());
    }

    #[test]
    fn defaults_start_untouched_settings_and_leave_the_users_alone() {
        let defaults = ModelDefaults {
            system_prompt: Some("Be brief.".into()),
            temperature: Some(0.2),
            max_tokens: Some(64),
            context: Some(2048),
            workers: Some(1),
            ..ModelDefaults::default()
        };
        let app = Settings::default();
        let s = with_defaults(&app, Touched::default(), Some(&defaults));
        assert_eq!((s.system_prompt.as_str(), s.generation.temperature, s.generation.max_tokens), ("Be brief.", 0.2, 64));
        assert_eq!((s.context, s.workers), (2048, 1));
        assert_eq!(s.generation.top_p, app.generation.top_p, "what the model leaves out is the app's");
        // The user changed the temperature: it stays, the rest follows the model.
        let mut user = app.clone();
        user.generation.temperature = 1.3;
        let mut touched = Touched::default();
        touched.mark(&app, &user);
        assert_eq!(touched, Touched { temperature: true, ..Touched::default() });
        let s = with_defaults(&user, touched, Some(&defaults));
        assert_eq!((s.generation.temperature, s.generation.max_tokens), (1.3, 64));
        // Another model without defaults: the untouched settings go back to the app's.
        let s = with_defaults(&s, touched, None);
        assert_eq!((s.generation.temperature, s.generation.max_tokens, s.context), (1.3, app.generation.max_tokens, 0));
        assert_eq!(s.system_prompt, "");
        // Connections, repeat penalty and seed are never a model's.
        let mut other = app.clone();
        other.connections = 9;
        other.generation.seed = 5;
        let s = with_defaults(&other, Touched::default(), Some(&defaults));
        assert_eq!((s.connections, s.generation.seed), (9, 5));
    }
}
