//! Guards the layering of the crate's top-level modules: they must form a DAG.
//!
//! The intended layering is, bottom to top: leaves such as `labels`, `net`, `geo`, `tls` and
//! `lb`; then `admission`, `stats` and `config`; then `proxy`, `runtime` and `control`; then
//! `admin`, `reload`, `top`, `cli`, `demo`, `surge` and `app` on top. This test enforces only
//! acyclicity, not that particular order: a module may use any other as long as no chain of
//! uses leads back to it.
//!
//! Every `.rs` file under `src/` is read, test code left out (`tests.rs`, `test_support.rs`,
//! `*_tests.rs` and every `#[cfg(test)]` item), comments and literals stripped, and each
//! `crate::b` path (or `super::` chain reaching the crate root) in a file of module `a` is an
//! edge `a -> b`. Every strongly connected component is reported as cycles, each edge with
//! one file that makes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

/// Module graph: each module to the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Each edge `(from, to)` between top-level modules with the files that make it.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

/// Whether `c` can be part of an identifier (or a number).
fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Tokens of Rust source: identifiers, `::`, and other characters one by one. Comments are
/// dropped and each string or char literal (raw ones too) becomes the token `""`.
fn tokenize(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let at = |j: usize| c.get(j).copied().unwrap_or(' ');
    // Index just past the first `pat` at or after `from`.
    let past = |from: usize, pat: &[char]| {
        let found = (from..c.len()).find(|&j| c[j..].starts_with(pat));
        found.map_or(c.len(), |j| j + pat.len())
    };
    let (mut toks, mut i) = (Vec::new(), 0);
    while i < c.len() {
        let end = match (c[i], at(i + 1)) {
            ('/', '/') => past(i, &['\n']),
            ('/', '*') => {
                let (mut j, mut nested) = (i, 0);
                while j < c.len() {
                    let pair = (c[j], at(j + 1));
                    nested += (pair == ('/', '*')) as i32 - (pair == ('*', '/')) as i32;
                    j += 1 + matches!(pair, ('/', '*') | ('*', '/')) as usize;
                    if nested == 0 {
                        break;
                    }
                }
                j
            }
            ('"', _) => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += 1 + (c[j] == '\\') as usize;
                }
                j + 1
            }
            // A char literal, not a lifetime or label such as `'a`.
            ('\'', n) if n == '\\' || at(i + 2) == '\'' => {
                past(i + 2 + (n == '\\') as usize, &['\''])
            }
            (x, _) if is_ident(x) => {
                let end = (i..c.len()).find(|&j| !is_ident(c[j])).unwrap_or(c.len());
                let hashes = c[end..].iter().take_while(|&&x| x == '#').count();
                let word: String = c[i..end].iter().collect();
                if ["r", "br", "cr"].contains(&word.as_str()) && at(end + hashes) == '"' {
                    let close: Vec<char> = std::iter::once('"').chain(vec!['#'; hashes]).collect();
                    past(end + hashes + 1, &close)
                } else {
                    end
                }
            }
            (':', ':') => i + 2,
            _ => i + 1,
        };
        let text: String = c[i..end.min(c.len())].iter().collect();
        i = end;
        if text.starts_with('\'') || text.contains('"') {
            toks.push("\"\"".to_string());
        } else if !(text.starts_with("//") || text.starts_with("/*") || text.trim().is_empty()) {
            toks.push(text);
        }
    }
    toks
}

/// Token `i`, or `""` past the end.
fn tok<'a>(t: &[&'a str], i: usize) -> &'a str {
    t.get(i).copied().unwrap_or("")
}

/// Index just past the bracketed group opening at `open`.
fn skip_group(t: &[&str], open: usize) -> usize {
    let mut depth = 0;
    for (i, w) in t.iter().enumerate().skip(open) {
        depth += matches!(*w, "(" | "[" | "{") as i32 - matches!(*w, ")" | "]" | "}") as i32;
        if depth == 0 {
            return i + 1;
        }
    }
    t.len()
}

/// Index just past the item, field, variant, arm or statement starting at `start`: it ends
/// at a `;` or closing `}` at its own level, a `,` too unless it is an item (`fn`, `use`,
/// ...), and just before a closing bracket of the enclosing level.
fn item_end(t: &[&str], start: usize) -> usize {
    let items = "fn impl mod struct enum trait union use static const type let macro_rules";
    let mut k = start;
    if tok(t, k) == "pub" && tok(t, k + 1) == "(" {
        k = skip_group(t, k + 1);
    }
    let mut head = t[k..]
        .iter()
        .take_while(|w| !matches!(**w, "," | ";" | "{" | "(" | ":" | "="));
    let item = head.any(|w| items.split(' ').any(|k| k == *w));
    let mut depth = 0;
    for i in start..t.len() {
        match t[i] {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth == 0 => return i,
            "}" if depth == 1 && tok(t, i + 1) == ";" => return i + 2,
            "}" if depth == 1 && tok(t, i + 1) != "else" => return i + 1,
            ")" | "]" | "}" => depth -= 1,
            ";" if depth == 0 => return i + 1,
            "," if depth == 0 && !item => return i + 1,
            _ => {}
        }
    }
    t.len()
}

/// What a file of a module `depth` deep (`a::b` is 2) uses at the crate root (`crate::x`,
/// or a `super::` chain reaching the root), outside `#[cfg(test)]` items; and the names of
/// its `#[cfg(test)] mod NAME;` declarations, whose files are test code.
fn scan_source(src: &str, depth: usize) -> (BTreeSet<String>, Vec<String>) {
    let toks = tokenize(src);
    let t: Vec<&str> = toks.iter().map(String::as_str).collect();
    let cfg_test = ["#", "[", "cfg", "(", "test", ")", "]"];
    let (mut kept, mut test_mods, mut i) = (Vec::new(), Vec::new(), 0);
    if t.starts_with(&["#", "!"]) && t[2..].starts_with(&cfg_test[1..]) {
        return (BTreeSet::new(), test_mods); // `#![cfg(test)]`: all of it is test code.
    }
    while i < t.len() {
        if !t[i..].starts_with(&cfg_test) {
            kept.push(t[i]);
            i += 1;
            continue;
        }
        let mut j = i + cfg_test.len();
        while tok(&t, j) == "#" && tok(&t, j + 1) == "[" {
            j = skip_group(&t, j + 1);
        }
        i = item_end(&t, j);
        if matches!(t[j..i], [.., "mod", _, ";"]) {
            test_mods.push(t[i - 2].to_string());
        }
    }
    let mut refs = BTreeSet::new();
    for i in 0..kept.len() {
        let ups = kept[i..]
            .chunks(2)
            .take_while(|p| *p == ["super", "::"])
            .count();
        let root = if kept[i] == "crate" && tok(&kept, i + 1) == "::" {
            i + 2
        } else if ups > 0 && ups == depth && tok(&kept, i.wrapping_sub(1)) != "::" {
            i + 2 * ups
        } else {
            continue;
        };
        refs.extend(path_heads(&kept, root));
    }
    (refs, test_mods)
}

/// First names of the path(s) at `t[i]`: `x` for `x::..`, `a` and `b` for `{a::{..}, b}`.
fn path_heads(t: &[&str], i: usize) -> Vec<String> {
    if tok(t, i) != "{" {
        return vec![tok(t, i).to_string()];
    }
    let (mut heads, mut depth, mut expect) = (Vec::new(), 0, false);
    for w in &t[i..] {
        match *w {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => depth -= 1,
            name if depth == 1 && expect => heads.push(name.to_string()),
            _ => {}
        }
        if depth == 0 {
            break;
        }
        expect = depth == 1 && (*w == "{" || *w == ",");
    }
    heads
}

/// Non-test `.rs` files under `dir` (not `tests.rs`, `test_support.rs`, `*_tests.rs`), as
/// components of their paths relative to `root`, sorted.
fn rust_files(root: &Path, dir: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        let test = name == "tests.rs" || name == "test_support.rs" || name.ends_with("_tests.rs");
        if path.is_dir() {
            files.extend(rust_files(root, &path));
        } else if name.ends_with(".rs") && !test {
            let rel = path.strip_prefix(root).unwrap().iter();
            files.push(rel.map(|c| c.to_string_lossy().into_owned()).collect());
        }
    }
    files.sort();
    files
}

/// Edges between the top-level modules under `src` (`src/NAME.rs` or `src/NAME/mod.rs`).
fn module_edges(src: &Path) -> Edges {
    let files = rust_files(src, src);
    let modules: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| match &f[..] {
            [name] if name != "lib.rs" && name != "main.rs" => name.strip_suffix(".rs"),
            [dir, name] if name == "mod.rs" => Some(dir.as_str()),
            _ => None,
        })
        .collect();
    let (mut scanned, mut test_mods) = (Vec::new(), Vec::new());
    for rel in files
        .iter()
        .filter(|f| modules.contains(f[0].trim_end_matches(".rs")))
    {
        // `a/b.rs` and `a/b/mod.rs` are module `a::b`.
        let mut module = rel.clone();
        let last = module.pop().unwrap().trim_end_matches(".rs").to_string();
        module.extend((last != "mod").then_some(last));
        let text = fs::read_to_string(src.join(rel.join("/"))).unwrap();
        let (refs, tests) = scan_source(&text, module.len());
        test_mods.extend(tests.into_iter().map(|t| [&module[..], &[t]].concat()));
        scanned.push((format!("src/{}", rel.join("/")), module, refs));
    }
    let mut edges = Edges::new();
    for (file, module, refs) in scanned {
        if test_mods.iter().any(|t| module.starts_with(t)) {
            continue; // The file of a `#[cfg(test)] mod NAME;`.
        }
        for to in refs.into_iter().filter(|r| modules.contains(r.as_str())) {
            if to != module[0] {
                let files = edges.entry((module[0].clone(), to)).or_default();
                files.insert(file.clone());
            }
        }
    }
    edges
}

/// Tarjan's algorithm: visits `v` and all it reaches, pushing each finished strongly
/// connected component onto `sccs`.
fn tarjan<'g>(
    graph: &'g Graph,
    v: &'g str,
    index: &mut BTreeMap<&'g str, (usize, usize)>,
    stack: &mut Vec<&'g str>,
    sccs: &mut Vec<Vec<String>>,
) {
    let n = index.len();
    index.insert(v, (n, n));
    stack.push(v);
    for w in graph.get(v).into_iter().flatten().map(String::as_str) {
        let reach = match index.get(w) {
            None => {
                tarjan(graph, w, index, stack, sccs);
                index[w].1
            }
            Some(&(i, _)) if stack.contains(&w) => i,
            Some(_) => continue,
        };
        let entry = index.get_mut(v).unwrap();
        entry.1 = entry.1.min(reach);
    }
    if index[v].0 == index[v].1 {
        let at = stack.iter().rposition(|&w| w == v).unwrap();
        let mut scc: Vec<String> = stack.drain(at..).map(String::from).collect();
        scc.sort();
        sccs.push(scc);
    }
}

/// Strongly connected components of more than one module, each sorted.
fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let (mut index, mut stack, mut sccs) = (BTreeMap::new(), Vec::new(), Vec::new());
    for v in graph.keys() {
        if !index.contains_key(v.as_str()) {
            tarjan(graph, v, &mut index, &mut stack, &mut sccs);
        }
    }
    sccs.retain(|scc| scc.len() > 1);
    sccs.sort();
    sccs
}

/// Shortest path `from` ..= `to` through `members` only (breadth-first).
fn shortest_path(graph: &Graph, members: &[String], from: &str, to: &str) -> Vec<String> {
    let (mut prev, mut queue) = (BTreeMap::new(), VecDeque::from([from]));
    while let Some(u) = queue.pop_front() {
        for v in graph[u].iter().filter(|v| members.contains(v)) {
            if v != from && !prev.contains_key(v.as_str()) {
                prev.insert(v.as_str(), u);
                queue.push_back(v);
            }
        }
    }
    let mut path = vec![to];
    while path[path.len() - 1] != from {
        path.push(prev[path[path.len() - 1]]);
    }
    path.iter().rev().map(|m| m.to_string()).collect()
}

/// Cycles `[a, b, .., a]` inside one component, until each of its edges is on one.
fn cycles_in(graph: &Graph, scc: &[String]) -> Vec<Vec<String>> {
    let (mut cycles, mut covered) = (Vec::new(), BTreeSet::new());
    for u in scc {
        for v in graph[u].iter().filter(|v| scc.contains(v)) {
            if covered.insert((u.clone(), v.clone())) {
                let cycle = [vec![u.clone()], shortest_path(graph, scc, v, u)].concat();
                covered.extend(cycle.windows(2).map(|w| (w[0].clone(), w[1].clone())));
                cycles.push(cycle);
            }
        }
    }
    cycles
}

/// The cycles among `edges`, each edge with one file that makes it; empty for a DAG.
fn cycle_report(edges: &Edges) -> String {
    let mut graph = Graph::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    let mut report = String::new();
    for scc in find_cycles(&graph) {
        report += &format!("strongly connected: {}\n", scc.join(", "));
        for cycle in cycles_in(&graph, &scc) {
            report += &format!("module cycle: {}\n", cycle.join(" -> "));
            for w in cycle.windows(2) {
                let files = &edges[&(w[0].clone(), w[1].clone())];
                let more = match files.len() {
                    1 => String::new(),
                    n => format!(" (+{} more)", n - 1),
                };
                let file = files.first().unwrap();
                report += &format!("    {file} uses crate::{}{more}\n", w[1]);
            }
        }
    }
    report
}

#[test]
fn top_level_modules_form_a_dag() {
    let edges = module_edges(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
    for ((from, to), files) in &edges {
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        eprintln!("{from} -> {to} ({})", files.join(", "));
    }
    let report = cycle_report(&edges);
    assert!(
        report.is_empty(),
        "top-level modules must form a DAG:\n{report}"
    );
}

/// Edges `(from, to)` as [`Edges`], each made by a file `src/FROM.rs`.
fn edges_of(pairs: &[(&str, &str)]) -> Edges {
    let file = |from: &str| BTreeSet::from([format!("src/{from}.rs")]);
    pairs
        .iter()
        .map(|&(a, b)| ((a.into(), b.into()), file(a)))
        .collect()
}

#[test]
fn cycle_finder_reports_a_back_edge_and_passes_a_dag() {
    let cyclic = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d")];
    let report = cycle_report(&edges_of(&cyclic));
    let want = "module cycle: a -> b -> c -> a\n    src/a.rs uses crate::b\n";
    assert!(
        report.starts_with(&format!("strongly connected: a, b, c\n{want}")),
        "{report}"
    );
    assert!(report.ends_with("src/c.rs uses crate::a\n"), "{report}");
    let two = [("x", "y"), ("y", "x"), ("p", "q"), ("q", "p"), ("x", "p")];
    let report = cycle_report(&edges_of(&two));
    assert_eq!(report.matches("strongly connected").count(), 2, "{report}");
    let dag = [("a", "b"), ("b", "c"), ("a", "c"), ("a", "d"), ("d", "c")];
    assert_eq!(cycle_report(&edges_of(&dag)), "");
}

#[test]
fn scanner_sees_only_real_non_test_references() {
    let src = r##"
        //! Module docs name crate::u.
        /// See crate::y. /* block crate::t /* nested crate::t */ */
        use crate::{w::A, v};
        fn f<'a>(s: &'a str) -> char { let _ = ("crate::z", r#"crate::"z"#, b'{'); '{' }
        #[cfg(test)]
        #[allow(clippy::unwrap_used)]
        mod tests { use crate::x; fn g() { let _ = '}'; } }
        #[cfg(test)]
        pub(crate) mod more_tests;
    "##;
    let (refs, test_mods) = scan_source(src, 1);
    assert_eq!(refs, BTreeSet::from(["v".into(), "w".into()]));
    assert_eq!(test_mods, ["more_tests"]);
    let (refs, _) = scan_source("use super::super::u::X; use super::{t, super::s};", 2);
    assert_eq!(refs, BTreeSet::from(["u".into()]));
}
