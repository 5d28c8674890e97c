//! The layering of `ucserver`, checked from its source: each module uses only the layers
//! below it, and no two modules import each other (directly or round a cycle). The layers,
//! from the top (see ARCHITECTURE.md):
//!
//! 6. `routes` (which front end answers which path)
//! 5. front ends: `http`, `ws`, `extract`, `api_docs` (codecs, routing, the documents)
//! 4. the application layer: `app` (sessions and the access rules)
//! 3. `dispatch` (inputs that span the components and the call shell)
//! 2. the call shell (`calls`), peers and heartbeats (`peers`), the settings task
//!    (`settings::apply`)
//! 1. components: `server` (holds the parts below, with what spans them) beside the parts
//!    that own their state: `devices`, `presence`, `chat`, `tokens`, `relations`, `licenses`, `telephony`,
//!    `media`, `calls::registry`
//! 0. foundations: `auth`, `cluster`, `store`, `config`, `error`, `events`, `metrics`, `timed`,
//!    the login throttle, password pool and rate limits (`login_guard`, `password`,
//!    `rate_limit`: state of their own, built from config, no server), the runtime settings'
//!    registry and cache (`settings`),
//!    and the cores (`uccore`, a crate of its own)
//!
//! `lib.rs` and `main.rs` wire everything and stand outside the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layer of a module: the longest listed prefix of its path decides.
fn layer(module: &str) -> Option<u8> {
    const LAYERS: &[(&str, u8)] = &[
        ("routes", 6),
        ("http", 5),
        ("http_inspect", 5),
        ("ws", 5),
        ("admin_ws", 5),
        ("extract", 5),
        ("api_docs", 5),
        ("app", 4),
        ("dispatch", 3),
        ("calls", 2),
        ("peers", 2),
        ("inspect", 2),
        ("calls::registry", 1),
        ("server", 1),
        ("media", 1),
        ("relations", 1),
        ("devices", 1),
        ("chat", 1),
        ("presence", 1),
        ("tokens", 1),
        ("login_guard", 0),
        ("password", 0),
        ("rate_limit", 0),
        ("outbox", 0),
        ("settings", 0),
        ("settings::apply", 2),
        ("ldap", 0),
        ("owners", 0),
        ("probe", 0),
        ("history", 0),
        ("admin_feed", 0),
        ("inquiries", 0),
        ("licenses", 1),
        ("telephony", 1),
        ("timed", 0),
        ("auth", 0),
        ("cluster", 0),
        ("store", 0),
        ("config", 0),
        ("error", 0),
        ("events", 0),
        ("metrics", 0),
        ("core", 0),
    ];
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, layer)| *layer)
}

/// Every source file as a module path: `calls/mod.rs` is `calls`, `app/session.rs` is
/// `app::session`.
fn modules(dir: &Path, prefix: &str, found: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let inner = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}::{name}")
            };
            modules(&path, &inner, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match (prefix, name.as_str()) {
                (_, "mod") => prefix.to_string(),
                ("", _) => name,
                _ => format!("{prefix}::{name}"),
            };
            found.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The paths a file names with `crate::` (grouped imports expanded) and `super::`
/// (made absolute), comments left out.
fn references(module: &str, is_mod_rs: bool, text: &str) -> Vec<String> {
    let parent = if is_mod_rs {
        module.to_string()
    } else {
        module
            .rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_string())
    };
    let grandparent = parent
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string());
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (keyword, base) in [("crate::", String::new()), ("super::", grandparent.clone())] {
            let base = if keyword == "super::" && !is_mod_rs {
                parent.clone()
            } else {
                base
            };
            let mut rest = code;
            while let Some(at) = rest.find(keyword) {
                let preceded = rest[..at].chars().last();
                rest = &rest[at + keyword.len()..];
                if preceded.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    group.split(',').map(|n| n.trim().to_string()).collect()
                } else {
                    vec![
                        rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                            .next()
                            .unwrap_or("")
                            .to_string(),
                    ]
                };
                for name in names.into_iter().filter(|n| !n.is_empty()) {
                    found.push(if base.is_empty() {
                        name
                    } else {
                        format!("{base}::{name}")
                    });
                }
            }
        }
    }
    found
}

/// The module a path lands in: its longest prefix that is a module of the crate.
fn resolve<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|candidate| modules.get(&candidate))
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut sources,
    );
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &sources {
        if module == "lib" || module == "main" {
            continue;
        }
        let is_mod_rs = names.iter().any(|n| n.starts_with(&format!("{module}::")));
        for path in references(module, is_mod_rs, text) {
            if let Some(target) = resolve(&path, &names)
                && target != module
                && target != "lib"
            {
                edges
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    edges
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let mut wrong = Vec::new();
    for (from, targets) in edges() {
        let Some(from_layer) = layer(&from) else {
            wrong.push(format!("{from} has no layer: add it to the list"));
            continue;
        };
        for to in targets {
            // Modules of one layer may use one another, as long as there is no cycle.
            match layer(&to) {
                None => wrong.push(format!("{to} has no layer: add it to the list")),
                Some(to_layer) if to_layer > from_layer => {
                    wrong.push(format!(
                        "{from} (layer {from_layer}) uses {to} (layer {to_layer})"
                    ));
                }
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = edges();
    // Depth-first search for a cycle, reporting the first one found.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, &edges, &mut Vec::new(), &mut done) {
            panic!("modules import each other: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_check_sees_imports() {
    let edges = edges();
    assert!(edges["http"].contains("extract"), "{edges:?}");
    assert!(edges["ws"].contains("app"), "{edges:?}");
    assert!(edges["app::session"].contains("server"), "{edges:?}");
    assert!(edges["calls"].contains("server"), "{edges:?}");
}
