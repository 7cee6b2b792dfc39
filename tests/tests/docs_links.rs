//! The repository's Markdown stands alone: in `README.md`, `docs/**/*.md`
//! and every other `README.md` (found at run time, outside `target/`, `.git/`
//! and hidden directories), every relative link names a file or directory
//! inside the repository, every `#anchor` (in the same file or in
//! `file.md#anchor`) names a heading or an explicit anchor of its target, and
//! nothing points to `DESIGN.md`, to an absolute path, or out of the
//! repository. `http(s)` links are allowed and listed, never fetched.
//!
//! Links are read the way a renderer reads them: inline links and images
//! (`[text](target)`, `![alt](src)`), reference definitions (`[ref]: target`),
//! autolinks (`<https://…>`) and HTML `href`/`src` attributes, outside fenced
//! code, inline code and HTML comments. Anchors are GitHub's heading slugs
//! (lowercased; everything but letters, digits, `-`, `_` and spaces dropped;
//! spaces become `-`; repeats get `-1`, `-2`, …) plus HTML `id`/`name`
//! attributes. A failure names file, line and link.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The repository root.
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One link as written, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    line: usize,
    target: String,
}

/// What one Markdown file offers and refers to.
#[derive(Debug, Default)]
struct Doc {
    links: Vec<Link>,
    anchors: BTreeSet<String>,
}

/// Blanks inline code spans (a run of N backticks up to the next run of
/// exactly N), keeping the text's length so positions stay put.
fn blank_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let open = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let run = chars[j..].iter().take_while(|c| **c == '`').count();
                if run == open {
                    close = Some(j);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                for c in &mut out[i..end + open] {
                    *c = ' ';
                }
                i = end + open;
            }
            None => i += open,
        }
    }
    out.into_iter().collect()
}

/// The destination of an inline link starting right after its `(`.
fn destination(rest: &str) -> Option<String> {
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        return inner.find('>').map(|end| inner[..end].to_string());
    }
    let mut depth = 0usize;
    for (at, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..at].to_string()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..at].to_string()),
            _ => {}
        }
    }
    None
}

/// The values of `attr="…"` (or `'…'`) in `line`, case-insensitively.
fn attributes(line: &str, attr: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let mut out = Vec::new();
    for (at, _) in lower.match_indices(&format!("{attr}=")) {
        let before = lower[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            continue;
        }
        let rest = &line[at + attr.len() + 1..];
        let Some(quote) = rest.chars().next().filter(|q| *q == '"' || *q == '\'') else {
            continue;
        };
        if let Some(end) = rest[1..].find(quote) {
            out.push(rest[1..1 + end].to_string());
        }
    }
    out
}

/// A heading's text as plain text: code spans keep their content, links
/// and images their text, HTML tags and emphasis markers go.
fn plain(heading: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = heading.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '`' => {
                let open = chars[i..].iter().take_while(|c| **c == '`').count();
                let body: String = chars[i + open..].iter().collect();
                let fence = "`".repeat(open);
                if let Some(end) = body.find(&fence) {
                    out.push_str(body[..end].trim());
                    i += open + body[..end].chars().count() + open;
                } else {
                    i += open;
                }
            }
            '<' => {
                let rest: String = chars[i..].iter().collect();
                i += rest.find('>').map_or(1, |e| rest[..=e].chars().count());
            }
            ']' if chars.get(i + 1) == Some(&'(') => {
                let rest: String = chars[i + 2..].iter().collect();
                i += 2 + rest.find(')').map_or(0, |e| rest[..=e].chars().count());
            }
            '[' | '*' | '!' if c != '!' || chars.get(i + 1) == Some(&'[') => i += 1,
            '_' => {
                let word = |k: Option<&char>| k.is_some_and(|k| k.is_alphanumeric());
                if word(i.checked_sub(1).and_then(|k| chars.get(k))) && word(chars.get(i + 1)) {
                    out.push('_');
                }
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// GitHub's anchor for a heading whose plain text is `text`.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The text of an ATX heading line (`# …` to `###### …`), if it is one.
fn atx_heading(line: &str) -> Option<&str> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let t = &line[indent..];
    let level = t.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let rest = rest.trim();
    // A closing run of `#` preceded by a space is not part of the text.
    let trimmed = rest.trim_end_matches('#');
    Some(if trimmed.is_empty() || trimmed.ends_with(' ') {
        trimmed.trim_end()
    } else {
        rest
    })
}

/// A fence opening or closing line: its character and length.
fn fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start_matches(' ');
    if line.len() - t.len() > 3 {
        return None;
    }
    let c = t.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let n = t.chars().take_while(|x| *x == c).count();
    (n >= 3).then_some((c, n))
}

/// Links and anchors of one Markdown text.
fn parse(text: &str) -> Doc {
    let mut doc = Doc::default();
    let mut slugs: BTreeMap<String, usize> = BTreeMap::new();
    let mut add_heading = |doc: &mut Doc, text: &str| {
        let base = slug(&plain(text));
        let n = slugs.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        doc.anchors.insert(anchor);
    };
    let mut open_fence: Option<(char, usize)> = None;
    let mut in_comment = false;
    let mut previous: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        if let Some((c, n)) = open_fence {
            if fence(raw).is_some_and(|(fc, fnum)| fc == c && fnum >= n)
                && raw.trim().chars().all(|x| x == c)
            {
                open_fence = None;
            }
            previous = None;
            continue;
        }
        if fence(raw).is_some() {
            open_fence = fence(raw);
            previous = None;
            continue;
        }
        // HTML comments, possibly over several lines.
        let mut line = String::new();
        let mut rest = raw;
        loop {
            if in_comment {
                match rest.find("-->") {
                    Some(end) => {
                        rest = &rest[end + 3..];
                        in_comment = false;
                    }
                    None => break,
                }
            } else {
                match rest.find("<!--") {
                    Some(start) => {
                        line.push_str(&rest[..start]);
                        rest = &rest[start + 4..];
                        in_comment = true;
                    }
                    None => {
                        line.push_str(rest);
                        break;
                    }
                }
            }
        }
        if let Some(h) = atx_heading(&line) {
            add_heading(&mut doc, h);
            previous = None;
        } else if !line.trim().is_empty()
            && line.trim().chars().all(|c| c == '=' || c == '-')
            && line.len() - line.trim_start().len() <= 3
        {
            // A setext underline makes the paragraph line above a heading.
            if let Some(p) = previous.take() {
                add_heading(&mut doc, p.trim());
            }
        } else {
            let t = line.trim_start();
            let paragraph = !t.is_empty()
                && !t.starts_with(['|', '-', '*', '+', '>'])
                && !t.starts_with(|c: char| c.is_ascii_digit());
            previous = paragraph.then(|| line.clone());
        }

        let code_free = blank_code_spans(&line);
        for attr in ["id", "name"] {
            if code_free.contains('<') {
                doc.anchors.extend(attributes(&code_free, attr));
            }
        }
        let mut push = |target: String| {
            doc.links.push(Link {
                line: line_no,
                target,
            })
        };
        for (at, _) in code_free.match_indices("](") {
            if let Some(target) = destination(&code_free[at + 2..]) {
                push(target);
            }
        }
        let t = code_free.trim_start();
        if code_free.len() - t.len() <= 3 && t.starts_with('[') {
            if let Some(end) = t.find("]:") {
                if !t[1..end].contains(']') {
                    if let Some(target) = t[end + 2..].split_whitespace().next() {
                        push(target.trim_matches(['<', '>']).to_string());
                    }
                }
            }
        }
        for (at, _) in code_free.match_indices('<') {
            let rest = &code_free[at + 1..];
            if rest.starts_with("http://") || rest.starts_with("https://") {
                if let Some(end) = rest.find('>') {
                    push(rest[..end].to_string());
                }
            }
        }
        if code_free.contains('<') {
            for attr in ["href", "src"] {
                for target in attributes(&code_free, attr) {
                    push(target);
                }
            }
        }
    }
    doc
}

/// Lexically resolves `rel` against `dir`; `None` when it climbs above the
/// filesystem root.
fn resolve(dir: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in dir.join(rel).components() {
        match comp {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// `%XX` escapes decoded (as a renderer does before looking a file up).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Markdown files this test reads: `README.md`, `docs/**/*.md` and every
/// `README.md` below the root, skipping `target/`, `.git/` and hidden
/// directories.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, in_docs: bool, root: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name.starts_with('.') || name == "target" || name == "node_modules" {
                    continue;
                }
                let docs = in_docs || (dir == root && name == "docs");
                walk(&path, docs, root, out);
            } else if name == "README.md" || (in_docs && name.ends_with(".md")) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, false, root, &mut out);
    out.sort();
    out
}

/// What is wrong with `link` in `file`, if anything; `Ok(true)` for an
/// external link (listed, not fetched).
fn check(
    root: &Path,
    file: &Path,
    link: &str,
    anchors_of: &mut dyn FnMut(&Path) -> BTreeSet<String>,
) -> Result<bool, String> {
    if link.is_empty() {
        return Err("empty link".into());
    }
    let lower = link.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(true);
    }
    if lower.starts_with("mailto:") {
        return Ok(false);
    }
    let scheme = link
        .find(':')
        .filter(|c| link[..*c].chars().all(|x| x.is_ascii_alphanumeric()) && *c > 0);
    if scheme.is_some() {
        return Err("neither a repository path nor http(s)".into());
    }
    let (path, anchor) = match link.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (link, None),
    };
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with('/') {
        return Err("an absolute path: write it relative to this file".into());
    }
    if path.contains("DESIGN.md") {
        return Err("DESIGN.md is not part of the repository's documentation".into());
    }
    let target = if path.is_empty() {
        file.to_path_buf()
    } else {
        let dir = file.parent().expect("a file's directory");
        match resolve(dir, &percent_decode(path)) {
            Some(t) if t.starts_with(root) => t,
            _ => return Err("leads out of the repository".into()),
        }
    };
    if !target.exists() {
        return Err(format!(
            "names {}, which does not exist",
            target.strip_prefix(root).unwrap_or(&target).display()
        ));
    }
    if let Some(anchor) = anchor {
        let is_md = target.extension().is_some_and(|x| x == "md");
        if is_md {
            let known = anchors_of(&target);
            if !known.contains(&percent_decode(anchor)) {
                return Err(format!("no heading or anchor `#{anchor}` there"));
            }
        } else {
            // GitHub's line anchors: `#L12` or `#L12-L20`.
            let line_anchor = anchor.split('-').all(|part| {
                part.strip_prefix('L')
                    .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            });
            if !(target.is_file() && line_anchor) {
                return Err(format!(
                    "`#{anchor}` into a file that is not Markdown (only #L<line> works there)"
                ));
            }
        }
    }
    Ok(false)
}

#[test]
fn every_link_in_the_repositorys_markdown_resolves_inside_it() {
    let root = Path::new(REPO).canonicalize().expect("repo root");
    let files = markdown_files(&root);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    for must in ["README.md", "docs/architecture.md", "docs/failure-modes.md"] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} not among {names:?}"
        );
    }

    let mut cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut anchors_of = |p: &Path| {
        cache
            .entry(p.to_path_buf())
            .or_insert_with(|| parse(&std::fs::read_to_string(p).unwrap_or_default()).anchors)
            .clone()
    };
    let mut broken = Vec::new();
    let mut external = BTreeSet::new();
    let mut checked = 0;
    for (file, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(file).expect("read markdown");
        // The docs stand alone: not even a mention of a file users do not have.
        for outside in ["../shared", "DESIGN.md"] {
            if let Some(line) = text.lines().position(|l| l.contains(outside)) {
                broken.push(format!("{name}:{}: mentions {outside:?}", line + 1));
            }
        }
        for link in parse(&text).links {
            checked += 1;
            match check(&root, file, &link.target, &mut anchors_of) {
                Ok(true) => {
                    external.insert(link.target.clone());
                }
                Ok(false) => {}
                Err(why) => broken.push(format!("{name}:{}: ({}) {why}", link.line, link.target)),
            }
        }
    }
    println!("external links (not fetched):");
    for e in &external {
        println!("  {e}");
    }
    assert!(checked > 20, "only {checked} links found in {names:?}");
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn links_are_read_outside_code_and_comments_with_their_lines() {
    let text = "# Title\n\
                See [a](docs/a.md) and ![img](pic.png \"t\") and `[no](code.md)`.\n\
                <!-- [hidden](x.md) -->\n\
                ```sh\n\
                [fenced](f.md)\n\
                ```\n\
                [ref]: ../other.md#part\n\
                <a href=\"h.md\">h</a> <https://example.com/x> [p](a_(b).md)\n\
                ~~~~\n\
                ``` not closing\n\
                ~~~~\n\
                [after](after.md)\n";
    let links: Vec<(usize, String)> = parse(text)
        .links
        .into_iter()
        .map(|l| (l.line, l.target))
        .collect();
    let want: Vec<(usize, String)> = [
        (2, "docs/a.md"),
        (2, "pic.png"),
        (7, "../other.md#part"),
        (8, "a_(b).md"),
        (8, "https://example.com/x"),
        (8, "h.md"),
        (12, "after.md"),
    ]
    .iter()
    .map(|(l, t)| (*l, t.to_string()))
    .collect();
    assert_eq!(links, want);
}

#[test]
fn anchors_are_githubs_heading_slugs() {
    let text = "# Rhizome\n\
                ## Quick start: two commands\n\
                ### `rhizome_requests_total` and _emphasis_\n\
                ## G2: a 401 storm costs one refresh\n\
                ## S2–S5: resumable SSE streams\n\
                ## Configuration: what this build refuses\n\
                ### Shared state (Redis) and `redis-lock`\n\
                ## Rhizome\n\
                ## [Linked](x.md) heading ##\n\
                Setext heading\n\
                --------------\n\
                <a id=\"custom\"></a>\n\
                ```\n\
                # not a heading\n\
                ```\n";
    let anchors = parse(text).anchors;
    for want in [
        "rhizome",
        "quick-start-two-commands",
        "rhizome_requests_total-and-emphasis",
        "g2-a-401-storm-costs-one-refresh",
        "s2s5-resumable-sse-streams",
        "configuration-what-this-build-refuses",
        "shared-state-redis-and-redis-lock",
        "rhizome-1",
        "linked-heading",
        "setext-heading",
        "custom",
    ] {
        assert!(anchors.contains(want), "{want} not in {anchors:?}");
    }
    assert!(!anchors.contains("not-a-heading"));
}

#[test]
fn links_out_of_the_repository_or_to_missing_targets_are_refused() {
    let root = Path::new(REPO).canonicalize().expect("repo root");
    let file = root.join("docs/architecture.md");
    let mut anchors_of = |p: &Path| parse(&std::fs::read_to_string(p).unwrap_or_default()).anchors;
    let mut verdict = |link: &str| check(&root, &file, link, &mut anchors_of);
    assert_eq!(verdict("https://example.com"), Ok(true));
    assert_eq!(verdict("../README.md#metrics"), Ok(false));
    assert_eq!(verdict("failure-modes.md"), Ok(false));
    assert_eq!(verdict("../node/src"), Ok(false));
    for bad in [
        "../../shared/notes.md",
        "../DESIGN.md",
        "/README.md",
        "missing.md",
        "../README.md#no-such-heading",
        "#no-such-heading",
        "file:///etc/passwd",
        "../Cargo.toml#dependencies",
    ] {
        assert!(verdict(bad).is_err(), "{bad} accepted");
    }
}
