//! The layers of the crate, and the test that keeps them: a top-level
//! module may use (`crate::x`, or `super::` out of its own folder) only
//! modules of a lower layer. Siblings in one layer do not know each other,
//! so the graph of top-level modules cannot have a cycle.
//!
//! Adding a module: give it the lowest layer above everything it uses.
//! Needing a module of the same or a higher layer is the sign that the
//! thing needed lives in the wrong place (move it down), or that the
//! dependency should point the other way (define the type in the lower
//! module, as `plugins::Command` is defined where the loader sends it).

/// Lowest first. Each line: the layer's modules, and what they are.
pub const LAYERS: &[&[&str]] = &[
    // Leaf utilities and pure protocol code: no `crate::` at all.
    // text: quoting untrusted text; clock: Unix time; fsutil: atomic
    // writes, bounded reads; ratelimit: token buckets and refusals;
    // contract: the WIT bindings; drivers: DHT22/BME680/WS2812 protocols.
    &[
        "text",
        "clock",
        "fsutil",
        "ratelimit",
        "contract",
        "drivers",
    ],
    // Data and devices. config: host.toml, pure data and validation;
    // hardware: the hardware thread and its backends; readings: the one
    // reading model.
    &["config", "hardware", "readings"],
    // What needs only the above. budget: config vs cgroup limits; failure:
    // naming a failed call; scaffold: `new`'s templates; control: external
    // control requests and their limit.
    &["budget", "failure", "scaffold", "control"],
    // The interfaces a plugin is granted and the Store data.
    &["capabilities"],
    // wasmtime: engine, cache, instances, the shared Python runtime.
    &["runtime"],
    // A loaded plugin, its checks, the loader (hot reload).
    &["plugins"],
    // The fixed-rate loop that owns the plugins.
    &["scheduler"],
    // Publishing to a broker.
    &["mqtt"],
    // The HTTP server, dashboard and API.
    &["http"],
    // Wiring: starts the threads in order, stops them in reverse.
    &["app"],
    // The command line, one file per subcommand.
    &["cli"],
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::LAYERS;

    /// A use of another top-level module: where, and which.
    #[derive(Debug, Clone)]
    struct Use {
        file: PathBuf,
        line: usize,
        target: String,
    }

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    fn src_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The top-level module a file belongs to, and how deep the file's own
    /// module is (`src/a.rs` and `src/a/mod.rs`: 1, `src/a/b.rs`: 2).
    /// `None` for the crate root and the binary.
    fn module_of(rel: &Path) -> Option<(String, usize)> {
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let top = parts[0].strip_suffix(".rs").unwrap_or(parts[0]);
        if matches!(top, "lib" | "main") {
            return None;
        }
        let last = *parts.last().unwrap();
        let depth = parts.len() - usize::from(last == "mod.rs");
        Some((top.to_string(), depth))
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Ident(String),
        Punct(char),
        /// `::`
        Path,
    }

    /// Identifiers and punctuation with their line, without comments,
    /// strings and character literals.
    fn tokens(text: &str) -> Vec<(Tok, usize)> {
        let s: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let (mut i, mut line) = (0, 1);
        let skip_to = |i: usize, end: usize, line: &mut usize| {
            *line += s[i..end.min(s.len())]
                .iter()
                .filter(|&&c| c == '\n')
                .count();
            end
        };
        while i < s.len() {
            let c = s[i];
            let next = s.get(i + 1).copied();
            if c == '\n' {
                line += 1;
                i += 1;
            } else if c == '/' && next == Some('/') {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            } else if c == '/' && next == Some('*') {
                let (mut depth, mut j) = (1, i + 2);
                while j < s.len() && depth > 0 {
                    if s[j] == '/' && s.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 1;
                    } else if s[j] == '*' && s.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 1;
                    }
                    j += 1;
                }
                i = skip_to(i, j, &mut line);
            } else if c == 'r' && matches!(next, Some('"' | '#')) && {
                let hashes = s[i + 1..].iter().take_while(|&&c| c == '#').count();
                s.get(i + 1 + hashes) == Some(&'"')
            } {
                // A raw string: r"..." or r#"..."#.
                let hashes = s[i + 1..].iter().take_while(|&&c| c == '#').count();
                let mut j = i + 2 + hashes;
                while j < s.len()
                    && !(s[j] == '"'
                        && s[j + 1..].iter().take_while(|&&c| c == '#').count() >= hashes)
                {
                    j += 1;
                }
                i = skip_to(i, j + 1 + hashes, &mut line);
            } else if c == '"' {
                let mut j = i + 1;
                while j < s.len() && s[j] != '"' {
                    j += if s[j] == '\\' { 2 } else { 1 };
                }
                i = skip_to(i, j + 1, &mut line);
            } else if c == '\'' {
                // A char literal ('x', '\n', '\u{..}'), or a lifetime.
                if next == Some('\\') {
                    let mut j = i + 2;
                    while j < s.len() && s[j] != '\'' {
                        j += 1;
                    }
                    i = j + 1;
                } else if s.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            } else if c.is_alphabetic() || c == '_' || c == '$' {
                let start = i;
                i += 1;
                while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                let word: String = s[start..i].iter().collect();
                out.push((Tok::Ident(word.trim_start_matches('$').to_string()), line));
            } else if c == ':' && next == Some(':') {
                out.push((Tok::Path, line));
                i += 2;
            } else {
                if !c.is_whitespace() {
                    out.push((Tok::Punct(c), line));
                }
                i += 1;
            }
        }
        out
    }

    /// The top-level modules `text` (the file at `rel`) names.
    fn uses_in(rel: &Path, text: &str) -> Vec<Use> {
        let Some((_, file_depth)) = module_of(rel) else {
            return Vec::new();
        };
        let toks = tokens(text);
        let ident = |i: usize| match toks.get(i) {
            Some((Tok::Ident(w), _)) => Some(w.as_str()),
            _ => None,
        };
        let is = |i: usize, t: Tok| toks.get(i).is_some_and(|(x, _)| *x == t);
        let mut uses = Vec::new();
        let mut found = |target: &str, line: usize| {
            uses.push(Use {
                file: rel.to_path_buf(),
                line,
                target: target.to_string(),
            })
        };
        // Inline modules (`mod tests { ... }`) open at these brace depths.
        let mut inline: Vec<usize> = Vec::new();
        let mut braces = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let line = toks[i].1;
            match &toks[i].0 {
                Tok::Punct('{') => braces += 1,
                Tok::Punct('}') => {
                    braces = braces.saturating_sub(1);
                    if inline.last() == Some(&braces) {
                        inline.pop();
                    }
                }
                Tok::Ident(w)
                    if w == "mod" && ident(i + 1).is_some() && is(i + 2, Tok::Punct('{')) =>
                {
                    inline.push(braces);
                    braces += 1;
                    i += 3;
                    continue;
                }
                Tok::Ident(w) if (w == "crate" || w == "super") && is(i + 1, Tok::Path) => {
                    // Walk `super::super::...` up; reaching the crate root
                    // means the next name is a top-level module.
                    let mut at_root = w == "crate";
                    let mut j = i + 2;
                    if w == "super" {
                        let mut depth = file_depth + inline.len() - 1;
                        while ident(j) == Some("super") && is(j + 1, Tok::Path) && depth > 0 {
                            depth -= 1;
                            j += 2;
                        }
                        at_root = depth == 0;
                    }
                    if at_root {
                        match &toks.get(j).map(|t| &t.0) {
                            Some(Tok::Ident(name)) => found(name, line),
                            Some(Tok::Punct('{')) => {
                                // `crate::{a::x, b}`: every name opening a
                                // path at the group's own level.
                                let mut depth = 0;
                                let mut k = j;
                                loop {
                                    match toks.get(k).map(|t| &t.0) {
                                        Some(Tok::Punct('{')) => depth += 1,
                                        Some(Tok::Punct('}')) => {
                                            depth -= 1;
                                            if depth == 0 {
                                                break;
                                            }
                                        }
                                        Some(Tok::Ident(name))
                                            if depth == 1
                                                && matches!(
                                                    toks[k - 1].0,
                                                    Tok::Punct('{') | Tok::Punct(',')
                                                ) =>
                                        {
                                            found(name, toks[k].1)
                                        }
                                        None => break,
                                        _ => {}
                                    }
                                    k += 1;
                                }
                                i = k;
                                continue;
                            }
                            // `use super::*` at the crate root: name the module.
                            _ => found("*", line),
                        }
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        uses
    }

    /// Every use of one top-level module by another, under src/.
    fn crate_uses() -> BTreeMap<String, Vec<Use>> {
        let src = src_dir();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        let mut by_module: BTreeMap<String, Vec<Use>> = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap().to_path_buf();
            let Some((module, _)) = module_of(&rel) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            let entry = by_module.entry(module.clone()).or_default();
            entry.extend(
                uses_in(&rel, &text)
                    .into_iter()
                    .filter(|u| u.target != module && !matches!(u.target.as_str(), "self")),
            );
        }
        by_module
    }

    /// The `mod` lines of the crate root.
    fn root_modules() -> BTreeSet<String> {
        let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
        lib.lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("#[cfg(test)]").unwrap_or(l).trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(str::to_string)
            })
            .collect()
    }

    #[test]
    fn every_module_uses_only_lower_layers() {
        let declared: BTreeSet<String> = LAYERS
            .iter()
            .flat_map(|l| l.iter())
            .map(|m| m.to_string())
            .collect();
        let mut modules = root_modules();
        modules.remove("layers");
        let mut wrong = Vec::new();
        for m in modules.symmetric_difference(&declared) {
            wrong.push(match modules.contains(m) {
                true => format!("src/lib.rs: `{m}` has no layer in LAYERS"),
                false => {
                    format!("src/layers.rs: LAYERS names `{m}`, which src/lib.rs does not declare")
                }
            });
        }
        for (module, uses) in crate_uses() {
            let Some(own) = layer_of(&module) else {
                continue;
            };
            for u in uses {
                let fault = match layer_of(&u.target) {
                    None if u.target == "*" => "a glob import of the crate root".to_string(),
                    None => format!("`{}`, which is not in LAYERS", u.target),
                    Some(l) if l == own => format!(
                        "`{}`, a module of its own layer ({own}): siblings must not know each other",
                        u.target
                    ),
                    Some(l) if l > own => format!("`{}` of layer {l}, above its own ({own})", u.target),
                    Some(_) => continue,
                };
                wrong.push(format!(
                    "src/{}:{}: `{module}` uses {fault}",
                    u.file.display(),
                    u.line
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "a module uses one it must not (see src/layers.rs; move the thing used \
             down, or turn the dependency around):\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_module_graph_has_no_cycle() {
        // Independent of the table: Kahn's algorithm over the uses found.
        let uses = crate_uses();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (module, list) in &uses {
            let out = edges.entry(module.clone()).or_default();
            out.extend(
                list.iter()
                    .filter(|u| uses.contains_key(&u.target))
                    .map(|u| u.target.clone()),
            );
        }
        let mut left = edges.clone();
        loop {
            // Peel what cannot be on a cycle: modules that use none of
            // those left, and modules none of those left uses.
            let leaves: Vec<String> = left
                .iter()
                .filter(|(m, out)| {
                    out.iter().all(|t| !left.contains_key(t))
                        || !left.values().any(|o| o.contains(*m))
                })
                .map(|(m, _)| m.clone())
                .collect();
            if leaves.is_empty() {
                break;
            }
            for m in leaves {
                left.remove(&m);
            }
        }
        assert!(
            left.is_empty(),
            "these modules are in an import cycle: {}",
            left.iter()
                .map(|(m, out)| format!(
                    "{m} -> {}",
                    out.iter()
                        .filter(|t| left.contains_key(*t))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }

    /// Which top-level modules (or folders under src/) may name an external
    /// crate: the invariants of ARCHITECTURE.md that a scan can check.
    const OWNERS: &[(&str, &[&str])] = &[
        // Only the runtime, the capabilities (the Store data, the linker)
        // and the bindings know wasmtime; everyone else uses their types.
        ("wasmtime", &["runtime", "capabilities", "contract"]),
        ("wasmtime_wasi", &["runtime", "capabilities"]),
        // Only the Pi backend touches devices.
        ("rppal", &["hardware/pi"]),
        ("rs_ws281x", &["hardware/pi"]),
        // Only http knows HTTP.
        ("httparse", &["http"]),
        ("form_urlencoded", &["http"]),
        // Only mqtt speaks TLS to a broker (config only parses a CA file).
        ("rustls", &["mqtt", "config"]),
        ("rustls_native_certs", &["mqtt"]),
        ("inotify", &["plugins/reload"]),
    ];

    #[test]
    fn external_crates_are_named_only_by_their_owners() {
        let src = src_dir();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap().to_path_buf();
            let rel_text = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&file).unwrap();
            let toks = tokens(&text);
            for (i, (tok, line)) in toks.iter().enumerate() {
                let Tok::Ident(name) = tok else { continue };
                let Some((_, owners)) = OWNERS.iter().find(|(c, _)| c == name) else {
                    continue;
                };
                // A path start (`wasmtime::x`, `use wasmtime`), not a field
                // or a local of that name (`self.wasmtime`, `x::wasmtime`).
                let after_path = i > 0 && matches!(toks[i - 1].0, Tok::Path | Tok::Punct('.'));
                let is_path = toks.get(i + 1).is_some_and(|(t, _)| *t == Tok::Path)
                    || (i > 0 && toks[i - 1].0 == Tok::Ident("use".into()));
                if after_path || !is_path {
                    continue;
                }
                let owned = owners.iter().any(|o| {
                    rel_text == format!("{o}.rs") || rel_text.starts_with(&format!("{o}/"))
                });
                if !owned {
                    wrong.push(format!(
                        "src/{rel_text}:{line}: names `{name}`, which only {} may use",
                        owners.join(", ")
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_scanner_sees_every_form_of_use() {
        let text = r##"
            //! [`crate::doc_only`] in a comment is not a use
            use crate::alpha::X;
            use crate::{beta::{self, Y}, gamma};
            const S: &str = "crate::in_a_string";
            const R: &str = r#"crate::in_a_raw_string"#;
            const C: char = '{';
            fn f<'a>(x: &'a str) { crate::delta::f(x); super::epsilon::g(); }
            /* crate::in_a_block_comment */
            pub(crate) fn g() {}
            mod tests {
                use super::*;
                use super::super::zeta;
            }
        "##;
        let found: Vec<(String, usize)> = uses_in(Path::new("m.rs"), text)
            .into_iter()
            .map(|u| (u.target, u.line))
            .collect();
        let expect = [
            ("alpha", 3),
            ("beta", 4),
            ("gamma", 4),
            ("delta", 8),
            ("epsilon", 8),
            ("zeta", 13),
        ];
        assert_eq!(
            found,
            expect.map(|(m, l)| (m.to_string(), l)).to_vec(),
            "from a top-level file, `super::` is the crate root"
        );
        // One level down, `super::` is the file's own module.
        let nested: Vec<String> =
            uses_in(Path::new("m/n.rs"), "use super::x; use super::super::y;")
                .into_iter()
                .map(|u| u.target)
                .collect();
        assert_eq!(nested, ["y"]);
    }
}
