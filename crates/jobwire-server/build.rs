//! Embeds the dashboard's built bundle (`dashboard/dist/`) into the server at compile
//! time: writes `$OUT_DIR/dashboard_assets.rs`, a table of (URL path, bytes) made of
//! `include_bytes!` of each file, so `cargo run` serves `/` without node. A checkout
//! without a built bundle compiles with an empty table (the route then says so).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("../../dashboard/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut out = String::from("&[\n");
    for (url, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({url:?}, include_bytes!({:?}).as_slice()),",
            path.display().to_string()
        );
    }
    out.push(']');
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("dashboard_assets.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("writing {}: {e}", dest.display());
    }
}

/// Every file under `dir`, as (`/`-joined path relative to `root`, absolute path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let url = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let abs = path.canonicalize().unwrap_or(path.clone());
            files.push((url, abs));
        }
    }
}
