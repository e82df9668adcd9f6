//! The web console's files, compiled into the binary: one table of (path, content type,
//! bytes), each served with an ETag and the console's Content-Security-Policy.
//!
//! Owns: [`ASSETS`] (every served file of `crates/broker/console/`, checked by a test that
//! lists the directory) and the headers they are served with. Must never: serve anything not
//! in the table (no filesystem reads at run time: the console works air-gapped and cannot be
//! swapped under a running broker), or need Node to build (the files are plain ES modules;
//! TypeScript only type-checks them in `scripts/test`).

use std::sync::OnceLock;

/// One served file.
pub struct Asset {
    /// The URL path without the leading `/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console serves. `GET /` is `index.html`.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    // Linked from index.html: without an icon every browser asks for /favicon.ico and logs
    // the 404 as a console error.
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("charts.js", JS),
    asset!("metrics.js", JS),
    asset!("overview.js", JS),
    asset!("brokers.js", JS),
    asset!("topics.js", JS),
    asset!("messages.js", JS),
    asset!("groups.js", JS),
    asset!("chain.js", JS),
];

/// Files in `console/` that are not served: the type-check tooling (TypeScript pinned by the
/// lock file, installed into the ignored `node_modules/`).
pub const NOT_SERVED: &[&str] = &[
    ".gitignore",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "typecheck",
];

/// The Content-Security-Policy of every console response: scripts, styles, images and
/// fetches from this origin only (no inline code, no CDN), and no framing (clickjacking).
pub const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// The asset at a request path (`/` is `index.html`).
pub fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    let name = match path.strip_prefix('/')? {
        "" => "index.html",
        n => n,
    };
    let i = ASSETS.iter().position(|a| a.path == name)?;
    Some((&ASSETS[i], etag(i)))
}

/// A strong ETag per asset (CRC-32C and length of its bytes), computed once.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:08x}-{}\"", crc32c::crc32c(a.bytes), a.bytes.len()))
            .collect()
    })[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_every_file_of_the_console_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                assert_eq!(
                    name, "node_modules",
                    "console/ has no subdirectories to serve"
                );
                continue;
            }
            on_disk.push(name);
        }
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS
            .iter()
            .map(|a| a.path.to_string())
            .chain(NOT_SERVED.iter().map(|s| s.to_string()))
            .collect();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "ASSETS + NOT_SERVED must be exactly console/'s files"
        );
        for a in ASSETS {
            assert_eq!(
                std::fs::read(dir.join(a.path)).unwrap(),
                a.bytes,
                "{}",
                a.path
            );
            let js = a.path.ends_with(".js");
            assert_eq!(js, a.content_type == JS, "{}", a.path);
        }
    }

    #[test]
    fn root_is_the_index_and_unknown_paths_are_not_found() {
        assert_eq!(find("/").unwrap().0.path, "index.html");
        assert_eq!(find("/app.js").unwrap().0.content_type, JS);
        assert!(find("/../Cargo.toml").is_none());
        assert!(find("/package.json").is_none());
        let (_, tag) = find("/app.js").unwrap();
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_ne!(find("/app.js").unwrap().1, find("/api.js").unwrap().1);
    }
}
