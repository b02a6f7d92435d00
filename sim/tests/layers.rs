//! The simulator's modules form layers (see `src/lib.rs`): a module may name only modules
//! of its own or a lower layer, so there are no import loops. Reads the sources and lists
//! every `crate::…` path that reaches upward.

use std::path::{Path, PathBuf};

/// Lower layers first; a module may use the ones before it (and its own layer).
const LAYERS: &[&[&str]] = &[
    &["php"],
    &["state"],
    &["portal"],
    &["methods"],
    &["endpoint"],
    &["cloud", "driver"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/methods/crm/items.rs` → `methods`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    Path::new(first)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The module names after `crate::` in code (comments skipped), e.g. `crate::state::crm`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn modules_use_only_their_own_or_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("{}: module `{module}` is in no layer", file.display()));
        for used in crate_paths(&std::fs::read_to_string(file).unwrap()) {
            checked += 1;
            match layer_of(&used) {
                Some(layer) if layer <= own => {}
                _ => upward.push(format!("{}: crate::{used}", file.display())),
            }
        }
    }
    assert!(
        checked > 50,
        "found only {checked} crate paths: is the scan broken?"
    );
    assert!(upward.is_empty(), "upward uses:\n{}", upward.join("\n"));
}

#[test]
fn the_scan_sees_paths_in_use_lists_and_expressions() {
    let code = "use crate::state::{self, State};\nlet x = crate::php::intval(v); // crate::cloud\n";
    assert_eq!(crate_paths(code), ["state", "php"]);
}
