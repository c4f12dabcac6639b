//! The gallery's pages as HTML: one self-contained file each (inline CSS, one inline
//! `onerror` handler, no script file, no font, no framework), readable from `file://` on a
//! laptop or a phone, in light or dark appearance. Everything that comes from a file name, a
//! prompt or a server is escaped, and every link is relative and stays inside the outbox.

use super::entry::Entry;
use std::fmt::Write;
use std::path::Path;

/// What one page shows.
pub struct View<'a> {
    /// The page's `<title>` and heading.
    pub title: &'a str,
    /// One line under the heading (counts, which jobs).
    pub summary: String,
    /// The cards, newest first.
    pub entries: Vec<&'a Entry>,
    /// Links to other pages: (label, file name in `gallery/`).
    pub links: Vec<(String, String)>,
    /// Whether a file (relative to the outbox) is there: moved or deleted ones show as missing.
    pub exists: &'a dyn Fn(&Path) -> bool,
}

/// Cards that load their thumbnails at once; later ones load as they scroll into view.
const EAGER_CARDS: usize = 12;

/// The whole page.
pub fn page(view: &View<'_>) -> String {
    let mut out = String::with_capacity(4096 + view.entries.len() * 1800);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape(view.title));
    out.push_str("<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<header class=\"top\">\n");
    let _ = writeln!(out, "<h1>{}</h1>", escape(view.title));
    let _ = writeln!(out, "<p class=\"summary\">{}</p>", escape(&view.summary));
    nav(&mut out, &view.links);
    out.push_str("</header>\n<main>\n");
    if view.entries.is_empty() {
        out.push_str("<p class=\"empty\">Nothing here yet: drop a picture into the inbox.</p>\n");
    }
    for (index, entry) in view.entries.iter().enumerate() {
        card(&mut out, entry, index < EAGER_CARDS, view.exists);
    }
    out.push_str("</main>\n");
    if !view.entries.is_empty() {
        out.push_str("<footer>\n");
        nav(&mut out, &view.links);
        out.push_str("</footer>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn nav(out: &mut String, links: &[(String, String)]) {
    if links.is_empty() {
        return;
    }
    out.push_str("<nav>");
    for (label, file) in links {
        let _ = write!(
            out,
            "<a href=\"{}\">{}</a>",
            escape(&encode_path(Path::new(file))),
            escape(label)
        );
    }
    out.push_str("</nav>\n");
}

fn card(out: &mut String, entry: &Entry, eager: bool, exists: &dyn Fn(&Path) -> bool) {
    let state = if entry.failed { "failed" } else { "done" };
    let _ = writeln!(
        out,
        "<article class=\"card {state}\" id=\"job-{}\">",
        escape(&entry.key)
    );
    let _ = writeln!(
        out,
        "<div class=\"head\"><span class=\"badge\">{state}</span><h2>{}</h2><time>{}</time></div>",
        escape(&entry.input),
        escape(&shown_time(&entry.time))
    );
    out.push_str("<div class=\"pictures\">");
    if let Some(original) = &entry.original {
        let label = if entry.failed { "input" } else { "before" };
        figure(
            out,
            label,
            original,
            entry.original_thumb.as_deref(),
            eager,
            exists,
        );
    }
    if entry.failed {
        let reason = entry.error.as_deref().unwrap_or("no reason was recorded");
        let _ = write!(out, "<p class=\"reason\">{}</p>", escape(reason));
    }
    let count = entry.outputs.len();
    for (index, output) in entry.outputs.iter().enumerate() {
        let label = if count > 1 {
            format!("after {}/{count}", index + 1)
        } else {
            "after".to_owned()
        };
        let thumb = entry.output_thumbs.get(index).cloned().flatten();
        figure(out, &label, output, thumb.as_deref(), eager, exists);
    }
    out.push_str("</div>\n");
    if let Some(prompt) = entry.prompt.as_deref().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "<p class=\"prompt\">{}</p>", escape(prompt));
    }
    out.push_str("<dl>");
    let seconds = format!("{:.1} s", entry.total_ms as f64 / 1000.0);
    let seed = entry.seed.map(|seed| seed.to_string());
    for (term, value) in [
        ("profile", Some(entry.profile.as_str())),
        ("seed", seed.as_deref()),
        ("model", entry.model.as_deref()),
        ("server", Some(entry.server.as_str())),
        ("took", Some(seconds.as_str())),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let _ = write!(
                out,
                "<div><dt>{term}</dt><dd class=\"{term}\">{}</dd></div>",
                escape(value)
            );
        }
    }
    out.push_str("</dl>\n");
    if entry.failed
        && let Some(failed) = &entry.original
    {
        let error_file = crate::jobs::outbox::error_file_for(failed);
        let _ = writeln!(
            out,
            "<p class=\"files\"><a href=\"{}\">{}</a> · <a href=\"{}\">why</a></p>",
            escape(&outbox_href(failed)),
            escape(&failed.to_string_lossy()),
            escape(&outbox_href(&error_file))
        );
    }
    out.push_str("</article>\n");
}

/// A thumbnail that opens the full picture; "missing" when the file is gone.
fn figure(
    out: &mut String,
    label: &str,
    file: &Path,
    thumb: Option<&str>,
    eager: bool,
    exists: &dyn Fn(&Path) -> bool,
) {
    let name = file.to_string_lossy();
    if !exists(file) {
        let _ = write!(
            out,
            "<figure class=\"missing\"><div class=\"placeholder\">missing</div><figcaption>{} · {}</figcaption></figure>",
            escape(label),
            escape(&name)
        );
        return;
    }
    let href = escape(&outbox_href(file));
    let inner = match thumb {
        Some(thumb) => format!(
            "<img src=\"thumbs/{}\" alt=\"{}\"{} onerror=\"this.closest('figure').classList.add('missing')\">",
            escape(&encode_path(Path::new(thumb))),
            escape(&format!("{label}: {name}")),
            if eager { "" } else { " loading=\"lazy\"" }
        ),
        None => "<div class=\"placeholder\">no preview</div>".to_owned(),
    };
    let _ = write!(
        out,
        "<figure><a href=\"{href}\" title=\"{}\">{inner}</a><figcaption>{}</figcaption></figure>",
        escape(&name),
        escape(label)
    );
}

/// `2026-11-25T22:15:03.123+01:00` -> `2026-11-25 22:15:03`.
fn shown_time(time: &str) -> String {
    time.replacen('T', " ", 1).chars().take(19).collect()
}

/// A link from `gallery/` to a file of the outbox.
fn outbox_href(relative: &Path) -> String {
    format!("../{}", encode_path(relative))
}

/// Text made safe in HTML content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path: each part percent-encoded (UTF-8), joined by `/`.
pub fn encode_path(path: &Path) -> String {
    let mut out = String::new();
    for (index, part) in path.iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        for byte in part.to_string_lossy().bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

const STYLE: &str = r#"
:root{--bg:#f6f5f2;--card:#fff;--text:#1d1d1f;--muted:#6b6b70;--line:#e3e1dc;--accent:#2f6fdf;--bad:#c0392b;--badbg:#fdecea;--ok:#2e7d32;--okbg:#e8f5e9;--ph:#ecebe7}
@media (prefers-color-scheme:dark){:root{--bg:#151517;--card:#1f1f22;--text:#ececef;--muted:#9a9aa2;--line:#2f2f34;--accent:#7aa7ff;--bad:#ff7b6e;--badbg:#3a1f1d;--ok:#7bd389;--okbg:#1d3322;--ph:#2a2a2e}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:15px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
header.top{padding:1.2rem 1.5rem .6rem}
h1{margin:0;font-size:1.5rem;font-weight:650}
.summary{margin:.2rem 0 .6rem;color:var(--muted)}
nav{display:flex;flex-wrap:wrap;gap:.4rem}
nav a{color:var(--accent);text-decoration:none;border:1px solid var(--line);background:var(--card);border-radius:999px;padding:.15rem .7rem;font-size:.9rem}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,30rem),1fr));gap:1rem;padding:.6rem 1.5rem 1.5rem}
footer{padding:0 1.5rem 2rem}
.empty{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:.9rem 1rem;min-width:0;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card.failed{border-color:var(--bad)}
.head{display:flex;align-items:baseline;gap:.5rem;flex-wrap:wrap}
.head h2{font-size:1rem;margin:0;font-weight:600;overflow-wrap:anywhere;flex:1 1 auto}
.head time{color:var(--muted);font-size:.85rem;font-variant-numeric:tabular-nums}
.badge{font-size:.72rem;font-weight:700;text-transform:uppercase;letter-spacing:.04em;border-radius:6px;padding:.05rem .4rem;background:var(--okbg);color:var(--ok)}
.failed .badge{background:var(--badbg);color:var(--bad)}
.pictures{display:flex;flex-wrap:wrap;gap:.6rem;margin:.7rem 0 .5rem;align-items:flex-start}
figure{margin:0;flex:1 1 9rem;max-width:256px;min-width:0}
figure a{display:block}
figure img{display:block;width:100%;height:auto;max-height:256px;object-fit:contain;border-radius:8px;background:var(--ph)}
figcaption{font-size:.78rem;color:var(--muted);margin-top:.2rem;overflow-wrap:anywhere}
.placeholder{display:flex;align-items:center;justify-content:center;aspect-ratio:1;width:100%;border-radius:8px;background:var(--ph);color:var(--muted);font-size:.85rem;border:1px dashed var(--line)}
figure.missing img{display:none}
figure.missing a::after{content:"missing";display:flex;align-items:center;justify-content:center;aspect-ratio:1;border-radius:8px;background:var(--ph);color:var(--muted)}
.reason{flex:1 1 12rem;margin:0;padding:.6rem .7rem;border-radius:8px;background:var(--badbg);color:var(--bad);overflow-wrap:anywhere;white-space:pre-wrap}
.prompt{margin:.3rem 0;overflow-wrap:anywhere;white-space:pre-wrap}
dl{display:flex;flex-wrap:wrap;gap:.2rem 1rem;margin:.4rem 0 0;font-size:.85rem}
dl div{display:flex;gap:.3rem;min-width:0}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
.files{margin:.5rem 0 0;font-size:.85rem}
.files a{color:var(--accent)}
@media (max-width:520px){header.top{padding:1rem .8rem .4rem}main{padding:.5rem .6rem 1rem;gap:.7rem}footer{padding:0 .8rem 1.5rem}}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entry() -> Entry {
        Entry {
            key: "1-2-3".into(),
            time: "2026-11-25T22:15:03.123+01:00".into(),
            failed: false,
            input: "w/<b>cat</b>.png".into(),
            profile: "w".into(),
            prompt: Some("<script>alert(1)</script>".into()),
            seed: Some(7),
            model: None,
            server: "mini".into(),
            total_ms: 3200,
            outputs: vec![PathBuf::from("w/my cat #1.png")],
            original: Some(PathBuf::from("originals/w/my cat #1.png")),
            error: None,
            original_thumb: Some("1-2-3-o.jpg".into()),
            output_thumbs: vec![Some("1-2-3-1.jpg".into())],
        }
    }

    fn render(entry: &Entry, exists: bool) -> String {
        page(&View {
            title: "drawdrop gallery",
            summary: "1 job".into(),
            entries: vec![entry],
            links: vec![],
            exists: &|_| exists,
        })
    }

    #[test]
    fn everything_from_outside_is_escaped_and_links_are_encoded_and_relative() {
        let html = render(&entry(), true);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script"));
        assert!(html.contains("w/&lt;b&gt;cat&lt;/b&gt;.png"));
        assert!(html.contains("href=\"../w/my%20cat%20%231.png\""));
        assert!(html.contains("src=\"thumbs/1-2-3-1.jpg\""));
        assert!(html.contains("2026-11-25 22:15:03"));
        assert!(!html.contains("http"), "nothing is fetched from anywhere");
    }

    #[test]
    fn a_file_no_longer_there_shows_as_missing() {
        let html = render(&entry(), false);
        assert!(html.contains("class=\"missing\""));
        assert!(!html.contains("<img"));
    }

    #[test]
    fn a_failure_shows_its_reason_and_links_its_file() {
        let mut failed = entry();
        failed.failed = true;
        failed.outputs.clear();
        failed.output_thumbs.clear();
        failed.original = Some(PathBuf::from("failed/bad.png"));
        failed.error = Some("the server answered 500: out of <memory>".into());
        let html = render(&failed, true);
        assert!(
            html.contains("<p class=\"reason\">the server answered 500: out of &lt;memory&gt;</p>")
        );
        assert!(html.contains("href=\"../failed/bad.png\""));
        assert!(html.contains("href=\"../failed/bad.png.error.txt\""));
    }

    #[test]
    fn paths_are_percent_encoded_per_part() {
        assert_eq!(encode_path(Path::new("a b/ü?.png")), "a%20b/%C3%BC%3F.png");
        assert_eq!(escape("a&\"'"), "a&amp;&quot;&#39;");
    }
}
