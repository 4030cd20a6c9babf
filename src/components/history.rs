//! Past conversations: reopen or delete.

use leptos::prelude::*;

use crate::controller::Controller;

/// The list of saved conversations.
#[component]
pub fn History() -> impl IntoView {
    let ctl = expect_context::<Controller>();
    view! {
        <nav class="history" aria-label="Past conversations">
            <ul>
                <For each=move || ctl.history.get() key=|(id, title)| (id.clone(), title.clone()) let:item>
                    {
                        let (id, title) = item;
                        let (open_id, del_id) = (id.clone(), id.clone());
                        let current = move || ctl.conversation.with(|c| c.id == id);
                        view! {
                            <li class:current=current data-testid="history-item">
                                <button class="link title" on:click=move |_| ctl.open(open_id.clone())>{title.clone()}</button>
                                <button class="link delete" data-testid="history-delete" aria-label=format!("Delete “{title}”")
                                    on:click=move |_| ctl.delete(del_id.clone())>"Delete"</button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </nav>
    }
}
