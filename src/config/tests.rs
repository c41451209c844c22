use super::expand::*;
use super::tree::*;
use super::validate::*;
use super::*;
use crate::base::names::is_valid_session_name;
use std::collections::HashMap;
use std::path::PathBuf;

struct FakeEnv(HashMap<&'static str, &'static str>);

impl Vars for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_owned())
    }
}

fn env() -> FakeEnv {
    FakeEnv(HashMap::from([
        ("HOME", "/home/td"),
        ("TOOLS", "/studio/tools"),
        ("EMPTY", ""),
    ]))
}

fn base() -> PathBuf {
    if cfg!(windows) {
        PathBuf::from(r"C:\cfg")
    } else {
        PathBuf::from("/cfg")
    }
}

fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    parse_many(&[(file, text)])
}

fn parse_many(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = env();
    let mut layers = Vec::new();
    for (file, text) in files {
        let src = Source {
            file,
            text,
            format: if file.ends_with(".json") {
                Format::Json
            } else {
                Format::Toml
            },
            dir: base(),
            vars: &vars,
            lock_keys: true,
        };
        layers.push(src.layer(&src.parse()?)?);
    }
    Ok(layer(layers))
}

fn err(file: &str, text: &str) -> String {
    match parse(file, text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

fn session<'c>(config: &'c Config, name: &str) -> &'c SessionSpec {
    match config.sessions.iter().find(|(n, _)| n == name) {
        Some((_, spec)) => spec,
        None => panic!("no session {name} in {config:?}"),
    }
}

fn abs(p: &str) -> String {
    normalize(&base().join(p)).to_string_lossy().into_owned()
}

fn env_of(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect()
}

const FULL_TOML: &str = r#"
host_modules = ["studio_qt"]

[defaults]
keep_global = ["studio_core"]
env = { STUDIO = "1" }

[sessions.toolA]
paths = ["lib", "${TOOLS}/toolA", "~/dev/toolA", "../shared"]
env = { TOOLA_MODE = "prod", PYTHONWARNINGS = false }
inherit_env = false
startup = "toolA.boot"

[sessions."tool-b.v2"]
inherit_paths = false
"#;

const FULL_JSON: &str = r#"{
  "host_modules": ["studio_qt"],
  "defaults": {"keep_global": ["studio_core"], "env": {"STUDIO": "1"}},
  "sessions": {
"toolA": {
  "paths": ["lib", "${TOOLS}/toolA", "~/dev/toolA", "../shared"],
  "env": {"TOOLA_MODE": "prod", "PYTHONWARNINGS": null},
  "inherit_env": false,
  "startup": "toolA.boot"
},
"tool-b.v2": {"inherit_paths": false}
  }
}"#;

#[test]
fn full_toml() {
    let config = parse("studio.toml", FULL_TOML).unwrap();
    assert_eq!(config.host_modules, ["studio_qt"]);
    let names: Vec<&str> = config.sessions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["toolA", "tool-b.v2"]);
    let a = session(&config, "toolA");
    let home = normalize(Path::new("/home/td/dev/toolA"));
    let shared = normalize(&base().join("../shared"));
    assert_eq!(
        a.paths,
        [
            abs("lib"),
            normalize(Path::new("/studio/tools/toolA"))
                .to_string_lossy()
                .into_owned(),
            home.to_string_lossy().into_owned(),
            shared.to_string_lossy().into_owned(),
        ]
    );
    assert_eq!(
        a.env,
        env_of(&[
            ("STUDIO", Some("1")),
            ("TOOLA_MODE", Some("prod")),
            ("PYTHONWARNINGS", None)
        ])
    );
    assert_eq!(a.keep_global, ["studio_core"]);
    assert!(!a.inherit_env);
    assert!(a.inherit_paths);
    assert_eq!(a.startup.as_deref(), Some("toolA.boot"));
    let b = session(&config, "tool-b.v2");
    assert!(b.paths.is_empty());
    assert!(b.inherit_env);
    assert!(!b.inherit_paths);
    assert_eq!(b.startup, None);
    assert_eq!(b.keep_global, ["studio_core"]);
}

#[test]
fn json_equals_toml() {
    assert_eq!(
        parse("studio.json", FULL_JSON).unwrap(),
        parse("studio.toml", FULL_TOML).unwrap()
    );
}

#[test]
fn empty_files_are_fine() {
    assert_eq!(parse("a.toml", "").unwrap(), Config::default());
    assert_eq!(parse("a.json", "{}").unwrap(), Config::default());
    assert_eq!(
        parse("a.json", "{\"sessions\": {}}").unwrap(),
        Config::default()
    );
}

#[test]
fn layering_studio_show_user() {
    let studio = r#"
host_modules = ["studio_qt"]
[defaults]
env = { STUDIO = "1", LEVEL = "studio" }
keep_global = ["studio_core"]
[sessions.toolA]
paths = ["/studio/toolA"]
env = { A = "studio", KEEP = "yes" }
startup = "toolA.boot"
[sessions.toolB]
paths = ["/studio/toolB"]
"#;
    let show = r#"{
  "host_modules": ["show_lib", "studio_qt"],
  "defaults": {"env": {"LEVEL": "show"}},
  "sessions": {
"toolA": {"paths": ["/show/toolA"], "env": {"A": "show"}, "inherit_env": false},
"toolC": {}
  }
}"#;
    let user = r#"
[sessions.toolA]
env = { KEEP = false }
inherit_env = true
keep_global = []
"#;
    let config = parse_many(&[
        ("studio.toml", studio),
        ("show.json", show),
        ("user.toml", user),
    ])
    .unwrap();
    assert_eq!(config.host_modules, ["studio_qt", "show_lib"]);
    let names: Vec<&str> = config.sessions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["toolA", "toolB", "toolC"]);
    let a = session(&config, "toolA");
    assert_eq!(a.paths, [abs("/show/toolA")], "later paths replace");
    assert_eq!(
        a.env,
        env_of(&[
            ("STUDIO", Some("1")),
            ("LEVEL", Some("show")),
            ("A", Some("show")),
            ("KEEP", None),
        ]),
        "env merges per variable; false unsets"
    );
    assert!(a.keep_global.is_empty(), "an empty list replaces too");
    assert!(a.inherit_env, "user's scalar wins");
    assert_eq!(
        a.startup.as_deref(),
        Some("toolA.boot"),
        "kept when not overridden"
    );
    let b = session(&config, "toolB");
    assert_eq!(b.paths, [abs("/studio/toolB")]);
    assert_eq!(b.keep_global, ["studio_core"]);
    assert_eq!(
        b.env,
        env_of(&[("STUDIO", Some("1")), ("LEVEL", Some("show"))])
    );
    let c = session(&config, "toolC");
    assert_eq!(
        c.keep_global,
        ["studio_core"],
        "studio defaults reach show sessions"
    );
}

#[test]
fn session_key_beats_later_defaults() {
    let studio = "[sessions.a]\ninherit_paths = false\n";
    let show = "[defaults]\ninherit_paths = true\nstartup = \"studio_boot\"\n";
    let config = parse_many(&[("studio.toml", studio), ("show.toml", show)]).unwrap();
    let a = session(&config, "a");
    assert!(!a.inherit_paths);
    assert_eq!(a.startup.as_deref(), Some("studio_boot"));
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let dir = std::env::temp_dir().join(format!("subsession-cfg-{}", std::process::id()));
    let show = dir.join("show");
    std::fs::create_dir_all(&show).unwrap();
    let file = show.join("show.toml");
    std::fs::write(
        &file,
        "[sessions.t]\npaths = [\"lib\", \"./a/../b\", \"..\"]\n",
    )
    .unwrap();
    let config = parse_files_with(&[&file], &env()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let expected: Vec<String> = [show.join("lib"), show.join("b"), dir.clone()]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(session(&config, "t").paths, expected);
}

#[test]
fn expansion() {
    let sep = if cfg!(windows) { ";" } else { ":" };
    let text = format!(
        r#"
[sessions.t]
paths = ["~", "~/x", "${{TOOLS}}", "${{MISSING:-/fallback}}", "${{EMPTY:-/was_empty}}", "/a$$b/$x"]
env = {{ P = "~/a{sep}${{TOOLS}}/b{sep}~other", Q = "${{EMPTY}}", R = "cost $$5 and $HOME" }}
"#
    );
    let config = parse("s.toml", &text).unwrap();
    let t = session(&config, "t");
    let n = |p: &str| normalize(Path::new(p)).to_string_lossy().into_owned();
    assert_eq!(
        t.paths,
        [
            n("/home/td"),
            n("/home/td/x"),
            n("/studio/tools"),
            n("/fallback"),
            n("/was_empty"),
            n("/a$b/$x")
        ]
    );
    let p = ["/home/td/a", "/studio/tools/b", "~other"].join(sep);
    assert_eq!(
        t.env,
        env_of(&[
            ("P", Some(&p)),
            ("Q", Some("")),
            ("R", Some("cost $5 and $HOME"))
        ])
    );
}

#[test]
fn error_unknown_key() {
    let text = "[sessions.toolA]\npaths = []\n    paht = [\"x\"]\n";
    assert_eq!(
        err("studio.toml", text),
        "studio.toml:3:5: sessions.toolA.paht: unknown key (expected one of: paths, env, \
         keep_global, inherit_env, inherit_paths, startup, requirements, index_url, find_links, pythons, \
         platforms); did you mean paths?"
    );
    assert_eq!(
        err("studio.toml", "version = 2\n"),
        "studio.toml:1:1: version: unknown key (expected one of: defaults, sessions, \
         host_modules)"
    );
    assert_eq!(
        err(
            "a.json",
            "{\"sessions\": {\"t\": {\n  \"paths\": [],\n  \"colour\": 1}}}"
        ),
        "a.json:3:3: sessions.t.colour: unknown key (expected one of: paths, env, \
         keep_global, inherit_env, inherit_paths, startup, requirements, index_url, \
         find_links, pythons, platforms)"
    );
}

#[test]
fn error_wrong_type() {
    assert_eq!(
        err("s.toml", "[sessions.toolA]\npaths = \"lib\"\n"),
        "s.toml:2:9: sessions.toolA.paths: expected a list of strings, found a string"
    );
    assert_eq!(
        err("s.toml", "[sessions.toolA]\nkeep_global = [\"a\", 2]\n"),
        "s.toml:2:21: sessions.toolA.keep_global: expected a list of strings, item 2 is \
         an integer"
    );
    assert_eq!(
        err(
            "s.json",
            "{\"sessions\": {\"a\": {\"inherit_env\": \"no\"}}}"
        ),
        "s.json:1:36: sessions.a.inherit_env: expected true or false, found a string"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\nenv = { X = 1 }\n"),
        "s.toml:2:13: sessions.a.env.X: expected a string, or false to unset it, found \
         an integer"
    );
    assert_eq!(
        err("s.toml", "sessions = 3\n"),
        "s.toml:1:12: sessions: expected a table, found an integer"
    );
    assert_eq!(
        err("s.json", "[1]"),
        "s.json:1:1: expected an object, found an array"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\nstartup = \"tool a\"\n"),
        "s.toml:2:11: sessions.a.startup: \"tool a\" is not a module name (e.g. \
         \"toolA.startup\")"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\npaths = [\"\"]\n"),
        "s.toml:2:10: sessions.a.paths: empty string"
    );
}

#[test]
fn error_syntax() {
    assert_eq!(
        err("s.toml", "[sessions.a]\npaths = [\"x\"\n"),
        "s.toml:2:13: invalid TOML: unclosed array, expected `]`"
    );
    let dup = err("s.toml", "[sessions.a]\nstartup = \"x\"\nstartup = \"y\"\n");
    assert!(
        dup.starts_with("s.toml:3:1: invalid TOML: duplicate key"),
        "{dup}"
    );
    assert_eq!(
        err("s.json", "{\n  \"sessions\": {\"é\": 1,}\n}"),
        "s.json:2:23: invalid JSON: key must be a string"
    );
    assert_eq!(
        err("s.json", "{\"sessions\": {}, \"sessions\": {}}"),
        "s.json:1:18: sessions: duplicate key"
    );
    assert_eq!(
        err(
            "s.json",
            "{\"sessions\": {\"a\": {\"env\": {\"X\": \"1\",\n \"X\": \"2\"}}}}"
        ),
        "s.json:2:2: sessions.a.env.X: duplicate key"
    );
}

#[test]
fn error_session_name() {
    assert_eq!(
        err("s.toml", "[sessions]\nok = {}\n\"tool A\" = {}\n"),
        "s.toml:3:1: sessions.\"tool A\": invalid session name: use 1-64 ASCII letters, \
         digits, '_', '-' or '.'"
    );
    let long = format!("{{\"sessions\": {{\"{}\": {{}}}}}}", "x".repeat(65));
    assert!(err("s.json", &long).starts_with("s.json:1:15: sessions."));
}

#[test]
fn error_undefined_var() {
    assert_eq!(
        err("s.toml", "[sessions.a]\nenv = { X = \"${NOPE}/x\" }\n"),
        "s.toml:2:13: sessions.a.env.X: environment variable NOPE is not set (used as \
         ${NOPE}; set it or write ${NOPE:-default})"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\npaths = [\"${TOOLS\"]\n"),
        "s.toml:2:10: sessions.a.paths: unterminated ${ in \"${TOOLS\" (write $$ for a \
         literal $)"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\npaths = [\"~bob/x\"]\n"),
        "s.toml:2:10: sessions.a.paths: \"~bob/x\": ~user is not supported; write the full \
         path"
    );
}

#[test]
fn columns_count_characters() {
    let text = "[sessions.a]\nenv = { \"é\" = \"x\", \"Ü\" = 1 }\n";
    assert_eq!(
        err("s.toml", text),
        "s.toml:2:26: sessions.a.env.\"Ü\": expected a string, or false to unset it, \
         found an integer"
    );
    assert_eq!(line_column("aé\nxyz", 5), (2, 2));
    assert_eq!(
        line_column("aé", 2),
        (1, 2),
        "inside a character: its start"
    );
}

#[test]
fn files_on_disk() {
    let missing = Path::new("/definitely/not/here/studio.toml");
    let e = parse_files_with(&[missing], &env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: config file not found", missing.display())
    );
    let e = parse_files_with(&[Path::new("studio.yaml")], &env()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "studio.yaml: unknown config format: name the file *.toml or *.json"
    );
    let dir = std::env::temp_dir().join(format!("subsession-cfg2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("a.JSON");
    let bad = dir.join("b.toml");
    std::fs::write(&good, "\u{feff}{\"sessions\": {\"a\": {}}}").unwrap();
    std::fs::write(&bad, "[sessions.b]\nnope = 1\n").unwrap();
    let ok = parse_files_with(&[&good], &env());
    let fail = parse_files_with(&[&good, &bad], &env());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ok.unwrap().sessions.len(), 1);
    let fail = fail.unwrap_err();
    assert_eq!(fail.file, bad.display().to_string());
    assert_eq!(fail.position, Some((2, 1)));
    assert_eq!(fail.key.as_deref(), Some("sessions.b.nope"));
}

#[test]
fn session_json() {
    let spec = parse_session_json_with(
        r#"{"paths": ["lib"], "env": {"A": "1"}, "keep_global": ["six"]}"#,
        "<C ABI>",
        &base(),
        &env(),
    )
    .unwrap();
    assert_eq!(spec.paths, [abs("lib")]);
    assert_eq!(spec.env, env_of(&[("A", Some("1"))]));
    assert_eq!(spec.keep_global, ["six"]);
    assert!(spec.inherit_env && spec.inherit_paths);
    let e = parse_session_json_with(r#"{"path": []}"#, "<C ABI>", &base(), &env())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "<C ABI>:1:2: path: unknown key (expected one of: paths, env, keep_global, \
         inherit_env, inherit_paths, startup, requirements, index_url, find_links, pythons, \
         platforms); did you mean paths?"
    );
    let e = parse_session_json_with("", "<C ABI>", &base(), &env()).unwrap_err();
    assert!(
        e.to_string().starts_with("<C ABI>:1:1: invalid JSON: EOF"),
        "{e}"
    );
}

#[test]
fn deep_json_is_refused_before_recursing() {
    // Run on a 256 KiB stack: the refusal must not depend on the caller's stack.
    let outcome = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let deep = format!(
                r#"{{"paths": {}{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            parse_session_json_with(&deep, "deep", &base(), &env())
                .unwrap_err()
                .to_string()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(outcome.starts_with("deep:1:"), "{outcome}");
    assert!(
        outcome.contains("nested deeper than 32 levels"),
        "{outcome}"
    );
    // Brackets inside strings do not count.
    let text = format!(r#"{{"paths": ["{}"]}}"#, "[".repeat(100));
    assert!(parse_session_json_with(&text, "s", &base(), &env()).is_ok());
    assert!(json_too_deep(&format!("{}{}", "[".repeat(32), "]".repeat(32))).is_none());
    assert_eq!(json_too_deep(&"[".repeat(33)), Some(32));
}

#[test]
fn env_values_and_references_stay_one_line() {
    let e = err("a.toml", "[sessions.a]\nenv = { A = \"a\\u0000b\" }\n");
    assert!(e.starts_with("a.toml:2:"), "{e}");
    assert!(e.contains("NUL"), "{e}");
    let e = err("a.toml", "[sessions.a]\npaths = [\"${UNDEF\\nX}\"]\n");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn check_session_json_needs_no_environment() {
    assert!(check_session_json(r#"{"paths": ["${NOT_SET_ANYWHERE}/x"]}"#, "c").is_ok());
    let e = check_session_json(r#"{"paths": 1}"#, "c").unwrap_err();
    assert!(e.to_string().starts_with("c:1:"), "{e}");
}

#[test]
fn session_names() {
    assert!(is_valid_session_name("toolA"));
    assert!(is_valid_session_name("a-b.c_1"));
    assert!(is_valid_session_name(&"x".repeat(64)));
    assert!(!is_valid_session_name(&"x".repeat(65)));
    assert!(!is_valid_session_name(""));
    assert!(!is_valid_session_name("a b"));
    assert!(!is_valid_session_name("é"));
}

#[test]
fn lock_keys_layer_and_validate() {
    let studio = "[defaults]\npythons = [\"3.10\", \"3.11\"]\nindex_url = \"https://pypi.studio/simple\"\n\
                  [sessions.toolA]\nrequirements = [\"packaging==20.9\"]\nfind_links = [\"wheels\"]\n";
    let user = "[sessions.toolA]\nrequirements = [\" packaging==24.2 \", \"six\"]\nplatforms = [\"linux_x86_64\"]\n";
    let config = parse_many(&[("studio.toml", studio), ("user.toml", user)]).unwrap();
    let spec = &config.sessions[0].1;
    // Lists are replaced whole by a later file; defaults sit under the session.
    assert_eq!(spec.requirements, ["packaging==24.2", "six"]);
    assert_eq!(spec.find_links, [abs("wheels")]);
    assert_eq!(
        spec.index_url.as_deref(),
        Some("https://pypi.studio/simple")
    );
    assert_eq!(spec.pythons, ["3.10", "3.11"]);
    assert_eq!(spec.platforms, ["linux_x86_64"]);
    // Not set anywhere: empty, meaning every target.
    let plain = parse("s.toml", "[sessions.b]\npaths = []\n").unwrap();
    assert!(plain.sessions[0].1.requirements.is_empty() && plain.sessions[0].1.pythons.is_empty());
}

#[test]
fn lock_key_errors_are_located() {
    assert_eq!(
        err(
            "s.toml",
            "[sessions.a]\nrequirements = [\"ok\", \"requests>=\"]\n"
        ),
        "s.toml:2:23: sessions.a.requirements: \"requests>=\" is not a PEP 508 requirement: \
         expected a version after `>=`"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\npythons = [\"3.8\"]\n"),
        "s.toml:2:12: sessions.a.pythons: \"3.8\" is not one of: 3.9, 3.10, 3.11, 3.12, 3.13"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\nplatforms = [\"win64\"]\n"),
        "s.toml:2:14: sessions.a.platforms: \"win64\" is not one of: linux_x86_64, \
         windows_x86_64, macos_arm64, macos_x86_64"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\nindex_url = \"pypi.org\"\n"),
        "s.toml:2:13: sessions.a.index_url: \"pypi.org\" is not an index URL: write \
         https://... (or file://...)"
    );
    assert_eq!(
        err("s.toml", "[sessions.a]\nrequirements = \"six\"\n"),
        "s.toml:2:16: sessions.a.requirements: expected a list of strings, found a string"
    );
    // The C ABI's one-session JSON has no lock: the keys are refused there.
    let e = parse_session_json_with(r#"{"requirements": ["six"]}"#, "<C ABI>", &base(), &env())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("<C ABI>:1:2: requirements: only a config file"),
        "{e}"
    );
}
