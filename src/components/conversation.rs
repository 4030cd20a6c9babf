//! The conversation: user and assistant bubbles, the assistant's reply rendered
//! as sanitized Markdown while it streams, with copy and regenerate actions and
//! the reply's figures.

use leptos::prelude::*;
use sprig_protocol::{ReplyStats, Role, StopReason};

use crate::controller::Controller;
use crate::markdown::to_safe_html;

fn stats_line(s: &ReplyStats) -> String {
    let stop = match s.stop {
        StopReason::Eos => "",
        StopReason::MaxTokens => " · stopped at the token limit",
        StopReason::Cancelled => " · stopped",
        StopReason::ContextFull => " · context full",
    };
    format!(
        "{} tokens · {:.1} tok/s · prompt {} tokens ({} new, {:.0} tok/s){stop}",
        s.generated_tokens, s.decode_tok_s, s.prompt_tokens, s.prefilled_tokens, s.prefill_tok_s
    )
}

fn copy_to_clipboard(text: String) {
    if let Some(w) = web_sys::window() {
        let _ = w.navigator().clipboard().write_text(&text);
    }
}

/// The list of messages of the open conversation, then the reply streaming
/// into it.
#[component]
pub fn ConversationView(
    /// What an empty conversation says (by default: load a model, then ask).
    #[prop(optional)]
    empty_hint: Option<&'static str>,
) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    let count = Memo::new(move |_| ctl.conversation.with(|c| c.entries.len()));
    // Whether a reply streams into this conversation (the user may have
    // opened another while one ends).
    let streaming =
        Memo::new(move |_| ctl.reply.with(|r| r.as_ref().map(|r| r.conversation.clone())) == Some(ctl.conversation.with(|c| c.id.clone())));
    let hint = empty_hint.unwrap_or("Load a model, then ask anything. Enter sends, Shift+Enter starts a new line.");
    view! {
        <section class="conversation" aria-label="Conversation" aria-live="polite">
            <Show when=move || count.get() == 0 && !streaming.get()>
                <p class="empty muted">{hint}</p>
            </Show>
            <For each=move || 0..count.get() key=move |i| (ctl.conversation.with(|c| c.id.clone()), *i) let:i>
                <MessageBubble index=i />
            </For>
            <Show when=move || streaming.get()>
                <StreamingReply />
            </Show>
        </section>
    }
}

/// The reply as it streams: the one view a token re-renders.
#[component]
fn StreamingReply() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    view! {
        <article class="bubble assistant" data-testid="message-assistant" aria-label="Sprig is replying" aria-busy="true"
            data-live-tokens=move || ctl.reply.with(|r| r.as_ref().map_or(0, |r| r.tokens).to_string())>
            <div class="md" inner_html=move || ctl.reply.with(|r| r.as_ref().map(|r| to_safe_html(&r.text)).unwrap_or_default())></div>
        </article>
    }
}

/// One message of the conversation (a reply once it has ended).
#[component]
fn MessageBubble(
    /// Position of the message in the open conversation.
    index: usize,
) -> impl IntoView {
    let ctl = expect_context::<Controller>();
    // This message alone, memoized: a message added or removed changes the
    // conversation, not this entry, so its Markdown is not rendered again.
    let entry_memo = Memo::new(move |_| ctl.conversation.with(|c| c.entries.get(index).cloned()));
    let entry = move || entry_memo.get();
    let role = ctl.conversation.with_untracked(|c| c.entries.get(index).map(|e| e.role)).unwrap_or(Role::User);
    let is_last = move || ctl.conversation.with(|c| c.entries.len() == index + 1);
    match role {
        Role::User | Role::System => view! {
            <article class="bubble user" data-testid="message-user" aria-label="You said">
                <p class="plain">{move || entry().map(|e| e.content).unwrap_or_default()}</p>
            </article>
        }
        .into_any(),
        Role::Assistant => view! {
            <article class="bubble assistant" data-testid="message-assistant" aria-label="Sprig replied" aria-busy="false">
                <div class="md" inner_html=move || entry().map(|e| to_safe_html(&e.content)).unwrap_or_default()></div>
                <footer class="reply-footer">
                    {move || entry().and_then(|e| e.stats).map(|s| view! {
                        <span class="muted" data-testid="reply-stats"
                            data-prefill-exchange-ms=format!("{:.0}", s.prefill_exchange_ms)
                            data-decode-exchange-ms=format!("{:.0}", s.decode_exchange_ms)
                            data-memory-bytes=s.memory_bytes.to_string()
                            data-weight-bytes=s.weight_bytes.to_string()
                            data-cache-bytes=s.cache_bytes.to_string()>{stats_line(&s)}</span>
                    })}
                    <button class="link" aria-label="Copy this reply" data-testid="copy"
                        on:click=move |_| copy_to_clipboard(entry().map(|e| e.content).unwrap_or_default())>"Copy"</button>
                    <Show when=is_last>
                        <button class="link" data-testid="regenerate" aria-label="Regenerate this reply"
                            on:click=move |_| ctl.regenerate()>"Regenerate"</button>
                    </Show>
                </footer>
            </article>
        }
        .into_any(),
    }
}
