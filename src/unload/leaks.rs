//! The unload leak report: what still holds a closed session's modules.
//!
//! A module stays alive through its module object (someone kept `import x` around)
//! or through its globals dict (a function of it is still referenced: a Qt callback,
//! an instance of one of its classes). Holders are found by walking referrers up a
//! few levels. Each level is ONE pass over the heap for all objects of that level,
//! matched against a hash set ([`referrers_of`]): `gc.get_referrers(*objs)` compares
//! every reference with each of `objs` in turn, which made a report of hundreds of
//! survivors cost modules × heap (seconds to minutes).

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashSet;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyModule, PyTuple, PyType};

use crate::base::names::type_name;

/// Marks a closing module's globals; see `reload::close`.
pub(crate) const PROBE_KEY: &str = "__subsession_unload_probe__";

const MAX_LEVELS: usize = 6;
/// Holders listed per module: the first few say what to fix.
const MAX_HOLDERS: usize = 4;
/// Holder text longer than this is cut (a holder's repr can be huge).
const MAX_TEXT: usize = 300;

/// Why a C extension module of a closed session survives, and every module that only
/// what such a module references keeps alive (one grouped line in the report).
pub(crate) const EXTENSION_HOLDER: &str = "a C extension module, or held by one: CPython \
     never unloads compiled extension modules (their state lives until the process exits)";

/// A holder chain that ends in an object referenced from outside the collector's view.
pub(crate) const C_HOLDER: &str = "held from C code, e.g. a Qt signal connection";

/// The holder of a survivor no referrer chain explains.
pub(crate) const UNSEEN_HOLDER: &str =
    "an object the garbage collector cannot see (C code, or objects frozen with gc.freeze())";

/// One object on a holder chain: which module it keeps alive, in words so far.
struct Lead<'py> {
    module: usize,
    what: String,
    obj: Bound<'py, PyAny>,
}

fn addr(obj: &Bound<'_, PyAny>) -> usize {
    obj.as_ptr() as usize
}

fn qualname(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr(intern!(obj.py(), "__qualname__"))
        .and_then(|q| q.extract::<String>())
        .unwrap_or_else(|_| "?".into())
}

/// The module name of a dict that is some module's globals.
fn globals_name(obj: &Bound<'_, PyAny>) -> Option<String> {
    let d = obj.cast::<PyDict>().ok()?;
    if !d.contains("__builtins__").ok()? && !d.contains("__spec__").ok()? {
        return None;
    }
    d.get_item("__name__").ok()??.extract().ok()
}

struct Scanner<'py> {
    py: Python<'py>,
    gc: Bound<'py, PyModule>,
    /// Containers this report made itself (they refer to everything it looks at).
    own: HashSet<usize>,
}

/// Objects per `gc.get_referents` call of a heap pass: large enough that the calls
/// cost little, small enough that finding the referrer inside a hit chunk is cheap.
const CHUNK: usize = 128;

/// The objects of the collector's heap that refer to any of `targets` (by address),
/// frames included, without the objects in `own`: ONE pass over the heap, each
/// reference looked up in a hash set, however many targets. Each object's references
/// are visited through its type's `tp_traverse` (CPython 3.10 on); CPython 3.9 answers
/// `PyType_GetSlot` for heap types only, so there the heap is read in chunks through
/// `gc.get_referents` and a chunk with a hit is halved until the referrer is found.
pub(crate) fn referrers_of<'py>(
    gc: &Bound<'py, PyModule>,
    targets: &FxHashSet<usize>,
    own: &HashSet<usize>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = gc.py();
    let mut found = Vec::new();
    if targets.is_empty() {
        return Ok(found);
    }
    let heap = gc
        .call_method0(intern!(py, "get_objects"))?
        .cast_into::<PyList>()?;
    if py.version_info() >= (3, 10) {
        let targets = Targets::new(targets);
        for obj in heap.iter() {
            if refers_to_any(&obj, &targets) && !own.contains(&addr(&obj)) {
                found.push(obj);
            }
        }
        return Ok(found);
    }
    let get_referents = gc.getattr(intern!(py, "get_referents"))?;
    let hits = |lo: usize, hi: usize| -> PyResult<bool> {
        let args = heap.get_slice(lo, hi).to_tuple();
        let refs = get_referents.call1(args)?.cast_into::<PyList>()?;
        Ok(refs.iter().any(|r| targets.contains(&addr(&r))))
    };
    let n = heap.len();
    let mut pending: Vec<(usize, usize)> = (0..n)
        .step_by(CHUNK)
        .map(|lo| (lo, (lo + CHUNK).min(n)))
        .rev()
        .collect();
    while let Some((lo, hi)) = pending.pop() {
        if !hits(lo, hi)? {
            continue;
        }
        if hi - lo == 1 {
            let obj = heap.get_item(lo)?;
            if !own.contains(&addr(&obj)) {
                found.push(obj);
            }
            continue;
        }
        let mid = lo + (hi - lo) / 2;
        pending.push((mid, hi));
        pending.push((lo, mid));
    }
    Ok(found)
}

/// A set of addresses with a bitmap in front: a pass asks it about every reference
/// of the heap, and nearly all answers are no, which the bitmap gives without hashing.
struct Targets<'a> {
    bits: Vec<u64>,
    set: &'a FxHashSet<usize>,
}

/// Bits of the bitmap (128 KiB): sparse for the few thousand objects a level asks about.
const BITMAP_BITS: usize = 1 << 20;

impl<'a> Targets<'a> {
    fn new(set: &'a FxHashSet<usize>) -> Self {
        let mut bits = vec![0u64; BITMAP_BITS / 64];
        for &a in set {
            let b = Self::bit(a);
            bits[b / 64] |= 1 << (b % 64);
        }
        Targets { bits, set }
    }

    /// Objects are 16-byte aligned: the low four bits say nothing.
    fn bit(addr: usize) -> usize {
        (addr >> 4) & (BITMAP_BITS - 1)
    }

    fn contains(&self, addr: usize) -> bool {
        let b = Self::bit(addr);
        self.bits[b / 64] & (1 << (b % 64)) != 0 && self.set.contains(&addr)
    }
}

/// True when `obj`'s own references (its type's `tp_traverse`, as the collector and
/// `gc.get_referrers` see them) include one of `targets`.
fn refers_to_any(obj: &Bound<'_, PyAny>, targets: &Targets) -> bool {
    use pyo3::ffi;
    use std::os::raw::{c_int, c_void};

    unsafe extern "C" fn visit(object: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `&Targets` passed below, alive for the whole call.
        let targets = unsafe { &*(arg as *const Targets) };
        // Non-zero stops the traversal: one hit answers the question.
        c_int::from(targets.contains(object as usize))
    }

    // SAFETY: `obj` is alive (we hold it) and the GIL is held. From CPython 3.10 on
    // `PyType_GetSlot` answers for every type (the caller checks the version); a type
    // without `tp_traverse` gives NULL. The traversal only reports references to
    // `visit`, which reads nothing but the set.
    unsafe {
        let ty = ffi::Py_TYPE(obj.as_ptr());
        let slot = ffi::PyType_GetSlot(ty, ffi::Py_tp_traverse);
        if slot.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let traverse: ffi::traverseproc = std::mem::transmute(slot);
        let arg = targets as *const Targets as *mut c_void;
        traverse(obj.as_ptr(), visit, arg) != 0
    }
}

impl<'py> Scanner<'py> {
    /// Referrers of all `objs` in one heap scan, without our own containers.
    fn referrers(&mut self, objs: &[Bound<'py, PyAny>]) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut found = self.referrers_and_frames(objs)?;
        found.retain(|r| type_name(r) != "frame");
        Ok(found)
    }

    /// Referrers of all `objs`, running frames included (they hold references too).
    fn referrers_and_frames(
        &mut self,
        objs: &[Bound<'py, PyAny>],
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let targets: FxHashSet<usize> = objs.iter().map(addr).collect();
        referrers_of(&self.gc, &targets, &self.own)
    }

    /// What `obj` refers to, one entry per reference.
    fn referents(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<Vec<usize>> {
        let list = self
            .gc
            .getattr(intern!(self.py, "get_referents"))?
            .call1((obj,))?;
        let all = list.try_iter()?.flatten().map(|o| addr(&o)).collect();
        Ok(all)
    }
}

/// For each module globals dict, what holds it alive, in words a TD can act on.
pub(crate) fn describe<'py>(
    py: Python<'py>,
    globals: &[Bound<'py, PyDict>],
    prefix_dot: &str,
) -> PyResult<Vec<Vec<String>>> {
    let mut scan = Scanner {
        py,
        gc: py.import("gc")?,
        own: HashSet::new(),
    };
    let n = globals.len();
    let mut module_holders: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut code_holders: Vec<Vec<String>> = vec![Vec::new(); n];
    if n == 0 {
        return Ok(Vec::new());
    }
    let by_dict: HashMap<usize, usize> = globals
        .iter()
        .enumerate()
        .map(|(i, g)| (addr(g.as_any()), i))
        .collect();
    let dicts: Vec<Bound<'py, PyAny>> = globals.iter().map(|g| g.clone().into_any()).collect();
    let mut leads: Vec<Lead<'py>> = Vec::new();
    for r in scan.referrers(&dicts)? {
        let kind = type_name(&r);
        let owner = match kind.as_str() {
            "module" => r
                .cast::<PyModule>()
                .ok()
                .and_then(|m| by_dict.get(&addr(m.dict().as_any())).copied())
                .map(|i| (i, "the module object".to_owned())),
            "function" => r
                .getattr(intern!(py, "__globals__"))
                .ok()
                .and_then(|g| by_dict.get(&addr(&g)).copied())
                .map(|i| (i, format!("a function ({})", qualname(&r)))),
            _ => None,
        };
        if let Some((module, what)) = owner {
            leads.push(Lead {
                module,
                what,
                obj: r,
            });
        }
    }
    for level in 0..MAX_LEVELS {
        if leads.is_empty() {
            break;
        }
        let objs: Vec<Bound<'py, PyAny>> = leads.iter().map(|l| l.obj.clone()).collect();
        let referrers = scan.referrers_and_frames(&objs)?;
        let mut holders_of: HashMap<usize, Vec<Bound<'py, PyAny>>> = HashMap::new();
        let mut copies: HashMap<usize, isize> = HashMap::new();
        for o in &objs {
            *copies.entry(addr(o)).or_default() += 1;
        }
        // References the collector lists, per object (frames included).
        let mut listed: HashMap<usize, isize> = HashMap::new();
        for r in referrers {
            let frame = type_name(&r) == "frame";
            let mut last = 0;
            for target in scan.referents(&r)? {
                if copies.contains_key(&target) {
                    *listed.entry(target).or_default() += 1;
                    if !frame && last != target {
                        holders_of.entry(target).or_default().push(r.clone());
                        last = target;
                    }
                }
            }
        }
        // The rest of each object's references come from C (a Qt connection keeps a
        // Python callable in C++): each copy of it in `leads` and `objs` is ours.
        // A lead that refers to another lead sits in `holders_of` too: ours as well.
        let mut in_holders: HashMap<usize, isize> = HashMap::new();
        for r in holders_of.values().flatten() {
            if copies.contains_key(&addr(r)) {
                *in_holders.entry(addr(r)).or_default() += 1;
            }
        }
        let held_from_c: HashSet<usize> = objs
            .iter()
            .filter(|o| {
                let a = addr(o);
                // SAFETY: o is a live object we hold a reference to.
                let total = unsafe { pyo3::ffi::Py_REFCNT(o.as_ptr()) } as isize;
                let ours = 2 * copies[&a] + in_holders.get(&a).copied().unwrap_or(0);
                total - listed.get(&a).copied().unwrap_or(0) - ours > 0
            })
            .map(addr)
            .collect();
        let mut reported_c: HashSet<usize> = HashSet::new();
        let mut next: Vec<Lead<'py>> = Vec::new();
        for lead in leads {
            let is_module_object = lead.what.starts_with("the module object");
            let sink = if is_module_object {
                &mut module_holders
            } else {
                &mut code_holders
            };
            if held_from_c.contains(&addr(&lead.obj)) && reported_c.insert(addr(&lead.obj)) {
                // A Qt object's wrapper refers to its class from C (shiboken).
                let class = if lead.obj.is_instance_of::<PyType>() {
                    format!(" or a live Qt object of class {}", qualname(&lead.obj))
                } else {
                    String::new()
                };
                sink[lead.module].push(format!("{} {C_HOLDER}{class}", lead.what));
            }
            for r in holders_of.remove(&addr(&lead.obj)).unwrap_or_default() {
                // A module is never its own holder: its globals hold its functions.
                if by_dict.get(&addr(&r)) == Some(&lead.module) {
                    continue;
                }
                match classify(py, &r, &lead, prefix_dot, level + 1 == MAX_LEVELS) {
                    Step::Done(text) => sink[lead.module].push(text),
                    Step::Follow(what) => next.push(Lead {
                        module: lead.module,
                        what,
                        obj: r,
                    }),
                    Step::Skip => {}
                }
            }
        }
        leads = next;
    }

    let mut out = Vec::with_capacity(n);
    for (modules, code) in module_holders.into_iter().zip(code_holders) {
        // Most telling first: a named holder outside the session (a module global, a
        // Qt connection, running code); else the surviving session module that keeps
        // this one alive; else the chains that ran out of levels.
        let all: Vec<String> = modules.into_iter().chain(code).collect();
        let definite = |d: &String| {
            d.contains("held in module")
                || d.contains("Qt callback")
                || d.contains("owned by a Qt object")
                || d.contains("running frame")
                || d.contains(C_HOLDER)
        };
        let mut holders: Vec<String> = all.iter().filter(|d| definite(d)).cloned().collect();
        if holders.is_empty() {
            holders = all
                .iter()
                .filter(|d| d.contains("held by session module"))
                .cloned()
                .collect();
        }
        if holders.is_empty() {
            holders = all.into_iter().take(3).collect();
        }
        let mut seen = HashSet::new();
        holders.retain(|h| seen.insert(h.clone()));
        holders.truncate(MAX_HOLDERS);
        if holders.is_empty() {
            holders.push(UNSEEN_HOLDER.into());
        }
        for h in &mut holders {
            if h.len() > MAX_TEXT {
                let cut = (0..=MAX_TEXT)
                    .rev()
                    .find(|&i| h.is_char_boundary(i))
                    .unwrap_or(0);
                h.truncate(cut);
                h.push('…');
            }
        }
        out.push(holders);
    }
    Ok(out)
}

fn holder_is_root(holder: &Bound<'_, PyAny>, root: &str) -> bool {
    holder
        .cast::<PyModule>()
        .ok()
        .and_then(|m| m.dict().get_item("__name__").ok().flatten())
        .and_then(|n| n.extract::<String>().ok())
        .is_some_and(|n| n == root)
}

enum Step {
    Done(String),
    Follow(String),
    Skip,
}

fn classify(
    py: Python<'_>,
    holder: &Bound<'_, PyAny>,
    lead: &Lead<'_>,
    prefix_dot: &str,
    last: bool,
) -> Step {
    let what = &lead.what;
    let root = prefix_dot.trim_end_matches('.');
    if let Some(module) = globals_name(holder) {
        // The session's root package holds its top-level modules; whatever keeps the
        // root alive is the real holder: follow it.
        if module == root {
            return Step::Follow(format!("{what} held by the session's root package {root}"));
        }
        if let Some(real) = module.strip_prefix(prefix_dot) {
            return Step::Done(format!(
                "{what} held by session module {real}, itself alive"
            ));
        }
        let key = holder.cast::<PyDict>().ok().and_then(|d| {
            d.iter()
                .find(|(_, v)| v.is(&lead.obj))
                .map(|(k, _)| k.to_string())
        });
        return Step::Done(match key {
            Some(k) => format!("{what} held in module {module} as '{k}'"),
            None => format!("{what} held in module {module}"),
        });
    }
    let kind = type_name(holder);
    let module = holder
        .get_type()
        .getattr(intern!(py, "__module__"))
        .and_then(|m| m.extract::<String>())
        .unwrap_or_default();
    if ["PySide", "shiboken", "PyQt"]
        .iter()
        .any(|q| module.starts_with(q))
    {
        // A Qt object holding an instance (a widget's parent) owns it; one holding a
        // function or method keeps it as a callback.
        let callable = ["function", "method", "builtin_function_or_method"]
            .contains(&type_name(&lead.obj).as_str());
        if !callable && !lead.obj.is_instance_of::<PyType>() {
            return Step::Done(format!(
                "{what} owned by a Qt object ({kind}), e.g. its parent widget"
            ));
        }
        return Step::Done(format!("{what} connected as a Qt callback ({kind})"));
    }
    // A class refers to itself through its MRO tuple and its own descriptors: those
    // are not holders.
    if kind.ends_with("_descriptor") || kind == "weakref" || kind == "mappingproxy" {
        return Step::Skip;
    }
    if kind == "tuple"
        && holder
            .cast::<PyTuple>()
            .ok()
            .and_then(|t| t.get_item(0).ok())
            .is_some_and(|first| first.is(&lead.obj) && lead.obj.is_instance_of::<PyType>())
    {
        return Step::Skip;
    }
    let next = if holder.is_instance_of::<PyType>() {
        format!("{what} of class {}", qualname(holder))
    } else {
        match kind.as_str() {
            "function" => format!("{what} of function {}", qualname(holder)),
            "method" => format!("{what} as a bound method"),
            "cell" => format!("{what} in a closure"),
            "dict" => what.clone(),
            "list" | "tuple" | "set" | "frozenset" | "deque" => format!("{what} in a {kind}"),
            "module" if holder_is_root(holder, root) => what.clone(),
            "module" => return Step::Skip,
            _ => format!("{what} inside an instance of {kind}"),
        }
    };
    if last {
        Step::Done(format!("{next}, held by an object outside the session"))
    } else {
        Step::Follow(next)
    }
}
