//! The crate's floors, checked: each top-level module of `src/` imports only modules on
//! a floor below its own, and no files import each other in a circle. The house these
//! floors make is drawn in docs/architecture.md; a new module gets a floor here.
//!
//! Imports are read from the code (comments left out): every `crate::…` path, and
//! `super::…` paths resolved from the file they are in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module, by floor: a module may import only from lower floors.
const FLOORS: &[&[&str]] = &[
    // Helpers everything may use.
    &["error", "macros", "serde_secs"],
    // The ground floor.
    &["connection"],
    // The layers and the protocols, which never import each other.
    &["backoff", "health", "detect", "restore", "protocol", "sim"],
    // The driver over the layers; Redis behind the state store and the leases.
    &["driver", "redis"],
    // Backup sources over the driver's streams.
    &["failover"],
    // Settings, and the metrics reporter that reads health and events.
    &["config", "metrics"],
    // The one place the stack is put together.
    &["stack"],
];

type Module = Vec<String>;

/// Each file of the library under `src/` as its module path (`src/detect/service.rs` is
/// `["detect", "service"]`, `src/lib.rs` is `[]`), with its code.
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                // src/bin holds programs: crates of their own over the public API,
                // not modules of the library.
                if path != root.join("bin") {
                    walk(&path, root, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under src/")
                    .with_extension("");
                let mut module: Module = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod" || m == "lib") {
                    module.pop();
                }
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                out.insert(module, strip_comments(&text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules (files) `module`'s code names with a `crate::` or `super::` path.
fn imports(module: &Module, code: &str, files: &BTreeMap<Module, String>) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    let bytes = code.as_bytes();
    for head in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(head) {
            let start = from + at;
            from = start + head.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let path: Vec<&str> = code[from..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let mut base: Module = if head == "crate::" {
                Vec::new()
            } else {
                // A file's `super` is its parent module (a mod.rs file's is its folder's).
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut rest = path.as_slice();
            while let Some((&"super", tail)) = rest.split_first() {
                base.pop();
                rest = tail;
            }
            base.extend(rest.iter().map(|s| (*s).to_owned()));
            // The longest prefix that is a file is the module imported.
            while !base.is_empty() && !files.contains_key(&base) {
                base.pop();
            }
            let inside = base.len() <= module.len() && module[..base.len()] == base[..];
            if !base.is_empty() && !inside {
                out.insert(base);
            }
        }
    }
    out
}

fn floor_of(top: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&top))
}

#[test]
fn every_module_imports_only_from_the_floors_below_it() {
    let files = modules();
    let mut wrong = Vec::new();
    for (module, code) in &files {
        let Some(top) = module.first() else { continue };
        let Some(floor) = floor_of(top) else {
            wrong.push(format!("src/{top} has no floor in tests/layering.rs"));
            continue;
        };
        for imported in imports(module, code, &files) {
            let other = &imported[0];
            if other == top {
                continue;
            }
            match floor_of(other) {
                Some(f) if f < floor => {}
                _ => wrong.push(format!(
                    "{} (floor {floor}) imports {} (floor {})",
                    module.join("::"),
                    imported.join("::"),
                    floor_of(other).map_or("none".to_owned(), |f| f.to_string())
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let files = modules();
    let graph: BTreeMap<&Module, BTreeSet<Module>> = files
        .iter()
        .map(|(m, code)| (m, imports(m, code, &files)))
        .collect();
    // A file is in a circle when it can reach itself.
    let mut circles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&Module> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            if m == *start {
                circles.push(start.join("::"));
                break;
            }
            if seen.insert(m) {
                if let Some(next) = graph.get(m) {
                    todo.extend(next.iter());
                }
            }
        }
    }
    assert!(circles.is_empty(), "files in an import circle: {circles:?}");
}

#[test]
fn the_check_sees_an_import_that_goes_up() {
    // The check must be able to fail: a layer's file naming the driver is caught.
    let mut files = modules();
    let module: Module = vec!["health".into(), "layer".into()];
    let code = "use crate::driver::Reconnecting;";
    files.insert(module.clone(), code.into());
    let found = imports(&module, code, &files);
    assert!(found.contains(&vec!["driver".to_owned()]), "{found:?}");
    assert!(floor_of("driver") > floor_of("health"));
}
