//! In-place ("deep") reload and the unload leak report.
//!
//! A deep reload keeps the identity of the module's functions and classes and gives
//! them the new code, so whatever still holds them (a Qt signal, an open window's
//! instances, `from m import f` in another module) runs new code on its next call.
//! It only visits the module's own globals and the classes defined there: its cost
//! does not grow with the rest of the heap.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyType};

fn is_function(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .name()
        .is_ok_and(|n| n.to_cow().is_ok_and(|n| n == "function"))
        && obj.hasattr(intern!(py, "__code__")).unwrap_or(false)
}

/// Moves `new`'s code and metadata into `old`. False when the closures differ in
/// shape, in which case `old` keeps its code.
fn update_function(
    py: Python<'_>,
    old: &Bound<'_, PyAny>,
    new: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let new_code = new.getattr(intern!(py, "__code__"))?;
    let old_cells = old.getattr(intern!(py, "__closure__"))?;
    let old_len = if old_cells.is_none() {
        0
    } else {
        old_cells.len()?
    };
    if new_code.getattr(intern!(py, "co_freevars"))?.len()? != old_len {
        return Ok(false);
    }
    old.setattr(intern!(py, "__code__"), new_code)?;
    for attr in [
        "__defaults__",
        "__kwdefaults__",
        "__doc__",
        "__annotations__",
    ] {
        if let Ok(v) = new.getattr(attr) {
            old.setattr(attr, v)?;
        }
    }
    let old_dict = old.getattr(intern!(py, "__dict__"))?;
    old_dict.call_method1(
        intern!(py, "update"),
        (new.getattr(intern!(py, "__dict__"))?,),
    )?;
    Ok(true)
}

/// Updates a class attribute in place where identity matters (functions, and the
/// functions behind classmethod/staticmethod); otherwise the new value replaces it.
fn update_member(
    py: Python<'_>,
    class: &Bound<'_, PyAny>,
    name: &str,
    old: Option<&Bound<'_, PyAny>>,
    new: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Some(old) = old {
        if is_function(py, old) && is_function(py, new) && update_function(py, old, new)? {
            return Ok(());
        }
        let wrapper = |o: &Bound<'_, PyAny>| {
            o.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        };
        let kind = wrapper(old);
        if (kind == "classmethod" || kind == "staticmethod") && kind == wrapper(new) {
            let old_fn = old.getattr(intern!(py, "__func__"))?;
            let new_fn = new.getattr(intern!(py, "__func__"))?;
            if update_function(py, &old_fn, &new_fn)? {
                return Ok(());
            }
        }
    }
    class.setattr(name, new)
}

/// Why a class cannot be updated in place, if it cannot.
fn refusal(
    py: Python<'_>,
    old: &Bound<'_, PyType>,
    new: &Bound<'_, PyType>,
) -> PyResult<Option<String>> {
    let enum_meta = py.import("enum")?.getattr("EnumMeta")?;
    if old.get_type().is_subclass(enum_meta.cast::<PyType>()?)? {
        return Ok(Some(
            "an Enum (its members are instances created at class creation)".into(),
        ));
    }
    let slots = |t: &Bound<'_, PyType>| -> PyResult<Option<String>> {
        Ok(t.getattr(intern!(py, "__dict__"))?
            .get_item("__slots__")
            .ok()
            .map(|s| s.repr().map(|r| r.to_string()).unwrap_or_default()))
    };
    if slots(old)? != slots(new)? {
        return Ok(Some(
            "a class whose __slots__ changed (instance layout differs)".into(),
        ));
    }
    let heap = old.getattr(intern!(py, "__flags__"))?.extract::<u64>()? & (1 << 9) != 0;
    if !heap {
        return Ok(Some("a C-extension class (its type is immutable)".into()));
    }
    let bases = |t: &Bound<'_, PyType>| {
        t.getattr(intern!(py, "__bases__"))
            .and_then(|b| b.repr().map(|r| r.to_string()))
    };
    if bases(old)? != bases(new)? {
        return Ok(Some("a class whose base classes changed".into()));
    }
    Ok(None)
}

/// Makes the objects of the previous version run the new code in place.
/// `before` holds the module's globals from before the reload.
pub fn update_in_place(
    py: Python<'_>,
    before: &Bound<'_, PyDict>,
    module: &Bound<'_, PyModule>,
) -> PyResult<Vec<String>> {
    let globals = module.dict();
    let module_name = globals.get_item("__name__")?;
    let mut refused = Vec::new();
    for (name, old) in before.iter() {
        let Some(new) = globals.get_item(&name)? else {
            continue;
        };
        if old.is(&new) {
            continue;
        }
        let defined_here = |o: &Bound<'_, PyAny>| -> bool {
            match (&module_name, o.getattr(intern!(py, "__module__"))) {
                (Some(m), Ok(om)) => om.eq(m).unwrap_or(false),
                _ => false,
            }
        };
        if is_function(py, &old) && is_function(py, &new) && defined_here(&old) {
            if update_function(py, &old, &new)? {
                globals.set_item(&name, &old)?;
            }
            continue;
        }
        let (Ok(old_cls), Ok(new_cls)) = (old.cast::<PyType>(), new.cast::<PyType>()) else {
            continue;
        };
        if !defined_here(&old) {
            continue;
        }
        if let Some(why) = refusal(py, old_cls, new_cls)? {
            let message = format!(
                "{}.{}: not updated in place: {why}; existing instances keep the old class",
                module_name
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                name
            );
            log::warn!(target: "subsession", "deep reload: {message}");
            refused.push(message);
            continue;
        }
        update_class(py, old_cls, new_cls)?;
        globals.set_item(&name, &old)?;
    }
    Ok(refused)
}

fn update_class(py: Python<'_>, old: &Bound<'_, PyType>, new: &Bound<'_, PyType>) -> PyResult<()> {
    const FIXED: &[&str] = &[
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__slots__",
    ];
    let old_dict = old.getattr(intern!(py, "__dict__"))?;
    let new_dict = new.getattr(intern!(py, "__dict__"))?;
    let new_keys: Vec<String> = new_dict
        .call_method0("keys")?
        .try_iter()?
        .flatten()
        .filter_map(|k| k.extract().ok())
        .collect();
    let old_keys: Vec<String> = old_dict
        .call_method0("keys")?
        .try_iter()?
        .flatten()
        .filter_map(|k| k.extract().ok())
        .collect();
    for key in &old_keys {
        if !new_keys.contains(key) && !FIXED.contains(&key.as_str()) {
            old.delattr(key.as_str())?;
        }
    }
    for key in &new_keys {
        if FIXED.contains(&key.as_str()) {
            continue;
        }
        let new_value = new_dict.get_item(key)?;
        let old_value = old_dict.get_item(key).ok();
        update_member(py, old.as_any(), key, old_value.as_ref(), &new_value)?;
    }
    Ok(())
}
