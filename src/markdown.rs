//! Model output to safe HTML: Markdown rendered with pulldown-cmark, then
//! sanitized with ammonia, so a reply can never inject markup that runs
//! (scripts, event handlers, `javascript:` links, iframes, styles).

use pulldown_cmark::{html, Options, Parser};

/// Renders `markdown` to sanitized HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
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
    fn code_blocks_keep_their_text_escaped() {
        let html = to_safe_html("```html\n<script>alert(1)</script>\n```");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
