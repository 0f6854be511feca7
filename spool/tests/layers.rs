//! The crate's three layers import one way: `store` (what lies on disk and
//! in staging) uses neither of the others, and `read` and `write` use
//! `store` but not each other. A name both need lives in `store`. This
//! reads the sources and fails on any code line (comments aside) of a
//! layer that names a layer it must not.

use std::path::{Path, PathBuf};

/// Each layer, and the layers its code must not name.
const RULES: [(&str, &[&str]); 3] = [
    ("store", &["read", "write"]),
    ("read", &["write"]),
    ("write", &["read"]),
];

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn layers_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    let mut lines_read = 0;
    for (layer, forbidden) in RULES {
        for file in sources(&src.join(layer)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                lines_read += 1;
                let code = line.split("//").next().unwrap_or_default();
                for other in forbidden {
                    if code.contains(&format!("crate::{other}::"))
                        || code.contains(&format!("crate::{other}}}"))
                        || code.contains(&format!("super::super::{other}"))
                    {
                        wrong.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(lines_read > 1000, "read only {lines_read} lines of {src:?}");
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
