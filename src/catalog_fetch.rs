//! Reads the deployment's catalog, `models.json` beside the page: fetched
//! past the HTTP cache's freshness (`no-cache`: revalidated each start, so
//! an edited catalog shows on the next visit; the service worker answers
//! offline), bounded, checked ([`Catalog::parse`]), and each model's URL
//! made absolute against the catalog's own URL.

use sprig_protocol::catalog::MAX_CATALOG_BYTES;
use sprig_protocol::Catalog;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Request, RequestCache, RequestInit, Response};

/// The catalog's address, relative to the page.
pub const CATALOG_URL: &str = "models.json";

/// Fetches, checks and resolves the catalog.
///
/// # Errors
/// A sentence for the page: the catalog is missing (HTTP status, network),
/// too large, or malformed (naming the model and field).
pub async fn fetch_catalog() -> Result<Catalog, String> {
    let (json, base) = fetch_text().await.map_err(|e| format!("the model catalog (models.json) could not be read: {e}"))?;
    let mut catalog = Catalog::parse(&json).map_err(|e| format!("the model catalog is malformed: {e}"))?;
    for model in &mut catalog.models {
        let url = web_sys::Url::new_with_base(&model.url, &base)
            .map_err(|_| format!("the model catalog is malformed: model `{}`: url {} is not a valid URL", model.id, model.url))?;
        model.url = url.href();
    }
    Ok(catalog)
}

/// The catalog's text and the URL it came from (after redirects).
async fn fetch_text() -> Result<(String, String), String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = RequestInit::new();
    init.set_cache(RequestCache::NoCache);
    let request = Request::new_with_str_and_init(CATALOG_URL, &init).map_err(|e| describe(&e))?;
    let response: Response =
        JsFuture::from(window.fetch_with_request(&request)).await.map_err(|e| describe(&e))?.dyn_into().map_err(|e| describe(&e))?;
    let url = response.url();
    if !response.ok() {
        return Err(format!("HTTP {} at {url}", response.status()));
    }
    let length = response.headers().get("content-length").ok().flatten().and_then(|l| l.parse::<usize>().ok());
    if let Some(length) = length.filter(|l| *l > MAX_CATALOG_BYTES) {
        return Err(format!("{url} is {length} bytes long; Sprig reads catalogs of at most {MAX_CATALOG_BYTES} bytes"));
    }
    let text = JsFuture::from(response.text().map_err(|e| describe(&e))?).await.map_err(|e| describe(&e))?;
    Ok((text.as_string().ok_or("its body is not text")?, url))
}

/// A JS error's message.
fn describe(e: &wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map_or_else(|| format!("{e:?}"), |e| String::from(e.message()))
}
