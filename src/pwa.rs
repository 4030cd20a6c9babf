//! The installable, offline app, page side: registers the service worker
//! (`sw.js`, written per build by `scripts/pwa-build`, which precaches the app
//! shell) and says when a new version of the app is waiting.
//!
//! A new version never takes over on its own. Its service worker installs
//! beside the running one and waits; [`Pwa::update`] becomes
//! [`Update::Waiting`], the page shows a prompt, and only [`Pwa::apply`] (the
//! user's click) tells the waiting worker to take over and reloads once it has.

use std::cell::Cell;
use std::rc::Rc;

use gloo_events::EventListener;
use leptos::logging::warn;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RegistrationOptions, ServiceWorker, ServiceWorkerContainer, ServiceWorkerRegistration, ServiceWorkerState};

/// The service worker's script, beside `index.html`; its scope is that folder.
pub const SW_URL: &str = "./sw.js";

/// Whether a newer version of the app than the one running is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The running version is the newest known.
    None,
    /// A new version is installed and waits for [`Pwa::apply`].
    Waiting,
    /// Another tab switched to the new version: this page still runs the old
    /// one and should reload.
    Elsewhere,
}

/// The service worker's state as the page sees it; `Copy`.
#[derive(Clone, Copy)]
pub struct Pwa {
    /// Whether a new version is there.
    pub update: RwSignal<Update>,
    /// Set by [`Pwa::apply`]: the page reloads as soon as the new version controls it.
    pub reloading: RwSignal<bool>,
    registration: StoredValue<Option<ServiceWorkerRegistration>, LocalStorage>,
}

impl std::fmt::Debug for Pwa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pwa").field("update", &self.update.get_untracked()).field("reloading", &self.reloading.get_untracked()).finish()
    }
}

impl Pwa {
    /// Registers the service worker (where the browser has them: secure
    /// contexts only) and starts watching for new versions.
    pub fn start() -> Self {
        let pwa = Self { update: RwSignal::new(Update::None), reloading: RwSignal::new(false), registration: StoredValue::new_local(None) };
        if let Some(container) = container() {
            pwa.watch(container);
        }
        pwa
    }

    /// Switches to the waiting version: asks its service worker to take over,
    /// and reloads the page when it has (at once when another tab already
    /// switched). Call it only between replies.
    pub fn apply(self) {
        self.reloading.set(true);
        let waiting = self.registration.with_value(|r| r.as_ref().and_then(ServiceWorkerRegistration::waiting));
        match waiting {
            Some(worker) => {
                let message = js_sys::Object::new();
                let posted =
                    js_sys::Reflect::set(&message, &"type".into(), &"SKIP_WAITING".into()).and_then(|_| worker.post_message(&message));
                if let Err(e) = posted {
                    warn!("cannot reach the new service worker: {e:?}");
                    reload();
                }
                // The reload follows on `controllerchange` (see `watch`).
            }
            None => reload(),
        }
    }

    fn watch(self, container: ServiceWorkerContainer) {
        // A first visit's page becomes controlled by `clients.claim()`: that
        // change is no new version. Any later one is.
        let controlled = Rc::new(Cell::new(container.controller().is_some()));
        EventListener::new(&container, "controllerchange", move |_| {
            if self.reloading.get_untracked() {
                reload();
            } else if controlled.get() {
                self.update.set(Update::Elsewhere);
            }
            controlled.set(true);
        })
        .forget(); // lives as long as the page

        spawn_local(async move {
            let options = RegistrationOptions::new();
            options.set_scope("./");
            match JsFuture::from(container.register_with_options(SW_URL, &options)).await {
                Ok(registration) => {
                    let registration: ServiceWorkerRegistration = registration.unchecked_into();
                    self.track(&container, &registration);
                    self.registration.set_value(Some(registration));
                }
                // The app still works online; only offline use and updates are lost.
                Err(e) => warn!("cannot register the service worker {SW_URL}: {e:?}"),
            }
        });
    }

    /// Watches `registration` for a new version installing and waiting.
    fn track(self, container: &ServiceWorkerContainer, registration: &ServiceWorkerRegistration) {
        // Installed while an older version controls this page: an update (on a
        // first visit nothing controls the page and the worker activates at once).
        if registration.waiting().is_some() && container.controller().is_some() {
            self.update.set(Update::Waiting);
        }
        if let Some(worker) = registration.installing() {
            self.watch_installing(container.clone(), worker);
        }
        let (container, watched) = (container.clone(), registration.clone());
        EventListener::new(registration, "updatefound", move |_| {
            if let Some(worker) = watched.installing() {
                self.watch_installing(container.clone(), worker);
            }
        })
        .forget(); // lives as long as the page
    }

    fn watch_installing(self, container: ServiceWorkerContainer, worker: ServiceWorker) {
        let watched = worker.clone();
        EventListener::new(&worker, "statechange", move |_| {
            if watched.state() == ServiceWorkerState::Installed && container.controller().is_some() {
                self.update.set(Update::Waiting);
            }
        })
        .forget(); // one per new version; lives as long as the page
    }
}

/// The page's service worker container, where the browser offers one.
fn container() -> Option<ServiceWorkerContainer> {
    let navigator = web_sys::window()?.navigator();
    // `navigator.serviceWorker` is missing outside secure contexts.
    let present = js_sys::Reflect::has(&navigator, &"serviceWorker".into()).unwrap_or(false);
    present.then(|| navigator.service_worker())
}

fn reload() {
    if let Some(Err(e)) = web_sys::window().map(|w| w.location().reload()) {
        warn!("cannot reload the page: {e:?}");
    }
}
