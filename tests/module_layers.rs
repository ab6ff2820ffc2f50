//! The module map of `docs/architecture.md` is the one the code has: every top-level module
//! of `src/` is listed in its layer table, none imports (`crate::x`, `super::`) a module of
//! a higher row or of its own row, and no two modules (top-level, or second-level inside one
//! top-level module) import each other. Test code (`#[cfg(test)]` items and the files they
//! declare) may use any layer: an end-to-end check of a low layer needs the high ones.
//!
//! The layer list is read from the document, so the two cannot drift.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The rows of the layer table, bottom-up: each row is a set of top-level module names.
fn layers_from_doc(doc: &str) -> Vec<Vec<String>> {
    let begin = doc
        .find("<!-- layers:begin -->")
        .expect("docs/architecture.md has a <!-- layers:begin --> marker");
    let end = doc
        .find("<!-- layers:end -->")
        .expect("docs/architecture.md has a <!-- layers:end --> marker");
    let mut rows = Vec::new();
    for line in doc[begin..end].lines() {
        // `| 3 | `tree` | what |`: the modules are the backquoted words of the 2nd column.
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 4 || cols[1].parse::<u32>().is_err() {
            continue;
        }
        let modules: Vec<String> = cols[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        assert!(!modules.is_empty(), "layer row without modules: {line}");
        rows.push(modules);
    }
    rows
}

/// Source text with comments, string and char literals blanked (so braces and `crate::` in
/// them are not seen), lengths kept.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && (i == 0 || !is_ident(b[i - 1]))
            && b[i + 1..].iter().take_while(|&&c| c == b'#').count() + i + 1 < b.len()
            && b[i + 1 + b[i + 1..].iter().take_while(|&&c| c == b'#').count()] == b'"'
        {
            // Raw string r#"..."#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let start = i + 2 + hashes;
            let len = b[start..]
                .windows(close.len())
                .position(|w| w == close)
                .map_or(b.len() - start, |p| p + close.len());
            out.resize(out.len() + (start - i) + len, b' ');
            i = start + len;
        } else if b[i] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let n = if b[i] == b'\\' { 2 } else { 1 };
                out.resize(out.len() + n, b' ');
                i += n;
            }
            out.push(b' ');
            i += 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former closes.
            let lit = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(3)
            } else {
                None
            };
            let n = lit.unwrap_or(1);
            out.resize(out.len() + n, b' ');
            i += n;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 boundaries of ASCII source")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_at(b: &[u8], i: usize) -> &str {
    let len = b[i..].iter().take_while(|&&c| is_ident(c)).count();
    std::str::from_utf8(&b[i..i + len]).unwrap()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End of the balanced `{...}` starting at `open`.
fn block_end(b: &[u8], open: usize) -> usize {
    let mut depth = 0;
    for (k, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// Removes `#[cfg(test)]` items (a `mod x { .. }`, a `use ..;`, a `fn`); returns the names of
/// the test-only modules declared as files (`#[cfg(test)] mod x;`).
fn drop_test_items(src: &str) -> (String, Vec<String>) {
    let mut b = src.as_bytes().to_vec();
    let mut test_mods = Vec::new();
    let mut from = 0;
    while let Some(p) = find(&b, b"#[cfg(test)]", from) {
        let mut i = p + b"#[cfg(test)]".len();
        // Further attributes of the same item.
        loop {
            i = skip_ws(&b, i);
            if b[i..].starts_with(b"#[") {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(b.len(), |q| i + q + 1);
            } else {
                break;
            }
        }
        let item_start = i;
        let semi = b[i..].iter().position(|&c| c == b';').map(|q| i + q);
        let brace = b[i..].iter().position(|&c| c == b'{').map(|q| i + q);
        let end = match (semi, brace) {
            (Some(s), Some(br)) if s < br => s + 1,
            (Some(s), None) => s + 1,
            (_, Some(br)) => block_end(&b, br),
            (None, None) => b.len(),
        };
        let item = String::from_utf8_lossy(&b[item_start..end]).to_string();
        let words: Vec<&str> = item
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if item.trim_end().ends_with(';') && words.first() == Some(&"mod") {
            test_mods.push(words[1].to_string());
        }
        for c in &mut b[p..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    (String::from_utf8(b).unwrap(), test_mods)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Absolute module paths (`crate::` resolved, `super::` resolved against `here`) referred to
/// by `src`, each cut to at most two components.
fn references(src: &str, here: &[String]) -> BTreeSet<Vec<String>> {
    let b = src.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let word = ident_at(b, i);
        let mut j = i + word.len();
        let mut base: Vec<String> = match word {
            "crate" => Vec::new(),
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            _ => {
                i = j;
                continue;
            }
        };
        // Further `::super`.
        loop {
            let k = skip_ws(b, j);
            if b[k..].starts_with(b"::") {
                let m = skip_ws(b, k + 2);
                if ident_at(b, m) == "super" {
                    base.pop();
                    j = m + 5;
                    continue;
                }
            }
            break;
        }
        let k = skip_ws(b, j);
        if !b[k..].starts_with(b"::") {
            i = j;
            continue;
        }
        let m = skip_ws(b, k + 2);
        let mut heads = Vec::new();
        if b.get(m) == Some(&b'{') {
            let end = block_end(b, m);
            let mut depth = 0;
            let mut at_item = true;
            for n in m + 1..end - 1 {
                match b[n] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 0 => at_item = true,
                    c if at_item && is_ident(c) => {
                        heads.push(ident_at(b, n).to_string());
                        at_item = false;
                    }
                    _ => {}
                }
            }
        } else if b.get(m).is_some_and(|&c| is_ident(c)) {
            heads.push(ident_at(b, m).to_string());
        }
        for h in heads {
            if h == "self" || h.is_empty() {
                if !base.is_empty() {
                    out.insert(base.iter().take(2).cloned().collect());
                }
                continue;
            }
            let mut p = base.clone();
            p.push(h);
            p.truncate(2);
            out.insert(p);
        }
        i = j;
    }
    out
}

/// Module path of a file below `src/` (`oci/layer/mod.rs` -> `oci::layer`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Edges `from -> to` between modules (top-level when `depth` is 1, second-level inside one
/// top-level module when 2), each with a file that makes it.
fn edges(src_dir: &Path, depth: usize) -> BTreeMap<(Vec<String>, Vec<String>), PathBuf> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut test_only: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut parsed = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src_dir).unwrap();
        if rel.starts_with("bin") || rel == Path::new("lib.rs") {
            continue;
        }
        let here = module_path(rel);
        let (code, tests) = drop_test_items(&strip(&fs::read_to_string(f).unwrap()));
        for t in tests {
            let mut p = here.clone();
            p.push(t);
            test_only.insert(p);
        }
        parsed.push((f.clone(), here, code));
    }
    let mut out = BTreeMap::new();
    for (f, here, code) in parsed {
        if test_only.iter().any(|t| here.starts_with(t)) {
            continue;
        }
        for r in references(&code, &here) {
            if r.len() < depth || here.len() < depth || r[0] != here[0] && depth == 2 {
                continue;
            }
            let (a, b) = (here[..depth].to_vec(), r[..depth].to_vec());
            if a != b {
                out.entry((a, b)).or_insert_with(|| f.clone());
            }
        }
    }
    out
}

/// Second-level loops the document admits to (`<!-- known-loops:begin -->` list items:
/// `` `a::b` and `a::c` ``), each as a sorted pair.
fn known_loops(doc: &str) -> BTreeSet<(String, String)> {
    let (Some(begin), Some(end)) = (
        doc.find("<!-- known-loops:begin -->"),
        doc.find("<!-- known-loops:end -->"),
    ) else {
        return BTreeSet::new();
    };
    doc[begin..end]
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| {
            let names: Vec<&str> = l.split('`').skip(1).step_by(2).collect();
            assert!(names.len() >= 2, "known loop without two modules: {l}");
            let (a, b) = (names[0].to_string(), names[1].to_string());
            if a < b { (a, b) } else { (b, a) }
        })
        .collect()
}

fn check(src_dir: &Path, doc: &str) -> Vec<String> {
    let layers = layers_from_doc(doc);
    let known = known_loops(doc);
    let mut seen_known = BTreeSet::new();
    let mut row_of = BTreeMap::new();
    for (row, modules) in layers.iter().enumerate() {
        for m in modules {
            assert!(
                row_of.insert(m.clone(), row).is_none(),
                "{m} listed twice in the layer table"
            );
        }
    }
    let mut problems = Vec::new();
    let mut top: BTreeSet<String> = BTreeSet::new();
    for e in fs::read_dir(src_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        let name = name.trim_end_matches(".rs").to_string();
        if name != "lib" && name != "bin" {
            top.insert(name);
        }
    }
    for m in &top {
        if !row_of.contains_key(m) {
            problems.push(format!(
                "src/{m} is not in the layer table of docs/architecture.md"
            ));
        }
    }
    for m in row_of.keys() {
        if !top.contains(m) {
            problems.push(format!(
                "docs/architecture.md lists `{m}`, which src/ does not have"
            ));
        }
    }
    let top_edges = edges(src_dir, 1);
    for ((a, b), file) in &top_edges {
        let (Some(ra), Some(rb)) = (row_of.get(&a[0]), row_of.get(&b[0])) else {
            continue;
        };
        if rb >= ra {
            let how = if rb == ra {
                "its own row"
            } else {
                "a higher row"
            };
            problems.push(format!(
                "{} imports {}, which is in {how} of docs/architecture.md ({})",
                a[0],
                b[0],
                file.display()
            ));
        }
    }
    for depth in [1, 2] {
        let e = edges(src_dir, depth);
        for ((a, b), file) in &e {
            if a < b
                && let Some(back) = e.get(&(b.clone(), a.clone()))
            {
                let pair = (a.join("::"), b.join("::"));
                if known.contains(&pair) {
                    seen_known.insert(pair);
                    continue;
                }
                problems.push(format!(
                    "{} and {} import each other ({} and {})",
                    a.join("::"),
                    b.join("::"),
                    file.display(),
                    back.display()
                ));
            }
        }
    }
    for (a, b) in known.difference(&seen_known) {
        problems.push(format!(
            "{a} and {b} no longer import each other: remove them from the known loops of \
             docs/architecture.md"
        ));
    }
    problems
}

#[test]
fn modules_import_only_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let problems = check(&root.join("src"), &doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself finds an upward import, a mutual import and an unlisted module, and
/// ignores test code and comments.
#[test]
fn the_checker_sees_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("low")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod low; pub mod high;").unwrap();
    fs::write(
        src.join("low/mod.rs"),
        "//! Uses crate::high in a comment only.\nmod a;\nmod b;\n\
         #[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline { use crate::high::X; }\n\
         const S: &str = \"crate::high\";\n",
    )
    .unwrap();
    fs::write(src.join("low/tests.rs"), "use crate::high::Y;\n").unwrap();
    fs::write(src.join("low/a.rs"), "use super::b::B;\n").unwrap();
    fs::write(src.join("low/b.rs"), "pub struct B; use super::a;\n").unwrap();
    fs::write(src.join("high.rs"), "use crate::{low::{self, a}, other};\n").unwrap();
    fs::write(src.join("other.rs"), "fn f() -> u8 { crate::high::f() }\n").unwrap();
    let doc = "<!-- layers:begin -->\n| row | modules | what |\n|---|---|---|\n\
               | 1 | `low` | x |\n| 2 | `high` | y |\n<!-- layers:end -->\n";
    let problems = check(&src, doc);
    let all = problems.join("\n");
    assert!(all.contains("src/other is not in the layer table"), "{all}");
    assert!(all.contains("low::a and low::b import each other"), "{all}");
    assert!(all.contains("high and other import each other"), "{all}");
    assert!(!all.contains("low imports"), "{all}");
    fs::write(src.join("low/a.rs"), "use crate::high::H;\n").unwrap();
    let all = check(&src, doc).join("\n");
    assert!(
        all.contains("low imports high, which is in a higher row"),
        "{all}"
    );
}
