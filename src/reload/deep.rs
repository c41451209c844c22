//! In-place ("deep") reload.
//!
//! A deep reload keeps the identity of the module's functions and classes and gives
//! them the new code, so whatever still holds them (a Qt signal, an open window's
//! instances, `from m import f` in another module) runs new code on its next call.
//! It only visits the module's own globals and the classes defined there: its cost
//! does not grow with the rest of the heap. Every change is logged in an [`Undo`], so
//! a batch that fails later can put every object back as it was.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFrozenSet, PyList, PyModule, PySet, PyTuple, PyType};

use crate::base::names::type_name;

/// Containers larger than this are not searched for fresh enum members.
const MAX_CONTAINER: usize = 10_000;

/// What a deep reload changed, in order, to roll back a failed batch.
#[derive(Default)]
pub(crate) struct Undo<'py> {
    steps: Vec<Step<'py>>,
    /// Enum members the new code created, by address, with the member that kept the
    /// identity in their place (the fresh one is held so the address stays its own).
    /// Whatever the new code bound to a fresh member (`FAVOURITE = Color.RED`, a
    /// class attribute, a default argument) is rebound to the kept one.
    members: std::collections::HashMap<usize, (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
}

enum Step<'py> {
    /// `setattr(obj, name, old)`, or `delattr` when there was none.
    Attr(Bound<'py, PyAny>, String, Option<Bound<'py, PyAny>>),
    /// A closure cell's previous contents (None: it was empty).
    Cell(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>),
    /// `type.__setattr__(cls, name, old)` (bypassing a metaclass's guard), or
    /// `type.__delattr__` when there was none.
    TypeAttr(Bound<'py, PyAny>, String, Option<Bound<'py, PyAny>>),
}

impl<'py> Undo<'py> {
    fn set(
        &mut self,
        obj: &Bound<'py, PyAny>,
        name: &str,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let previous = own_attr(obj, name);
        obj.setattr(name, value)?;
        self.steps
            .push(Step::Attr(obj.clone(), name.to_owned(), previous));
        Ok(())
    }

    fn delete(&mut self, obj: &Bound<'py, PyAny>, name: &str) -> PyResult<()> {
        let previous = own_attr(obj, name);
        obj.delattr(name)?;
        self.steps
            .push(Step::Attr(obj.clone(), name.to_owned(), previous));
        Ok(())
    }

    /// The member that kept its identity for a fresh enum member, else `value` itself.
    fn kept(&self, value: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        match self.members.get(&(value.as_ptr() as usize)) {
            Some((_, kept)) => kept.clone(),
            None => value.clone(),
        }
    }

    /// `value` with fresh enum members swapped for kept ones, also inside plain
    /// containers a few levels down (`PAIR = (Color.RED, Color.GREEN)`, `LABELS =
    /// {Color.RED: "Red"}`: a fresh key would never match the kept member). Lists,
    /// dicts and sets are changed in place; a tuple or frozenset that held a fresh
    /// member is rebuilt (Some: bind the returned value instead).
    fn kept_in(&self, value: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.members.is_empty() {
            return Ok(None);
        }
        self.kept_deep(value, 3)
    }

    fn kept_deep(
        &self,
        value: &Bound<'py, PyAny>,
        depth: u8,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = value.py();
        let kept = self.kept(value);
        if !kept.is(value) {
            return Ok(Some(kept));
        }
        // Bounded like the rest of a deep reload: a few levels into plain containers of
        // a reasonable size, never a walk of a big data table.
        let plain = value.is_exact_instance_of::<PyTuple>()
            || value.is_exact_instance_of::<PyFrozenSet>()
            || value.is_exact_instance_of::<PyList>()
            || value.is_exact_instance_of::<PyDict>()
            || value.is_exact_instance_of::<PySet>();
        if depth == 0 || !plain || value.len().is_ok_and(|n| n > MAX_CONTAINER) {
            return Ok(None);
        }
        let swap = |v: &Bound<'py, PyAny>| -> PyResult<(Bound<'py, PyAny>, bool)> {
            Ok(match self.kept_deep(v, depth - 1)? {
                Some(k) => (k, true),
                None => (v.clone(), false),
            })
        };
        if value.is_exact_instance_of::<PyTuple>() || value.is_exact_instance_of::<PyFrozenSet>() {
            let mut changed = false;
            let mut items = Vec::new();
            for item in value.try_iter()? {
                let (item, swapped) = swap(&item?)?;
                changed |= swapped;
                items.push(item);
            }
            if !changed {
                return Ok(None);
            }
            return Ok(Some(if value.is_exact_instance_of::<PyTuple>() {
                PyTuple::new(py, items)?.into_any()
            } else {
                PyFrozenSet::new(py, &items)?.into_any()
            }));
        }
        if let Ok(list) = value.cast_exact::<PyList>() {
            for (i, item) in list.iter().enumerate() {
                if let (item, true) = swap(&item)? {
                    list.set_item(i, item)?;
                }
            }
        } else if let Ok(dict) = value.cast_exact::<PyDict>() {
            let mut changes = Vec::new();
            for (k, v) in dict.iter() {
                let (nk, key_swapped) = swap(&k)?;
                let (nv, value_swapped) = swap(&v)?;
                if key_swapped || value_swapped {
                    changes.push((k, nk, nv, key_swapped));
                }
            }
            for (k, nk, nv, key_swapped) in changes {
                if key_swapped {
                    dict.del_item(&k)?;
                }
                dict.set_item(nk, nv)?;
            }
        } else if let Ok(set) = value.cast_exact::<PySet>() {
            let mut changes = Vec::new();
            for item in set.iter() {
                if let (kept, true) = swap(&item)? {
                    changes.push((item, kept));
                }
            }
            for (item, kept) in changes {
                set.discard(item)?;
                set.add(kept)?;
            }
        }
        Ok(None)
    }

    fn set_cell(&mut self, cell: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = cell.py();
        let previous = cell.getattr(intern!(py, "cell_contents")).ok();
        cell.setattr(intern!(py, "cell_contents"), value)?;
        self.steps.push(Step::Cell(cell.clone(), previous));
        Ok(())
    }

    /// Puts everything back, newest first. Best effort: an object that refuses keeps
    /// its new state, the rest is still restored.
    pub fn rollback(self) {
        for step in self.steps.into_iter().rev() {
            let _ = match step {
                Step::Attr(obj, name, Some(old)) => obj.setattr(name.as_str(), old),
                Step::Attr(obj, name, None) => obj.delattr(name.as_str()),
                Step::Cell(cell, Some(old)) => cell.setattr("cell_contents", old),
                Step::Cell(cell, None) => cell.delattr("cell_contents"),
                Step::TypeAttr(cls, name, old) => {
                    let py = cls.py();
                    let base = py.get_type::<PyType>();
                    match old {
                        Some(old) => base
                            .getattr("__setattr__")
                            .and_then(|f| f.call1((&cls, name.as_str(), old)).map(drop)),
                        None => base
                            .getattr("__delattr__")
                            .and_then(|f| f.call1((&cls, name.as_str())).map(drop)),
                    }
                }
            };
        }
    }
}

/// The attribute as the object itself holds it (a class's own dict entry, not an
/// inherited one), for exact restoration.
fn own_attr<'py>(obj: &Bound<'py, PyAny>, name: &str) -> Option<Bound<'py, PyAny>> {
    if obj.is_instance_of::<PyType>() {
        return obj
            .getattr(intern!(obj.py(), "__dict__"))
            .ok()?
            .get_item(name)
            .ok();
    }
    obj.getattr(name).ok()
}

fn is_function(obj: &Bound<'_, PyAny>) -> bool {
    type_name(obj) == "function" && obj.hasattr(intern!(obj.py(), "__code__")).unwrap_or(false)
}

fn freevars<'py>(func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    func.getattr(intern!(func.py(), "__code__"))?
        .getattr(intern!(func.py(), "co_freevars"))
}

fn cells<'py>(func: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let closure = func.getattr(intern!(func.py(), "__closure__"))?;
    if closure.is_none() {
        return Ok(Vec::new());
    }
    Ok(closure.try_iter()?.flatten().collect())
}

/// Points a function's `__class__` cell (what `super()` uses) at `class`.
fn bind_class_cell<'py>(
    undo: &mut Undo<'py>,
    func: &Bound<'py, PyAny>,
    class: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let names: Vec<String> = freevars(func)?.extract()?;
    if let Some(i) = names.iter().position(|n| n == "__class__") {
        if let Some(cell) = cells(func)?.get(i) {
            undo.set_cell(cell, class)?;
        }
    }
    Ok(())
}

/// Moves `new`'s code, defaults, closure values and metadata into `old`. False when
/// the closures differ in shape (other free variables), in which case `old` is left
/// alone. A `__class__` cell keeps pointing at the old class (`super()` works).
fn update_function<'py>(
    undo: &mut Undo<'py>,
    old: &Bound<'py, PyAny>,
    new: &Bound<'py, PyAny>,
) -> PyResult<bool> {
    let py = old.py();
    if !freevars(old)?.eq(freevars(new)?)? {
        return Ok(false);
    }
    let names: Vec<String> = freevars(new)?.extract()?;
    for ((name, old_cell), new_cell) in names.iter().zip(cells(old)?).zip(cells(new)?) {
        if name == "__class__" {
            continue;
        }
        if let Ok(value) = new_cell.getattr(intern!(py, "cell_contents")) {
            undo.set_cell(&old_cell, &value)?;
        }
    }
    undo.set(old, "__code__", &new.getattr(intern!(py, "__code__"))?)?;
    for attr in [
        "__defaults__",
        "__kwdefaults__",
        "__doc__",
        "__annotations__",
    ] {
        if let Ok(v) = new.getattr(attr) {
            let v = match attr {
                "__defaults__" | "__kwdefaults__" => undo.kept_in(&v)?.unwrap_or(v),
                _ => v,
            };
            undo.set(old, attr, &v)?;
        }
    }
    let merged = old
        .getattr(intern!(py, "__dict__"))?
        .cast_into::<PyDict>()?
        .copy()?;
    merged.update(
        new.getattr(intern!(py, "__dict__"))?
            .cast::<PyDict>()?
            .as_mapping(),
    )?;
    undo.set(old, "__dict__", merged.as_any())?;
    Ok(true)
}

/// Updates a class attribute in place where identity matters (functions, and the
/// functions behind classmethod/staticmethod); otherwise the new value replaces it.
fn update_member<'py>(
    undo: &mut Undo<'py>,
    class: &Bound<'py, PyType>,
    name: &str,
    old: Option<&Bound<'py, PyAny>>,
    new: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let py = class.py();
    if let Some(old) = old {
        if is_function(old) && is_function(new) && update_function(undo, old, new)? {
            return Ok(());
        }
        let kind = type_name(old);
        if (kind == "classmethod" || kind == "staticmethod") && kind == type_name(new) {
            let old_fn = old.getattr(intern!(py, "__func__"))?;
            let new_fn = new.getattr(intern!(py, "__func__"))?;
            if update_function(undo, &old_fn, &new_fn)? {
                return Ok(());
            }
        }
    }
    // Replaced: a new function that uses super() must see the old class.
    let func = match type_name(new).as_str() {
        "function" => Some(new.clone()),
        "classmethod" | "staticmethod" => new.getattr(intern!(py, "__func__")).ok(),
        _ => None,
    };
    if let Some(func) = func.filter(is_function) {
        bind_class_cell(undo, &func, class.as_any())?;
    }
    let new = undo.kept_in(new)?.unwrap_or_else(|| new.clone());
    undo.set(class.as_any(), name, &new)
}

fn is_enum(class: &Bound<'_, PyType>) -> PyResult<bool> {
    let enum_meta = class.py().import("enum")?.getattr("EnumMeta")?;
    class.get_type().is_subclass(enum_meta.cast::<PyType>()?)
}

/// Enum bookkeeping that is rebuilt, not copied: members and the maps that find them.
const ENUM_OWN: &[&str] = &[
    "_member_map_",
    "_member_names_",
    "_value2member_map_",
    "_unhashable_values_",
    "_member_type_",
    "_new_member_",
    "_use_args_",
    "_value_repr_",
    "__new__",
];

/// Updates an Enum in place (docs/contract.md §5): members keep their identity
/// (`Color.RED is old_red`) and take the new values and attributes, added members
/// appear (re-classed to the old class), removed ones go, methods are updated like any
/// class's.
fn update_enum<'py>(
    undo: &mut Undo<'py>,
    old: &Bound<'py, PyType>,
    new: &Bound<'py, PyType>,
) -> PyResult<()> {
    let py = old.py();
    let type_setattr = py
        .get_type::<PyType>()
        .getattr(intern!(py, "__setattr__"))?;
    let type_delattr = py
        .get_type::<PyType>()
        .getattr(intern!(py, "__delattr__"))?;
    let old_map = old
        .getattr(intern!(py, "_member_map_"))?
        .cast_into::<PyDict>()?;
    let new_map = new
        .getattr(intern!(py, "_member_map_"))?
        .cast_into::<PyDict>()?;
    let old_dict = old.getattr(intern!(py, "__dict__"))?;
    let new_dict = new.getattr(intern!(py, "__dict__"))?;
    let map = PyDict::new(py);
    let by_value = PyDict::new(py);
    // new member -> the member that keeps its identity
    let mut kept: std::collections::HashMap<usize, Bound<'py, PyAny>> =
        std::collections::HashMap::new();
    for (name, fresh) in new_map.iter() {
        let member = match kept.get(&(fresh.as_ptr() as usize)) {
            Some(m) => m.clone(), // an alias of a member already placed
            None => {
                // A member of a mixed-in type (IntEnum, StrEnum) IS its value: one whose
                // value changed cannot change in place and is replaced.
                let data_type = !new
                    .getattr(intern!(py, "_member_type_"))?
                    .is(py.get_type::<pyo3::types::PyAny>().as_any());
                let same_value = |a: &Bound<'py, PyAny>| -> bool {
                    match (
                        a.getattr(intern!(py, "_value_")),
                        fresh.getattr(intern!(py, "_value_")),
                    ) {
                        (Ok(x), Ok(y)) => x.eq(y).unwrap_or(false),
                        _ => false,
                    }
                };
                let member = match old_map.get_item(&name)? {
                    Some(old_member)
                        if old_member.get_type().is(old)
                            && (!data_type || same_value(&old_member)) =>
                    {
                        let attrs = fresh
                            .getattr(intern!(py, "__dict__"))?
                            .cast_into::<PyDict>()?;
                        for (k, v) in attrs.iter() {
                            let k: String = k.extract()?;
                            if k != "__objclass__" {
                                undo.set(&old_member, &k, &v)?;
                            }
                        }
                        old_member
                    }
                    _ => {
                        undo.set(&fresh, "__class__", old.as_any())?;
                        if fresh.hasattr(intern!(py, "__objclass__"))? {
                            undo.set(&fresh, "__objclass__", old.as_any())?;
                        }
                        fresh.clone()
                    }
                };
                kept.insert(fresh.as_ptr() as usize, member.clone());
                undo.members
                    .insert(fresh.as_ptr() as usize, (fresh.clone(), member.clone()));
                member
            }
        };
        map.set_item(&name, &member)?;
        if let Ok(value) = member.getattr(intern!(py, "_value_")) {
            if by_value.get_item(&value).is_ok_and(|v| v.is_none()) {
                let _ = by_value.set_item(&value, &member);
            }
        }
        // Python 3.11+ also keeps members in the class dict.
        if new_dict.get_item(&name).is_ok() {
            let previous = old_dict.get_item(&name).ok();
            type_setattr.call1((old, &name, &member))?;
            undo.steps.push(Step::TypeAttr(
                old.clone().into_any(),
                name.extract()?,
                previous,
            ));
        }
    }
    for (name, _) in old_map.iter() {
        if !map.contains(&name)? && old_dict.get_item(&name).is_ok() {
            let previous = old_dict.get_item(&name).ok();
            type_delattr.call1((old, &name))?;
            undo.steps.push(Step::TypeAttr(
                old.clone().into_any(),
                name.extract()?,
                previous,
            ));
        }
    }
    let names: Vec<Bound<'py, PyAny>> = new
        .getattr(intern!(py, "_member_names_"))?
        .try_iter()?
        .flatten()
        .collect();
    undo.set(old.as_any(), "_member_map_", map.as_any())?;
    undo.set(
        old.as_any(),
        "_member_names_",
        pyo3::types::PyList::new(py, names)?.as_any(),
    )?;
    undo.set(old.as_any(), "_value2member_map_", by_value.as_any())?;
    // Methods, properties and the rest of the class body, like any class.
    let keys: Vec<String> = new_dict
        .call_method0("keys")?
        .try_iter()?
        .flatten()
        .filter_map(|k| k.extract().ok())
        .collect();
    for key in keys {
        if ENUM_OWN.contains(&key.as_str())
            || new_map.contains(&key)?
            || matches!(
                key.as_str(),
                "__dict__" | "__weakref__" | "__module__" | "__qualname__" | "__doc__"
            )
        {
            continue;
        }
        let new_value = new_dict.get_item(&key)?;
        let old_value = old_dict.get_item(&key).ok();
        update_member(undo, old, &key, old_value.as_ref(), &new_value)?;
    }
    Ok(())
}

/// Why a class cannot be updated in place, if it cannot.
fn refusal(old: &Bound<'_, PyType>, new: &Bound<'_, PyType>) -> PyResult<Option<String>> {
    let py = old.py();
    if is_enum(old)? || is_enum(new)? {
        return Ok(Some(
            "an Enum whose kind changed (Enum, Flag, IntEnum...), or a class that became one"
                .into(),
        ));
    }
    let heap = old.getattr(intern!(py, "__flags__"))?.extract::<u64>()? & (1 << 9) != 0;
    if !heap {
        return Ok(Some("a C-extension class (its type is immutable)".into()));
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
    let bases = |t: &Bound<'_, PyType>| -> PyResult<Vec<String>> {
        t.getattr(intern!(py, "__bases__"))?
            .cast_into::<PyTuple>()?
            .iter()
            .map(|b| {
                let module: String = b.getattr(intern!(py, "__module__"))?.extract()?;
                let name: String = b.getattr(intern!(py, "__qualname__"))?.extract()?;
                Ok(format!("{module}.{name}"))
            })
            .collect()
    };
    if bases(old)? != bases(new)? {
        return Ok(Some("a class whose base classes changed".into()));
    }
    Ok(None)
}

/// Makes the objects of the previous version run the new code in place.
/// `before` holds the module's globals from before the reload. Returns the classes it
/// refused to update, each with the reason (also logged as a WARNING).
///
/// `bodies` is what the previous version's class bodies defined
/// (`imports::record::class_bodies`): a class loses only those of its attributes the
/// new body no longer defines, never one a host attached after the body ran. Without
/// a record for a class, it loses every attribute the new body does not define.
pub(crate) fn update_in_place<'py>(
    undo: &mut Undo<'py>,
    before: &Bound<'py, PyDict>,
    module: &Bound<'py, PyModule>,
    bodies: Option<&Bound<'py, PyDict>>,
) -> PyResult<Vec<String>> {
    let py = module.py();
    let globals = module.dict();
    let module_name = globals.get_item("__name__")?;
    let defined_here = |o: &Bound<'_, PyAny>| -> bool {
        match (&module_name, o.getattr(intern!(py, "__module__"))) {
            (Some(m), Ok(om)) => om.eq(m).unwrap_or(false),
            _ => false,
        }
    };
    let mut refused = Vec::new();
    // new class -> the old class that took over its identity
    let mut replaced: std::collections::HashMap<usize, Bound<'py, PyAny>> =
        std::collections::HashMap::new();
    // Enums first: what the rest of the new code bound to their fresh members is then
    // rebound to the members that kept their identity.
    for (name, old) in before.iter() {
        let Some(new) = globals.get_item(&name)? else {
            continue;
        };
        if old.is(&new) || !defined_here(&old) {
            continue;
        }
        let (Ok(old_cls), Ok(new_cls)) = (old.cast::<PyType>(), new.cast::<PyType>()) else {
            continue;
        };
        if is_enum(old_cls)? && is_enum(new_cls)? && old_cls.get_type().is(new_cls.get_type()) {
            update_enum(undo, old_cls, new_cls)?;
            globals.set_item(&name, &old)?;
            replaced.insert(new.as_ptr() as usize, old.clone());
        }
    }
    if !undo.members.is_empty() {
        // `FAVOURITE = Color.RED`: the global holds the old member again, and so do
        // `from .colors import FAVOURITE` importers reloaded after this module.
        for (name, value) in globals.iter() {
            if let Some(kept) = undo.kept_in(&value)? {
                globals.set_item(name, kept)?;
            }
        }
    }
    for (name, old) in before.iter() {
        let Some(new) = globals.get_item(&name)? else {
            continue;
        };
        if old.is(&new) || !defined_here(&old) {
            continue;
        }
        if is_function(&old) && is_function(&new) {
            if update_function(undo, &old, &new)? {
                globals.set_item(&name, &old)?;
            }
            continue;
        }
        let (Ok(old_cls), Ok(new_cls)) = (old.cast::<PyType>(), new.cast::<PyType>()) else {
            continue;
        };
        if let Some(why) = refusal(old_cls, new_cls)? {
            // Reports speak real names: `toolA.ui`, not the session's qualified one.
            let qualified = module_name
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let label = match qualified.split_once('.') {
                Some((head, real)) if head.starts_with(crate::base::names::PREFIX) => {
                    real.to_owned()
                }
                _ => qualified.clone(),
            };
            let message = format!(
                "{label}.{name}: not updated in place: {why}; existing instances keep the old class"
            );
            log::warn!(target: "subsession", "deep reload: {message}");
            refused.push(message);
            continue;
        }
        update_class(
            undo,
            old_cls,
            new_cls,
            body_of(bodies, &name, &old)?.as_ref(),
        )?;
        globals.set_item(&name, &old)?;
        replaced.insert(new.as_ptr() as usize, old.clone());
    }
    // Classes created anew (refused or added) that derive from updated ones: point
    // their bases at the surviving classes, so isinstance keeps one hierarchy.
    if !replaced.is_empty() {
        for (_, value) in globals.iter() {
            let Ok(class) = value.cast::<PyType>() else {
                continue;
            };
            if !defined_here(&value) {
                continue;
            }
            let bases = class
                .getattr(intern!(py, "__bases__"))?
                .cast_into::<PyTuple>()?;
            if !bases
                .iter()
                .any(|b| replaced.contains_key(&(b.as_ptr() as usize)))
            {
                continue;
            }
            let mapped: Vec<Bound<'py, PyAny>> = bases
                .iter()
                .map(|b| replaced.get(&(b.as_ptr() as usize)).cloned().unwrap_or(b))
                .collect();
            let mapped = PyTuple::new(py, mapped)?;
            if let Err(e) = undo.set(&value, "__bases__", mapped.as_any()) {
                log::warn!(target: "subsession", "deep reload: cannot rebase {value}: {e}");
            }
        }
    }
    Ok(refused)
}

/// The keys the previous body of the class `old` (bound to global `name`) defined, if
/// recorded for this very class.
fn body_of<'py>(
    bodies: Option<&Bound<'py, PyDict>>,
    name: &Bound<'py, PyAny>,
    old: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(entry) = bodies.map(|b| b.get_item(name)).transpose()?.flatten() else {
        return Ok(None);
    };
    let (reference, keys): (Bound<'py, PyAny>, Bound<'py, PyAny>) = entry.extract()?;
    Ok(Some(keys).filter(|_| reference.call0().is_ok_and(|c| c.is(old))))
}

/// After a deep update the globals hold the classes that kept their identity: the
/// record of the new bodies (`fresh`) is made to point at them.
pub(crate) fn follow_kept_classes<'py>(
    fresh: &Bound<'py, PyDict>,
    module: &Bound<'py, PyModule>,
) -> PyResult<()> {
    let globals = module.dict();
    let mut moved = Vec::new();
    for (name, entry) in fresh.iter() {
        let (reference, keys): (Bound<'py, PyAny>, Bound<'py, PyAny>) = entry.extract()?;
        let Some(current) = globals.get_item(&name)? else {
            continue;
        };
        if current.is_instance_of::<PyType>() && !reference.call0()?.is(&current) {
            moved.push((name, pyo3::types::PyWeakrefReference::new(&current)?, keys));
        }
    }
    for (name, kept, keys) in moved {
        fresh.set_item(name, (kept, keys))?;
    }
    Ok(())
}

fn update_class<'py>(
    undo: &mut Undo<'py>,
    old: &Bound<'py, PyType>,
    new: &Bound<'py, PyType>,
    body: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    const FIXED: &[&str] = &[
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__slots__",
    ];
    let py = old.py();
    let old_dict = old.getattr(intern!(py, "__dict__"))?;
    let new_dict = new.getattr(intern!(py, "__dict__"))?;
    let keys = |d: &Bound<'py, PyAny>| -> PyResult<Vec<String>> {
        Ok(d.call_method0("keys")?
            .try_iter()?
            .flatten()
            .filter_map(|k| k.extract().ok())
            .collect())
    };
    let (old_keys, new_keys) = (keys(&old_dict)?, keys(&new_dict)?);
    // Slot descriptors describe the (unchanged) instance layout of the OLD class.
    let is_layout = |v: &Bound<'_, PyAny>| {
        matches!(
            type_name(v).as_str(),
            "member_descriptor" | "getset_descriptor"
        )
    };
    for key in &old_keys {
        if new_keys.contains(key) || FIXED.contains(&key.as_str()) {
            continue;
        }
        // Attached after the old body ran (a host's registration): not ours to remove.
        if let Some(body) = body {
            if !body.contains(key.as_str())? {
                continue;
            }
        }
        if old_dict.get_item(key).is_ok_and(|v| is_layout(&v)) {
            continue;
        }
        undo.delete(old.as_any(), key)?;
    }
    for key in &new_keys {
        if FIXED.contains(&key.as_str()) {
            continue;
        }
        let new_value = new_dict.get_item(key)?;
        let old_value = old_dict.get_item(key).ok();
        if old_value.as_ref().is_some_and(is_layout) || is_layout(&new_value) {
            continue;
        }
        update_member(undo, old, key, old_value.as_ref(), &new_value)?;
    }
    Ok(())
}
