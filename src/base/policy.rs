//! The sharing policy (docs/contract.md §4.1): which module names every session shares with the
//! global interpreter, and which each session gets its own fresh copy of.
//!
//! Shared: the standard library and builtins, `subsession` itself, the host's packages
//! (Maya's by default, configurable) and a session's `keep_global` patterns. A name is
//! shared when it or any of its parent packages matches, because a submodule cannot be
//! isolated under a shared parent.

use std::collections::HashSet;
use std::sync::RwLock;

use rustc_hash::FxHashSet;

use super::names::{PREFIX, dotted_prefixes, top_level};

/// Host packages shared by default: Maya and its Qt/USD stack.
pub(crate) const DEFAULT_HOST_MODULES: &[&str] = &[
    "maya",
    "pymel",
    "PySide2",
    "PySide6",
    "shiboken2",
    "shiboken6",
    "ufe",
    "mayaUsd",
    "pxr",
];

/// Always shared besides the standard library. setuptools and its distutils shim
/// answer `import distutils` for the whole process: resolved in a session, the
/// session's private setuptools would become the global `distutils`.
const ALWAYS_SHARED: &[&str] = &[
    "subsession",
    "__main__",
    "__mp_main__",
    "test",
    "distutils",
    "_distutils_hack",
    "setuptools",
];

/// Module-name patterns: `pkg` and `pkg.*` match pkg and everything under it; `*` and
/// `?` glob anywhere else (`studio_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Patterns {
    exact: FxHashSet<String>,
    globs: Vec<String>,
    source: Vec<String>,
}

impl Patterns {
    /// Parses patterns, rejecting what cannot be a module name with a message saying why.
    pub(crate) fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut out = Patterns::default();
        for raw in patterns {
            let raw = raw.as_ref();
            let pattern = raw.strip_suffix(".*").unwrap_or(raw);
            let valid = !pattern.is_empty()
                && pattern
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(is_pattern_char));
            if !valid {
                return Err(format!(
                    "keep_global entry {raw:?} is not a module name or pattern; \
                     use e.g. \"six\", \"pkg.*\" or \"studio_*\""
                ));
            }
            if pattern.contains(['*', '?']) {
                out.globs.push(pattern.to_owned());
            } else {
                out.exact.insert(pattern.to_owned());
            }
            out.source.push(raw.to_owned());
        }
        Ok(out)
    }

    /// The patterns as given.
    pub(crate) fn source(&self) -> &[String] {
        &self.source
    }

    /// True when `name` or one of its parent packages matches.
    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.source.is_empty() {
            return false;
        }
        dotted_prefixes(name).any(|p| {
            self.exact.contains(p)
                || self
                    .globs
                    .iter()
                    .any(|g| glob_match(g.as_bytes(), p.as_bytes()))
        })
    }
}

fn is_pattern_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '*' || c == '?'
}

/// Shell-style match of `*` (any run, dots included) and `?` (one character).
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    backtrack = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Process-wide shared names: the standard library and the host list.
pub(crate) struct GlobalPolicy {
    stdlib: FxHashSet<String>,
    hosts: Patterns,
}

static GLOBAL: RwLock<Option<GlobalPolicy>> = RwLock::new(None);

/// Sets the standard-library top-level names (from `sys.stdlib_module_names`, or a scan
/// of the stdlib folders on Python 3.9) and the default host list.
pub(crate) fn init(stdlib: HashSet<String>) {
    let hosts = Patterns::new(DEFAULT_HOST_MODULES).unwrap_or_default();
    let mut guard = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(existing) => existing.stdlib = stdlib.into_iter().collect(),
        None => {
            *guard = Some(GlobalPolicy {
                stdlib: stdlib.into_iter().collect(),
                hosts,
            })
        }
    }
}

/// Replaces the host list (shared by every session).
pub(crate) fn set_host_modules<S: AsRef<str>>(names: &[S]) -> Result<(), String> {
    let hosts = Patterns::new(names)?;
    let mut guard = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(existing) => existing.hosts = hosts,
        None => {
            *guard = Some(GlobalPolicy {
                stdlib: FxHashSet::default(),
                hosts,
            })
        }
    }
    Ok(())
}

pub(crate) fn host_modules() -> Vec<String> {
    let guard = GLOBAL.read().unwrap_or_else(|e| e.into_inner());
    guard
        .as_ref()
        .map(|g| g.hosts.source().to_vec())
        .unwrap_or_default()
}

/// True for names every session shares, whatever its `keep_global`.
pub(crate) fn shared_by_everyone(name: &str) -> bool {
    let top = top_level(name);
    if top.starts_with(PREFIX) || ALWAYS_SHARED.contains(&top) {
        return true;
    }
    let guard = GLOBAL.read().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(g) => g.stdlib.contains(top) || g.hosts.matches(name),
        None => false,
    }
}

/// True for standard-library top-level names (the frame walk looks through them).
pub(crate) fn is_stdlib(top: &str) -> bool {
    let guard = GLOBAL.read().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().is_some_and(|g| g.stdlib.contains(top))
}

/// Scans standard-library folders for top-level module names (Python 3.9 has no
/// `sys.stdlib_module_names`): `x.py`, packages `x/`, and extension files `x.*.so`.
pub(crate) fn scan_stdlib_dirs(dirs: &[std::path::PathBuf]) -> HashSet<String> {
    let mut names = HashSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if matches!(file_name, "site-packages" | "dist-packages" | "__pycache__") {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let stem = if is_dir {
                Some(file_name)
            } else if let Some(stem) = file_name.strip_suffix(".py") {
                Some(stem)
            } else if file_name.ends_with(".so") || file_name.ends_with(".pyd") {
                file_name.split('.').next()
            } else {
                None
            };
            if let Some(stem) = stem.filter(|s| !s.is_empty() && !s.contains('-')) {
                names.insert(stem.to_owned());
            }
        }
    }
    names
}

/// True when `path` lies in one of the standard-library folders (and not in a
/// site-packages below them): what `inherit_paths=False` keeps of `sys.path`.
pub(crate) fn is_stdlib_path(path: &str, stdlib_dirs: &[std::path::PathBuf]) -> bool {
    let resolved = std::fs::canonicalize(if path.is_empty() { "." } else { path })
        .unwrap_or_else(|_| std::path::PathBuf::from(path));
    let text = resolved.to_string_lossy();
    if text.contains("site-packages") || text.contains("dist-packages") {
        return false;
    }
    if let Some(name) = resolved.file_name().and_then(|n| n.to_str()) {
        if name.starts_with("python") && name.ends_with(".zip") {
            return true;
        }
    }
    stdlib_dirs.iter().any(|d| resolved.starts_with(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_pattern_covers_subpackages_only_at_dots() {
        let p = Patterns::new(&["six"]).unwrap();
        assert!(p.matches("six"));
        assert!(p.matches("six.moves.urllib"));
        assert!(!p.matches("sixty"));
        assert!(!p.matches("other.six"));
    }

    #[test]
    fn star_suffix_means_the_package_and_below() {
        let p = Patterns::new(&["pkg.*"]).unwrap();
        assert!(p.matches("pkg"));
        assert!(p.matches("pkg.a.b"));
        assert!(!p.matches("pkga"));
    }

    #[test]
    fn globs_match_any_dotted_prefix() {
        let p = Patterns::new(&["studio_*", "a?c"]).unwrap();
        assert!(p.matches("studio_core"));
        assert!(p.matches("studio_core.io"));
        assert!(p.matches("abc.x"));
        assert!(!p.matches("abbc"));
        assert!(!p.matches("tools.studio_core"));
    }

    #[test]
    fn invalid_patterns_are_rejected_with_advice() {
        for bad in ["", ".", "a..b", "a b", "a/b", "pkg."] {
            let err = Patterns::new(&[bad]).unwrap_err();
            assert!(err.contains("keep_global entry"), "{bad}: {err}");
        }
    }

    #[test]
    fn glob_match_backtracks() {
        assert!(glob_match(b"*a*b", b"xxaxxb"));
        assert!(glob_match(b"a*", b"a"));
        assert!(!glob_match(b"a*b", b"aXc"));
        assert!(glob_match(b"**", b""));
        assert!(!glob_match(b"?", b""));
    }

    #[test]
    fn everyone_shares_stdlib_hosts_and_subsession() {
        init(["json", "os"].iter().map(|s| s.to_string()).collect());
        assert!(shared_by_everyone("json.decoder"));
        assert!(shared_by_everyone("subsession._core"));
        assert!(shared_by_everyone("maya.cmds"));
        assert!(shared_by_everyone("__subsession_a__.x"));
        assert!(shared_by_everyone("_distutils_hack"));
        assert!(shared_by_everyone("setuptools._distutils.core"));
        assert!(shared_by_everyone("setuptools"));
        assert!(!shared_by_everyone("pkg_resources"));
        assert!(!shared_by_everyone("requests"));
        let keep = Patterns::new(&["requests"]).unwrap();
        assert!(keep.matches("requests.adapters"));
        assert!(!keep.matches("urllib3") && !shared_by_everyone("urllib3"));
    }

    #[test]
    fn stdlib_scan_finds_modules_packages_and_extensions() {
        let dir = std::env::temp_dir().join(format!("subsession-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("email")).unwrap();
        std::fs::create_dir_all(dir.join("site-packages")).unwrap();
        std::fs::write(dir.join("json.py"), "").unwrap();
        std::fs::write(dir.join("_ssl.cpython-39-x86_64-linux-gnu.so"), "").unwrap();
        std::fs::write(dir.join("README.txt"), "").unwrap();
        let names = scan_stdlib_dirs(std::slice::from_ref(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        let mut sorted: Vec<_> = names.into_iter().collect();
        sorted.sort();
        assert_eq!(sorted, ["_ssl", "email", "json"]);
    }
}
