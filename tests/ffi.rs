//! The C ABI, driven as a C host would: the cdylib loaded with libloading, inside a
//! process that embeds Python (`Python::initialize()` from this test binary's own
//! pyo3; never the `auto-initialize` feature, see Cargo.toml).
//!
//! The package is importable from a temp root of symlinks (tests/common), so Python
//! imports the same `libsubsession.so` file that libloading opened.
mod common;

use common::*;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ffi::{CString, c_char};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

static ABI: LazyLock<Abi> = LazyLock::new(|| {
    Python::initialize(); // releases the GIL afterwards: any thread may attach
    let abi = Abi::load();
    let root = python_root("ffi", &abi.path);
    Python::attach(|py| {
        let path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .expect("sys.path");
        path.call_method1("insert", (0, root.to_string_lossy().as_ref()))
            .expect("sys.path.insert");
    });
    abi
});

/// One bad-argument call: the parameter the message must name, and the call.
type ArgCase<'a> = (&'static str, Box<dyn Fn() -> i32 + 'a>);

/// Runs Python statements in a fresh namespace; panics with the traceback.
fn py_run(code: &str) {
    Python::attach(|py| {
        let globals = PyDict::new(py);
        let code = CString::new(code).expect("no NUL in test code");
        if let Err(e) = py.run(&code, Some(&globals), None) {
            let tb = e
                .traceback(py)
                .and_then(|t| t.format().ok())
                .unwrap_or_default();
            panic!("python failed: {tb}{e}");
        }
    });
}

/// Proves the GIL is free: another thread attaches within a few seconds.
fn assert_gil_free() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        Python::attach(|_py| ());
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("another thread could not attach: the GIL was left held");
}

/// Writes the same module name in version folders: `<root>/v<N>/<module>.py`.
fn versioned(root: &Path, module: &str, versions: &[&str]) -> Vec<String> {
    versions
        .iter()
        .map(|v| {
            let dir = root.join(format!("v{v}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            write_module(
                &dir,
                module,
                &format!(
                    "VERSION = {v:?}\n\
                     def version():\n    return VERSION\n\
                     def answer():\n    return 42\n\
                     def nothing():\n    return None\n\
                     def with_nul():\n    return 'a\\x00b'\n\
                     def lazy():\n    import {module}_helper\n    return {module}_helper.WHO\n\
                     class Tool:\n    @staticmethod\n    def hello():\n        return 'hello ' + VERSION\n"
                ),
            );
            write_module(&dir, &format!("{module}_helper"), &format!("WHO = 'helper {v}'\n"));
            dir.to_string_lossy().into_owned()
        })
        .collect()
}

fn paths_config(dir: &str) -> String {
    serde_json::json!({ "paths": [dir] }).to_string()
}

#[test]
fn abi_version_result_names_and_header_agree() {
    let abi = &*ABI;
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/subsession.h"))
            .expect("include/subsession.h");
    let version = unsafe { (abi.abi_version)() };
    assert!(
        header.contains(&format!("#define SUBSESSION_ABI_VERSION {version}")),
        "header ABI version differs from the library's {version}"
    );
    for (name, code) in CODES {
        let full = format!("SUBSESSION_RESULT_{name}");
        assert!(
            header.contains(&format!("{full} = {code}")),
            "{full} = {code} not in header"
        );
        assert_eq!(abi.result_name(code), full);
    }
    assert_eq!(abi.result_name(-1), "SUBSESSION_RESULT_UNKNOWN");
    assert_eq!(abi.result_name(i32::MAX), "SUBSESSION_RESULT_UNKNOWN");
}

#[test]
fn two_sessions_two_versions_of_a_module() {
    let abi = &*ABI;
    let root = scratch("two_versions");
    let dirs = versioned(&root, "vermod", &["1.0", "2.0"]);
    assert_eq!(
        abi.create("two_a", Some(&paths_config(&dirs[0]))),
        OK,
        "{}",
        abi.err()
    );
    assert_eq!(
        abi.create("two_b", Some(&paths_config(&dirs[1]))),
        OK,
        "{}",
        abi.err()
    );
    assert_eq!(abi.last_error(), None, "success clears the last error");

    for _ in 0..3 {
        // interleaved: each session keeps its own copy
        assert_eq!(
            abi.call("two_a", "vermod.version", None),
            (OK, Some("1.0".into()))
        );
        assert_eq!(
            abi.call("two_b", "vermod", Some("version")),
            (OK, Some("2.0".into()))
        );
    }
    // lazy import inside session code after the call returned -> still its session
    assert_eq!(
        abi.call("two_b", "vermod.lazy", None),
        (OK, Some("helper 2.0".into()))
    );
    assert_eq!(
        abi.call("two_a", "vermod.lazy", None),
        (OK, Some("helper 1.0".into()))
    );
    // str() of non-strings, dotted attribute paths
    assert_eq!(
        abi.call("two_a", "vermod.answer", None),
        (OK, Some("42".into()))
    );
    assert_eq!(
        abi.call("two_a", "vermod.nothing", None),
        (OK, Some("None".into()))
    );
    assert_eq!(
        abi.call("two_b", "vermod", Some("Tool.hello")),
        (OK, Some("hello 2.0".into()))
    );
    assert_eq!(
        abi.call("two_a", "vermod:Tool.hello", None),
        (OK, Some("hello 1.0".into()))
    );

    assert_eq!(abi.import("two_a", "vermod_helper"), OK, "{}", abi.err());
    assert_eq!(
        abi.exec(
            "two_a",
            "import vermod\nassert vermod.VERSION == '1.0', vermod.VERSION"
        ),
        OK,
        "{}",
        abi.err()
    );
    assert_eq!(
        abi.exec("two_b", "import vermod\nassert vermod.VERSION == '2.0'"),
        OK,
        "{}",
        abi.err()
    );
    // the namespace persists across exec calls
    assert_eq!(abi.exec("two_b", "kept = vermod.VERSION"), OK);
    assert_eq!(
        abi.exec("two_b", "assert kept == '2.0'"),
        OK,
        "{}",
        abi.err()
    );

    // nothing leaked into the global interpreter; the Python API sees both sessions
    py_run(
        "import sys, subsession\n\
         assert 'vermod' not in sys.modules\n\
         assert subsession.get('two_a').modules['vermod'].VERSION == '1.0'\n\
         assert subsession.get('two_b').modules['vermod'].VERSION == '2.0'\n",
    );

    let (rc, report) = abi.close("two_a");
    assert_eq!(rc, OK, "{}", abi.err());
    let report: serde_json::Value = serde_json::from_str(&report.unwrap()).unwrap();
    assert_eq!(report["session"], "two_a");
    assert_eq!(
        report["leaks"],
        serde_json::json!({}),
        "clean close: {report}"
    );
    let unloaded: Vec<String> = serde_json::from_value(report["unloaded"].clone()).unwrap();
    assert!(unloaded.contains(&"vermod".to_string()), "{unloaded:?}");
    // the other session is untouched
    assert_eq!(
        abi.call("two_b", "vermod.version", None),
        (OK, Some("2.0".into()))
    );
    assert_eq!(abi.close("two_b").0, OK);
}

#[test]
fn null_arguments_are_rejected_per_parameter() {
    let abi = &*ABI;
    let null = std::ptr::null::<c_char>();
    let n = cs("nulls");
    let s = cs("pass");
    let mut out: *mut c_char = std::ptr::null_mut();
    unsafe {
        let out = &mut out as *mut *mut c_char;
        let cases: Vec<ArgCase> = vec![
            ("name", Box::new(|| (abi.create)(null, null))),
            ("name", Box::new(|| (abi.exec)(null, s.as_ptr()))),
            ("source", Box::new(|| (abi.exec)(n.as_ptr(), null))),
            ("name", Box::new(|| (abi.import)(null, s.as_ptr()))),
            ("module", Box::new(|| (abi.import)(n.as_ptr(), null))),
            ("name", Box::new(|| (abi.call)(null, s.as_ptr(), null, out))),
            (
                "module",
                Box::new(|| (abi.call)(n.as_ptr(), null, s.as_ptr(), out)),
            ),
            ("name", Box::new(|| (abi.reload)(null, 0, 0, out))),
            ("name", Box::new(|| (abi.close)(null, out))),
            ("out_json", Box::new(|| (abi.list)(std::ptr::null_mut()))),
        ];
        for (i, (param, f)) in cases.into_iter().enumerate() {
            assert_eq!(f(), NULL_ARGUMENT, "case {i}");
            let err = abi.err();
            assert!(
                err.contains(&format!("`{param}` is NULL")),
                "case {i}: {err}"
            );
            assert!((*out).is_null(), "out stays NULL on failure");
        }
        // optional pointers: NULL config = defaults, NULL out = result discarded
        assert_eq!((abi.create)(n.as_ptr(), null), OK, "{}", abi.err());
        assert_eq!(abi.exec("nulls", "def f():\n    return 'x'"), OK);
        assert_eq!(
            (abi.call)(
                n.as_ptr(),
                cs("json.dumps").as_ptr(),
                null,
                std::ptr::null_mut()
            ),
            PYTHON_EXCEPTION,
            "dumps() needs an argument"
        );
        assert_eq!(
            (abi.call)(
                n.as_ptr(),
                cs("os.getcwd").as_ptr(),
                null,
                std::ptr::null_mut()
            ),
            OK,
            "{}",
            abi.err()
        );
        assert_eq!(
            (abi.reload)(n.as_ptr(), 1, 0, std::ptr::null_mut()),
            OK,
            "{}",
            abi.err()
        );
        assert_eq!(
            (abi.close)(n.as_ptr(), std::ptr::null_mut()),
            OK,
            "{}",
            abi.err()
        );
        (abi.string_free)(std::ptr::null_mut()); // no-op
    }
}

#[test]
fn invalid_utf8_is_rejected_per_parameter() {
    let abi = &*ABI;
    let bad = CString::new(vec![b'a', 0xff, 0xfe]).unwrap();
    let n = cs("utf8");
    assert_eq!(abi.create("utf8", None), OK);
    let mut out: *mut c_char = std::ptr::null_mut();
    unsafe {
        let out = &mut out as *mut *mut c_char;
        let x = cs("utf8_x");
        let cases: Vec<ArgCase> = vec![
            (
                "name",
                Box::new(|| (abi.create)(bad.as_ptr(), std::ptr::null())),
            ),
            (
                "config_json",
                Box::new(|| (abi.create)(x.as_ptr(), bad.as_ptr())),
            ),
            ("name", Box::new(|| (abi.exec)(bad.as_ptr(), n.as_ptr()))),
            ("source", Box::new(|| (abi.exec)(n.as_ptr(), bad.as_ptr()))),
            ("name", Box::new(|| (abi.import)(bad.as_ptr(), n.as_ptr()))),
            (
                "module",
                Box::new(|| (abi.import)(n.as_ptr(), bad.as_ptr())),
            ),
            (
                "name",
                Box::new(|| (abi.call)(bad.as_ptr(), n.as_ptr(), n.as_ptr(), out)),
            ),
            (
                "module",
                Box::new(|| (abi.call)(n.as_ptr(), bad.as_ptr(), n.as_ptr(), out)),
            ),
            (
                "function",
                Box::new(|| (abi.call)(n.as_ptr(), n.as_ptr(), bad.as_ptr(), out)),
            ),
            ("name", Box::new(|| (abi.reload)(bad.as_ptr(), 0, 0, out))),
            ("name", Box::new(|| (abi.close)(bad.as_ptr(), out))),
        ];
        for (i, (param, f)) in cases.into_iter().enumerate() {
            assert_eq!(f(), INVALID_UTF8, "case {i}");
            let err = abi.err();
            assert!(
                err.contains(&format!(
                    "`{param}` is not valid UTF-8 (invalid byte at offset 1)"
                )),
                "case {i}: {err}"
            );
            assert!((*out).is_null(), "out stays NULL on failure");
        }
    }
    assert_eq!(abi.close("utf8").0, OK);
}

#[test]
fn unknown_and_closed_sessions() {
    let abi = &*ABI;
    let check_all = |name: &str| {
        assert_eq!(abi.exec(name, "pass"), NO_SUCH_SESSION, "exec");
        assert!(abi.err().contains("NoSuchSessionError"), "{}", abi.err());
        assert!(
            abi.err().contains(&format!("{name:?}").replace('"', "'")) || abi.err().contains(name),
            "{}",
            abi.err()
        );
        assert_eq!(abi.import(name, "json"), NO_SUCH_SESSION, "import");
        assert_eq!(
            abi.call(name, "os.getcwd", None),
            (NO_SUCH_SESSION, None),
            "call"
        );
        assert_eq!(
            abi.reload(name, false, false),
            (NO_SUCH_SESSION, None),
            "reload"
        );
        assert_eq!(
            abi.reload(name, true, true),
            (NO_SUCH_SESSION, None),
            "reload all"
        );
        assert_eq!(abi.close(name), (NO_SUCH_SESSION, None), "close");
    };
    check_all("never_created");
    check_all("");
    assert_eq!(abi.create("closed_one", None), OK);
    assert_eq!(abi.exec("closed_one", "x = 1"), OK);
    assert_eq!(abi.close("closed_one").0, OK);
    check_all("closed_one"); // calls after close
    assert!(!abi.names().contains(&"closed_one".to_string()));
    // the name is free again, for a fresh session
    assert_eq!(abi.create("closed_one", None), OK, "{}", abi.err());
    assert_eq!(
        abi.exec("closed_one", "x"),
        PYTHON_EXCEPTION,
        "fresh namespace"
    );
    assert_eq!(abi.close("closed_one").0, OK);
}

#[test]
fn create_config_errors_and_duplicates() {
    let abi = &*ABI;
    // The studio config's own parser: errors are `config_json:LINE:COL: key: message`.
    let cases: &[(&str, &str, &str)] = &[
        (
            "cfg_bad_json",
            "{not json",
            "config_json:1:2: invalid JSON: key must be a string",
        ),
        (
            "cfg_empty_json",
            "",
            "config_json:1:1: invalid JSON: EOF while parsing",
        ),
        (
            "cfg_null",
            "null",
            "config_json:1:1: expected an object, found null",
        ),
        (
            "cfg_unknown_key",
            r#"{"pathz": ["/x"]}"#,
            "config_json:1:2: pathz: unknown key",
        ),
        (
            "cfg_wrong_type",
            r#"{"paths": "/x"}"#,
            "paths: expected a list of strings",
        ),
        (
            "cfg_list_type",
            r#"{"keep_global": [1]}"#,
            "keep_global: expected a list of strings",
        ),
        (
            "cfg_startup",
            r#"{"startup": 1}"#,
            "startup: expected a string",
        ),
        ("cfg_env_obj", r#"{"env": []}"#, "env: expected an object"),
        (
            "cfg_env_type",
            r#"{"env": {"A": 1}}"#,
            "env.A: expected a string",
        ),
        (
            "cfg_not_object",
            "[1, 2]",
            "expected an object, found an array",
        ),
        (
            "cfg_bool",
            r#"{"inherit_env": "yes"}"#,
            "inherit_env: expected true or false",
        ),
        (
            "cfg_undefined_var",
            r#"{"paths": ["${SUBSESSION_TEST_UNDEFINED_VAR}/x"]}"#,
            "environment variable SUBSESSION_TEST_UNDEFINED_VAR is not set",
        ),
        (
            "cfg_unclosed_var",
            r#"{"paths": ["${HOME"]}"#,
            "unterminated ${",
        ),
        (
            "cfg_empty_path",
            r#"{"paths": [""]}"#,
            "paths: empty string",
        ),
        (
            "cfg_env_key",
            r#"{"env": {"A=B": "1"}}"#,
            "invalid environment variable name",
        ),
        ("bad name", "{}", "invalid session name"),
        ("", "{}", "invalid session name"),
    ];
    for (name, config, expect) in cases {
        assert_eq!(
            abi.create(name, Some(config)),
            INVALID_CONFIG,
            "{name}: {}",
            abi.err()
        );
        let err = abi.err();
        assert!(
            err.contains(expect),
            "{name}: expected {expect:?} in {err:?}"
        );
        assert!(
            !err.contains("Traceback"),
            "config errors are one line: {err}"
        );
        assert!(
            !abi.names().contains(&name.to_string()),
            "{name} must not exist"
        );
    }
    let long = "n".repeat(65);
    assert_eq!(abi.create(&long, None), INVALID_CONFIG);

    // defaults: NULL or "{}"
    assert_eq!(abi.create("cfg_null", None), OK, "{}", abi.err());
    assert_eq!(abi.create("cfg_obj", Some("{}")), OK, "{}", abi.err());
    assert_eq!(abi.create("cfg_obj", None), SESSION_EXISTS);
    assert!(abi.err().contains("SessionExistsError"), "{}", abi.err());
    assert!(abi.err().contains("cfg_obj"), "{}", abi.err());

    // every key, ${VAR} and ~ expansion
    let root = scratch("config_keys");
    write_module(
        &root,
        "cfg_startup_mod",
        "import os\nSEEN = os.environ.get('SUBSESSION_CFG_TEST')\n",
    );
    std::fs::create_dir_all(root.join("sub")).unwrap();
    py_run(&format!(
        "import os; os.environ['SUBSESSION_CFG_ROOT'] = {:?}",
        root.to_string_lossy()
    ));
    let config = serde_json::json!({
        "paths": ["${SUBSESSION_CFG_ROOT}", "~"],
        "env": {"SUBSESSION_CFG_TEST": "from ${SUBSESSION_CFG_ROOT}", "SUBSESSION_CFG_GONE": null},
        "keep_global": ["json", "xml.*"],
        "inherit_env": true,
        "inherit_paths": true,
        "startup": "cfg_startup_mod",
    });
    assert_eq!(
        abi.create("cfg_full", Some(&config.to_string())),
        OK,
        "{}",
        abi.err()
    );
    py_run(&format!(
        "import os, subsession\n\
         s = subsession.get('cfg_full')\n\
         assert s.paths == [{root:?}, os.path.expanduser('~')], s.paths\n\
         assert s.env == {{'SUBSESSION_CFG_GONE': None, 'SUBSESSION_CFG_TEST': 'from ' + {root:?}}}, s.env\n\
         assert s.keep_global == ['json', 'xml.*'], s.keep_global\n\
         assert s.modules['cfg_startup_mod'].SEEN == 'from ' + {root:?}\n\
         assert 'SUBSESSION_CFG_TEST' not in os.environ\n",
        root = root.to_string_lossy()
    ));
    let iso =
        serde_json::json!({"env": {"ONLY": "this"}, "inherit_env": false, "inherit_paths": false});
    assert_eq!(
        abi.create("cfg_isolated", Some(&iso.to_string())),
        OK,
        "{}",
        abi.err()
    );
    assert_eq!(
        abi.exec(
            "cfg_isolated",
            "import os\nassert dict(os.environ) == {'ONLY': 'this'}, dict(os.environ)"
        ),
        OK,
        "{}",
        abi.err()
    );

    // a failing startup module: error with traceback, and no session left behind
    let bad = serde_json::json!({"paths": [root], "startup": "cfg_missing_startup"});
    assert_eq!(
        abi.create("cfg_bad_startup", Some(&bad.to_string())),
        PYTHON_EXCEPTION
    );
    let err = abi.err();
    assert!(
        err.contains("startup module \"cfg_missing_startup\" failed"),
        "{err}"
    );
    assert!(err.contains("ModuleNotFoundError"), "{err}");
    assert!(!abi.names().contains(&"cfg_bad_startup".to_string()));
    assert_eq!(
        abi.create("cfg_bad_startup", None),
        OK,
        "the name is free: {}",
        abi.err()
    );

    for n in [
        "cfg_null",
        "cfg_obj",
        "cfg_full",
        "cfg_isolated",
        "cfg_bad_startup",
    ] {
        assert_eq!(abi.close(n).0, OK, "{n}: {}", abi.err());
    }
}

#[test]
fn python_exceptions_carry_tracebacks_and_leave_the_session_usable() {
    let abi = &*ABI;
    let root = scratch("exceptions");
    write_module(
        &root,
        "boom",
        "def inner():\n    return 1 / 0\n\ndef fail():\n    return inner()\n",
    );
    write_module(
        &root,
        "exc_helpers",
        "def nul():\n    return 'a\\x00b'\n\ndef surrogate():\n    return '\\udc80'\n",
    );
    assert_eq!(
        abi.create("exc", Some(&paths_config(&root.to_string_lossy()))),
        OK
    );

    let (rc, out) = abi.call("exc", "boom.fail", None);
    assert_eq!((rc, out), (PYTHON_EXCEPTION, None));
    let err = abi.err();
    assert!(
        err.starts_with("ZeroDivisionError: division by zero\n"),
        "one-line summary first: {err}"
    );
    assert!(err.contains("Traceback (most recent call last)"), "{err}");
    assert!(
        err.contains(&format!(
            "{}\", line 2, in inner",
            root.join("boom.py").display()
        )),
        "{err}"
    );

    assert_eq!(abi.exec("exc", "def f(:\n    pass"), PYTHON_EXCEPTION);
    assert!(abi.err().starts_with("SyntaxError"), "{}", abi.err());
    assert_eq!(abi.exec("exc", "raise KeyError('k1')"), PYTHON_EXCEPTION);
    assert!(abi.err().starts_with("KeyError: 'k1'"), "{}", abi.err());
    // BaseExceptions are reported too, they do not end the process
    assert_eq!(abi.exec("exc", "raise SystemExit(3)"), PYTHON_EXCEPTION);
    assert!(abi.err().starts_with("SystemExit: 3"), "{}", abi.err());
    assert_eq!(abi.exec("exc", "raise KeyboardInterrupt"), PYTHON_EXCEPTION);
    assert_eq!(abi.import("exc", "no_such_module_here"), PYTHON_EXCEPTION);
    assert!(
        abi.err().starts_with("ModuleNotFoundError"),
        "{}",
        abi.err()
    );
    assert_eq!(abi.import("exc", ""), PYTHON_EXCEPTION);
    assert_eq!(abi.call("exc", "boom", Some("missing")).0, PYTHON_EXCEPTION);
    assert!(abi.err().starts_with("AttributeError"), "{}", abi.err());
    assert_eq!(abi.call("exc", "boom", None).0, PYTHON_EXCEPTION);
    assert!(
        abi.err().contains("is not \"module.function\""),
        "{}",
        abi.err()
    );
    assert_eq!(abi.call("exc", "boom", Some("")).0, PYTHON_EXCEPTION);
    // a result C cannot carry
    assert_eq!(
        abi.call("exc", "exc_helpers.nul", None),
        (PYTHON_EXCEPTION, None)
    );
    assert!(abi.err().contains("NUL byte at offset 1"), "{}", abi.err());
    assert_eq!(
        abi.call("exc", "exc_helpers.surrogate", None),
        (PYTHON_EXCEPTION, None)
    );
    assert!(abi.err().contains("UnicodeEncodeError"), "{}", abi.err());

    // session errors raised by the session's own code are Python exceptions, not
    // statements about the session the call named
    assert_eq!(
        abi.exec("exc", "import subsession\nsubsession.get('exc_other')"),
        PYTHON_EXCEPTION
    );
    assert!(abi.err().starts_with("NoSuchSessionError"), "{}", abi.err());
    assert_eq!(
        abi.exec("exc", "import subsession\nsubsession.Session('exc')"),
        PYTHON_EXCEPTION
    );
    assert!(abi.err().starts_with("SessionExistsError"), "{}", abi.err());

    // still usable, and a success clears the message
    assert_eq!(abi.exec("exc", "ok = True"), OK);
    assert_eq!(abi.last_error(), None);
    assert_eq!(abi.close("exc").0, OK);
}

#[test]
fn reload_stale_all_and_deep() {
    let abi = &*ABI;
    let root = scratch("reload");
    write_module(&root, "rl_base", "def value():\n    return 1\n");
    write_module(
        &root,
        "rl_user",
        "import rl_base\ndef get():\n    return rl_base.value()\n",
    );
    write_module(&root, "rl_other", "X = 1\n");
    assert_eq!(
        abi.create("rl", Some(&paths_config(&root.to_string_lossy()))),
        OK
    );
    assert_eq!(abi.import("rl", "rl_user"), OK, "{}", abi.err());
    assert_eq!(abi.import("rl", "rl_other"), OK, "{}", abi.err());
    assert_eq!(
        abi.reload("rl", false, false),
        (OK, Some("[]".into())),
        "nothing stale"
    );

    write_module(&root, "rl_base", "def value():\n    return 2\n");
    let (rc, json) = abi.reload("rl", false, false);
    assert_eq!(rc, OK, "{}", abi.err());
    assert_eq!(
        json.as_deref(),
        Some(r#"["rl_base","rl_user"]"#),
        "dependencies first"
    );
    assert_eq!(abi.call("rl", "rl_user.get", None), (OK, Some("2".into())));

    let (rc, json) = abi.reload("rl", true, false);
    assert_eq!(rc, OK, "{}", abi.err());
    let mut names: Vec<String> = serde_json::from_str(&json.unwrap()).unwrap();
    names.sort();
    assert_eq!(names, ["rl_base", "rl_other", "rl_user"]);

    // deep: an old reference to the function runs the new code
    assert_eq!(
        abi.exec("rl", "import rl_base\nold_value = rl_base.value"),
        OK
    );
    write_module(&root, "rl_base", "def value():\n    return 3\n");
    let (rc, json) = abi.reload("rl", false, true);
    assert_eq!(rc, OK, "{}", abi.err());
    assert!(json.unwrap().contains("rl_base"));
    assert_eq!(
        abi.exec("rl", "assert old_value() == 3, old_value()"),
        OK,
        "{}",
        abi.err()
    );

    // a failing reload names file and line and keeps the old module
    write_module(&root, "rl_base", "def value(:\n    return 4\n");
    assert_eq!(abi.reload("rl", false, false), (PYTHON_EXCEPTION, None));
    let err = abi.err();
    assert!(
        err.contains("rl_base.py") && err.contains("line 1"),
        "{err}"
    );
    assert_eq!(abi.call("rl", "rl_user.get", None), (OK, Some("3".into())));
    assert_eq!(abi.close("rl").0, OK);
}

#[test]
fn close_reports_leaks_as_json() {
    let abi = &*ABI;
    let root = scratch("close");
    write_module(&root, "leaky_mod", "VALUE = 1\n");
    assert_eq!(
        abi.create("leaky", Some(&paths_config(&root.to_string_lossy()))),
        OK
    );
    assert_eq!(abi.import("leaky", "leaky_mod"), OK, "{}", abi.err());
    py_run(
        "import subsession, sys\n\
         sys.modules['__main__'].ffi_leak_holder = subsession.get('leaky').modules['leaky_mod']\n",
    );
    let (rc, json) = abi.close("leaky");
    assert_eq!(rc, OK, "{}", abi.err());
    py_run("import sys\ndel sys.modules['__main__'].ffi_leak_holder\n");
    let report: serde_json::Value = serde_json::from_str(&json.unwrap()).unwrap();
    assert_eq!(report["session"], "leaky");
    let holders = report["leaks"]["leaky_mod"]
        .as_array()
        .unwrap_or_else(|| panic!("leak reported: {report}"));
    assert!(!holders.is_empty(), "{report}");
}

#[test]
fn list_returns_named_sessions_in_creation_order() {
    let abi = &*ABI;
    assert_eq!(abi.create("list_1", None), OK);
    assert_eq!(abi.create("list_2", None), OK);
    py_run("import subsession, sys\nsys.modules['__main__'].ffi_anon = subsession.Session()\n");
    let names = abi.names();
    let ours: Vec<&String> = names.iter().filter(|n| n.starts_with("list_")).collect();
    assert_eq!(ours, ["list_1", "list_2"]);
    assert_eq!(abi.close("list_1").0, OK);
    assert!(!abi.names().contains(&"list_1".to_string()));
    assert_eq!(abi.close("list_2").0, OK);
    py_run("import sys\nsys.modules['__main__'].ffi_anon.close()\n");
}

#[test]
fn c_and_python_share_one_registry_even_across_library_copies() {
    let abi = &*ABI;
    // C -> Python
    assert_eq!(
        abi.create("shared_c", Some(r#"{"env": {"SHARED_FLAG": "1"}}"#)),
        OK
    );
    assert_eq!(abi.exec("shared_c", "from_c = 'yes'"), OK);
    py_run(
        "import subsession\n\
         s = subsession.get('shared_c')\n\
         assert s.env == {'SHARED_FLAG': '1'}, s.env\n\
         assert s.namespace['from_c'] == 'yes'\n\
         s.exec('from_python = 2')\n\
         subsession.Session('shared_py')\n",
    );
    // Python -> C
    assert_eq!(
        abi.exec("shared_c", "assert from_python == 2"),
        OK,
        "{}",
        abi.err()
    );
    assert_eq!(abi.exec("shared_py", "x = 1"), OK, "{}", abi.err());
    assert_eq!(abi.create("shared_py", None), SESSION_EXISTS);

    // A second copy of the binary (a copied file = its own Rust statics) still
    // reaches the same sessions, because every call goes through `import subsession`.
    let dir = scratch("copy");
    let copy_path = dir.join("libsubsession_copy.so");
    std::fs::copy(&abi.path, &copy_path).expect("copy cdylib");
    let copy = Abi::load_from(&copy_path);
    assert_eq!(
        copy.exec("shared_c", "assert from_c == 'yes'"),
        OK,
        "{}",
        copy.err()
    );
    assert_eq!(copy.create("shared_copy", None), OK, "{}", copy.err());
    assert_eq!(
        copy.create("shared_c", None),
        SESSION_EXISTS,
        "{}",
        copy.err()
    );
    assert_eq!(
        copy.exec("no_such", "pass"),
        NO_SUCH_SESSION,
        "exception classes resolved via Python"
    );
    assert_eq!(abi.exec("shared_copy", "y = 1"), OK, "{}", abi.err());
    py_run("import subsession\nsubsession.get('shared_copy')\n");
    let names = copy.names();
    for n in ["shared_c", "shared_py", "shared_copy"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    assert_eq!(copy.close("shared_copy").0, OK);
    assert_eq!(abi.close("shared_c").0, OK);
    assert_eq!(copy.close("shared_py").0, OK);
}

#[test]
fn eight_threads_call_concurrently() {
    let abi = &*ABI;
    let root = scratch("threads");
    let versions: Vec<String> = (0..8).map(|i| format!("{i}.0")).collect();
    let vrefs: Vec<&str> = versions.iter().map(String::as_str).collect();
    let dirs = versioned(&root, "thrmod", &vrefs);
    assert_eq!(abi.create("thr_shared", Some(&paths_config(&dirs[0]))), OK);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = dirs
        .into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let barrier = barrier.clone();
            // std threads: Python has never seen them before their first call
            std::thread::spawn(move || {
                let abi = &*ABI;
                let name = format!("thr_{i}");
                barrier.wait();
                assert_eq!(
                    abi.create(&name, Some(&paths_config(&dir))),
                    OK,
                    "{}",
                    abi.err()
                );
                for j in 0..20 {
                    let (rc, out) = abi.call(&name, "thrmod.version", None);
                    assert_eq!(
                        (rc, out.as_deref()),
                        (OK, Some(format!("{i}.0").as_str())),
                        "{}",
                        abi.err()
                    );
                    // time.sleep drops the GIL inside Python: real interleaving
                    assert_eq!(
                        abi.exec(&name, &format!("import time; time.sleep(0.0005); n = {j}")),
                        OK,
                        "{}",
                        abi.err()
                    );
                    assert_eq!(
                        abi.call("thr_shared", "thrmod.version", None),
                        (OK, Some("0.0".into()))
                    );
                    assert_eq!(abi.import(&name, "thrmod_helper"), OK, "{}", abi.err());
                    // last_error is per thread
                    assert_eq!(
                        abi.exec(&name, &format!("raise ValueError('t{i}-{j}')")),
                        PYTHON_EXCEPTION
                    );
                    assert!(
                        abi.err().starts_with(&format!("ValueError: t{i}-{j}")),
                        "{}",
                        abi.err()
                    );
                    assert!(abi.names().contains(&name));
                }
                assert_eq!(abi.reload(&name, true, false).0, OK, "{}", abi.err());
                assert_eq!(abi.exec(&name, "assert n == 19"), OK, "{}", abi.err());
                let (rc, _) = abi.close(&name);
                assert_eq!(rc, OK, "{}", abi.err());
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(abi.close("thr_shared").0, OK);
    assert_gil_free();
}

#[test]
fn caller_already_attached() {
    let abi = &*ABI;
    // A host thread that already holds the GIL (e.g. a C++ plug-in called from
    // Python): the library's attach nests (PyGILState_Ensure is re-entrant).
    Python::attach(|py| {
        assert_eq!(abi.create("attached", None), OK, "{}", abi.err());
        assert_eq!(
            abi.exec(
                "attached",
                "import sys; sys.modules['__main__'].ffi_marker = 7"
            ),
            OK
        );
        let v: i32 = py
            .import("__main__")
            .and_then(|m| m.getattr("ffi_marker"))
            .and_then(|v| v.extract())
            .expect("marker");
        assert_eq!(v, 7);
        assert_eq!(abi.close("attached").0, OK);
    });
    assert_gil_free();
}

#[test]
fn empty_and_huge_strings() {
    let abi = &*ABI;
    let huge = "x".repeat(4 << 20);
    assert_eq!(abi.exec(&huge, "pass"), NO_SUCH_SESSION);
    assert!(abi.err().len() < 64 << 20);
    assert_eq!(abi.create(&huge, None), INVALID_CONFIG);
    let root = scratch("huge");
    write_module(
        &root,
        "huge_result",
        "def get():\n    return 'y' * (8 << 20)\n",
    );
    assert_eq!(
        abi.create("huge", Some(&paths_config(&root.to_string_lossy()))),
        OK
    );
    assert_eq!(abi.exec("huge", ""), OK, "empty source");
    let source = format!("big = len({:?})\nassert big == {}", huge, huge.len());
    assert_eq!(abi.exec("huge", &source), OK, "{}", abi.err());
    assert_eq!(abi.import("huge", &huge), PYTHON_EXCEPTION);
    assert_eq!(abi.call("huge", &huge, None).0, PYTHON_EXCEPTION);
    assert_eq!(abi.call("huge", "os", Some(&huge)).0, PYTHON_EXCEPTION);
    let (rc, out) = abi.call("huge", "huge_result.get", None);
    assert_eq!(rc, OK, "{}", abi.err());
    assert_eq!(out.map(|s| s.len()), Some(8 << 20));
    let padded = format!("{{\"paths\": []{}}}", " ".repeat(1 << 20));
    assert_eq!(abi.create("huge_cfg", Some(&padded)), OK, "{}", abi.err());
    assert_eq!(abi.close("huge_cfg").0, OK);
    assert_eq!(abi.close("huge").0, OK);
}

#[test]
fn panics_become_a_result_code() {
    let abi = &*ABI;
    let Some(test_panic) = abi.test_panic else {
        if cfg!(feature = "ffi-test-hooks") {
            panic!("subsession_test_panic missing from a ffi-test-hooks build");
        }
        eprintln!("skipped: build with --features ffi-test-hooks to test the panic boundary");
        return;
    };
    for attached in [0, 1] {
        assert_eq!(unsafe { test_panic(attached) }, PANIC);
        let err = abi.err();
        assert!(
            err.contains("Rust panic") && err.contains("subsession_test_panic"),
            "{err}"
        );
        assert_gil_free(); // unwinding released the GIL
    }
    assert_eq!(abi.create("after_panic", None), OK, "{}", abi.err());
    assert_eq!(abi.close("after_panic").0, OK);
}
