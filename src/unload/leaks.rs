//! The unload leak report: what still holds a closed session's modules.
//!
//! A module stays alive through its module object (someone kept `import x` around)
//! or through its globals dict (a function of it is still referenced: a Qt callback,
//! an instance of one of its classes). Holders are found by walking referrers up a
//! few levels. The heap is listed once and its references reversed in ONE traversal
//! ([`Reverse`]); every level is lookups in that index. `gc.get_referrers(*objs)`
//! compares every reference with each of `objs` in turn, which made a report of
//! hundreds of survivors cost modules × heap (seconds to minutes), and one heap pass
//! per level still cost as much as a collection. Running frames, whose locals the
//! collector cannot see from CPython 3.11 on, are read directly ([`Running`]).

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
pub(crate) const C_HOLDER: &str = "held from C code, which this report cannot follow \
     (a Qt signal connected to it, a C library's cache): disconnect or clear it before \
     closing";

/// The holder of a survivor no referrer chain explains.
pub(crate) const UNSEEN_HOLDER: &str = "no holder found: it is held by something the \
     garbage collector cannot list (C code, or objects frozen with gc.freeze()); \
     gc.get_referrers() on the module's functions and classes may show more";

/// The words after a running frame's place: the reason it holds what it holds.
const STILL_RUNNING: &str = "still running";

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

/// Where a frame runs, as a user finds it: `run_tool (/tools/a.py:12)`.
fn frame_place(frame: &Bound<'_, PyAny>) -> String {
    let py = frame.py();
    let code = frame.getattr(intern!(py, "f_code")).ok();
    let text = |obj: Option<&Bound<'_, PyAny>>, attr: &Bound<'_, pyo3::types::PyString>| {
        obj.and_then(|o| o.getattr(attr).ok())
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    };
    let name = text(code.as_ref(), intern!(py, "co_name"));
    let file = text(code.as_ref(), intern!(py, "co_filename"));
    let line = text(Some(frame), intern!(py, "f_lineno"));
    format!("{name} ({file}:{line})")
}

/// The Python frames running on every thread, read once per report. From CPython
/// 3.11 on a running frame's local variables are invisible to the collector (they
/// live on the thread's stack), so a module kept by a local variable of the function
/// that called `close()` would otherwise look like C code holds it.
#[derive(Default)]
struct Running {
    /// Addresses of the running frame objects (the collector may list them).
    frames: HashSet<usize>,
    /// Object address -> the local variables holding it, as places.
    locals: HashMap<usize, Vec<String>>,
    /// Globals dict address -> the running functions whose code it is.
    code: HashMap<usize, Vec<String>>,
}

/// `CO_OPTIMIZED`: a function's frame, whose locals are not a dict of its own.
const CO_OPTIMIZED: i64 = 0x1;

fn running_frames(py: Python<'_>, own: &mut HashSet<usize>) -> PyResult<Running> {
    let mut running = Running::default();
    let current = py
        .import("sys")?
        .call_method0(intern!(py, "_current_frames"))?
        .cast_into::<PyDict>()?;
    for (_, top) in current.iter() {
        let mut frame = top;
        while !frame.is_none() && running.frames.insert(addr(&frame)) {
            let place = frame_place(&frame);
            if let Ok(globals) = frame.getattr(intern!(py, "f_globals")) {
                running
                    .code
                    .entry(addr(&globals))
                    .or_default()
                    .push(place.clone());
            }
            let flags: i64 = frame
                .getattr(intern!(py, "f_code"))
                .and_then(|c| c.getattr(intern!(py, "co_flags")))
                .and_then(|f| f.extract())
                .unwrap_or(0);
            // A module's or class body's locals are a dict the collector sees: it is
            // found as a holder like any other.
            if flags & CO_OPTIMIZED != 0 {
                if let Ok(locals) = frame.getattr(intern!(py, "f_locals")) {
                    // Before 3.13 this is a snapshot dict the frame keeps: ours, not a
                    // holder (it holds what the local variables hold).
                    if locals.is_instance_of::<PyDict>() {
                        own.insert(addr(&locals));
                    }
                    let items = locals.call_method0(intern!(py, "items"))?;
                    for item in items.try_iter()? {
                        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                            item?.extract()?;
                        running
                            .locals
                            .entry(addr(&value))
                            .or_default()
                            .push(format!("local variable '{name}' of {place}"));
                    }
                }
            }
            frame = match frame.getattr(intern!(py, "f_back")) {
                Ok(back) => back,
                Err(_) => break,
            };
        }
    }
    Ok(running)
}

struct Scanner<'py> {
    py: Python<'py>,
    gc: Bound<'py, PyModule>,
    /// Containers this report made itself (they refer to everything it looks at).
    own: HashSet<usize>,
    /// The collector's heap, listed once for every level: nothing a report does adds
    /// a referrer of what it follows, and listing ~100k objects costs as much as a
    /// level's pass.
    heap: Option<Bound<'py, PyList>>,
    /// The heap's references reversed, built at the first level (CPython 3.10 on).
    reverse: Option<Reverse>,
}

/// Objects per `gc.get_referents` call of a heap pass: large enough that the calls
/// cost little, small enough that finding the referrer inside a hit chunk is cheap.
const CHUNK: usize = 128;

/// CPython 3.9 (which answers `PyType_GetSlot` for heap types only, so [`Reverse`]
/// cannot traverse the heap): the objects of `heap` that refer to any of `targets`
/// (by address), frames included, without the objects in `own`, in ONE pass. The heap
/// is read in chunks through `gc.get_referents`, and a chunk with a hit is halved until
/// the referrer is found.
pub(crate) fn referrers_of<'py>(
    gc: &Bound<'py, PyModule>,
    heap: &Bound<'py, PyList>,
    targets: &FxHashSet<usize>,
    own: &HashSet<usize>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = gc.py();
    let mut found = Vec::new();
    if targets.is_empty() {
        return Ok(found);
    }
    let get_referents = gc.getattr(intern!(py, "get_referents"))?;
    let hits = |lo: usize, hi: usize| -> PyResult<bool> {
        let args = heap.get_slice(lo, hi).to_tuple();
        let refs = get_referents.call1(args.clone())?.cast_into::<PyList>()?;
        Ok(refs.iter().any(|r| targets.contains(&addr(&r)))
            || args
                .iter()
                .any(|o| targets.contains(&addr(o.get_type().as_any()))))
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

/// Bits of the reverse index's bitmap of tracked objects (128 KiB).
const BITMAP_BITS: usize = 1 << 20;

/// The heap's references, reversed: built in ONE traversal of the heap and asked at
/// every level of a report, instead of one traversal per level. Only references to
/// objects the collector tracks are kept (a holder chain runs through containers;
/// strings and numbers, most of a heap's references, are never followed), and an
/// instance's reference to its class is one of them, whether or not its type's
/// traversal says so (shiboken2's wrappers do not): live Qt objects of a session
/// class are found as its holders.
struct Reverse {
    /// (referenced address, index of the referrer in the heap snapshot), sorted.
    edges: Vec<(usize, u32)>,
}

impl Reverse {
    fn build(heap: &Bound<'_, PyList>) -> Reverse {
        use pyo3::ffi;
        use std::os::raw::{c_int, c_void};

        struct Collect {
            bits: Vec<u64>,
            index: u32,
            edges: Vec<(usize, u32)>,
        }

        fn bit(addr: usize) -> usize {
            (addr >> 4) & (BITMAP_BITS - 1)
        }

        unsafe extern "C" fn visit(object: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the `&mut Collect` passed below, alive for the call.
            let c = unsafe { &mut *(arg as *mut Collect) };
            let a = object as usize;
            let b = bit(a);
            // A bit of a tracked object (false hits only cost an edge never asked for).
            if c.bits[b / 64] & (1 << (b % 64)) != 0 {
                c.edges.push((a, c.index));
            }
            0
        }

        let mut c = Collect {
            bits: vec![0u64; BITMAP_BITS / 64],
            index: 0,
            edges: Vec::with_capacity(heap.len() * 2),
        };
        for obj in heap.iter() {
            let b = bit(addr(&obj));
            c.bits[b / 64] |= 1 << (b % 64);
        }
        for (i, obj) in heap.iter().enumerate() {
            let Ok(index) = u32::try_from(i) else { break };
            c.index = index;
            // SAFETY: `obj` is alive (the snapshot holds it) and the GIL is held. From
            // CPython 3.10 on `PyType_GetSlot` answers for every type (the caller
            // checks the version); a type without `tp_traverse` gives NULL. The
            // traversal only reports references to `visit`, which records addresses.
            unsafe {
                let ty = ffi::Py_TYPE(obj.as_ptr());
                let arg = &mut c as *mut Collect as *mut c_void;
                visit(ty.cast(), arg);
                let slot = ffi::PyType_GetSlot(ty, ffi::Py_tp_traverse);
                if slot.is_null() {
                    ffi::PyErr_Clear();
                    continue;
                }
                let traverse: ffi::traverseproc = std::mem::transmute(slot);
                traverse(obj.as_ptr(), visit, arg);
            }
        }
        let mut edges = c.edges;
        edges.sort_unstable();
        edges.dedup();
        Reverse { edges }
    }

    /// Heap indexes of the objects referring to any of `targets`, in heap order.
    fn referrers(&self, targets: &FxHashSet<usize>) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for &t in targets {
            let start = self.edges.partition_point(|&(a, _)| a < t);
            out.extend(
                self.edges[start..]
                    .iter()
                    .take_while(|&&(a, _)| a == t)
                    .map(|&(_, i)| i),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
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
        let heap = match &self.heap {
            Some(heap) => heap.clone(),
            None => {
                let heap = self
                    .gc
                    .call_method0(intern!(self.py, "get_objects"))?
                    .cast_into::<PyList>()?;
                self.heap = Some(heap.clone());
                heap
            }
        };
        if self.py.version_info() < (3, 10) {
            return referrers_of(&self.gc, &heap, &targets, &self.own);
        }
        let reverse = self.reverse.get_or_insert_with(|| Reverse::build(&heap));
        let mut found = Vec::new();
        for i in reverse.referrers(&targets) {
            let obj = heap.get_item(i as usize)?;
            if !self.own.contains(&addr(&obj)) {
                found.push(obj);
            }
        }
        Ok(found)
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
        heap: None,
        reverse: None,
    };
    let n = globals.len();
    let mut module_holders: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut code_holders: Vec<Vec<String>> = vec![Vec::new(); n];
    if n == 0 {
        return Ok(Vec::new());
    }
    // Before the first heap pass: reading locals may make the snapshot dicts it skips.
    let running = running_frames(py, &mut scan.own)?;
    for (i, g) in globals.iter().enumerate() {
        for place in running.code.get(&addr(g.as_any())).into_iter().flatten() {
            module_holders[i].push(format!(
                "its code is {STILL_RUNNING}: {place} has not returned"
            ));
        }
        for place in running.locals.get(&addr(g.as_any())).into_iter().flatten() {
            module_holders[i].push(format!("its globals dict held by {place}, {STILL_RUNNING}"));
        }
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
        // Live Qt objects of a class among the referrers: shiboken keeps one more
        // reference to the class per instance from C, which the instance explains.
        let mut qt_instances: HashMap<usize, isize> = HashMap::new();
        for r in referrers {
            // Running frames are read directly (`running`): what the collector lists
            // of them differs between CPython versions.
            if running.frames.contains(&addr(&r)) {
                continue;
            }
            let class = r.get_type();
            let class_addr = addr(class.as_any());
            let mut referents = scan.referents(&r)?;
            if copies.contains_key(&class_addr) {
                if !referents.contains(&class_addr) {
                    referents.push(class_addr);
                }
                if is_shiboken_class(&class) {
                    *qt_instances.entry(class_addr).or_default() += 1;
                }
            }
            let mut last = 0;
            for target in referents {
                if copies.contains_key(&target) {
                    *listed.entry(target).or_default() += 1;
                    if last != target {
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
                // Every lead came out of the heap snapshot, which holds it once more.
                let ours = 2 * copies[&a] + in_holders.get(&a).copied().unwrap_or(0) + 1;
                let qt = qt_instances.get(&a).copied().unwrap_or(0);
                // A running frame's references are not counted (its local variables
                // are read, not traversed): it is named instead of C code.
                !running.locals.contains_key(&a)
                    && total - listed.get(&a).copied().unwrap_or(0) - ours - qt > 0
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
            for place in running.locals.get(&addr(&lead.obj)).into_iter().flatten() {
                sink[lead.module].push(format!("{} held by {place}, {STILL_RUNNING}", lead.what));
            }
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
                // Except for a live Qt object in its own module's global: shiboken
                // holds the object's class from C while the object lives, so the
                // cycle (module, object, class, module) is never collected.
                if by_dict.get(&addr(&r)) == Some(&lead.module) {
                    if is_shiboken_class(&lead.obj.get_type()) {
                        sink[lead.module].push(own_qt_object(&r, &lead));
                    }
                    continue;
                }
                // The functions of surviving modules are leads already: one holding
                // another (a method's `__class__` cell) says nothing new.
                if type_name(&r) == "function"
                    && r.getattr(intern!(py, "__globals__"))
                        .is_ok_and(|g| by_dict.contains_key(&addr(&g)))
                {
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
                || d.contains(STILL_RUNNING)
                || d.contains("held in its own module")
                || d.contains(C_HOLDER)
        };
        let mut holders: Vec<String> = all.iter().filter(|d| definite(d)).cloned().collect();
        // A holder the user can go to makes "held from C code" noise: the warnings
        // filters list is both `warnings.filters` and the interpreter's C state.
        let named = |d: &String| d.contains("held in module") || d.contains(STILL_RUNNING);
        if holders.iter().any(named) {
            holders.retain(|d| !d.contains(C_HOLDER));
        }
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
            *h = shorten(h);
        }
        out.push(holders);
    }
    Ok(out)
}

/// A live Qt object kept in a global of its own (closed) module.
fn own_qt_object(globals: &Bound<'_, PyAny>, lead: &Lead<'_>) -> String {
    let key = globals
        .cast::<PyDict>()
        .ok()
        .and_then(|d| {
            d.iter()
                .find(|(_, v)| v.is(&lead.obj))
                .map(|(k, _)| k.to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "{} held in its own module as '{key}': a live Qt object keeps its class from C, \
         so this cycle is never collected (close the widget and delete '{key}' in the \
         module's __before_unload__)",
        lead.what
    )
}

/// True for a class made by shiboken (PySide's `Shiboken.ObjectType` metaclass).
fn is_shiboken_class(class: &Bound<'_, PyType>) -> bool {
    class
        .get_type()
        .getattr(intern!(class.py(), "__module__"))
        .and_then(|m| m.extract::<String>())
        .is_ok_and(|m| m.starts_with("Shiboken") || m.starts_with("shiboken"))
}

/// A holder text cut to [`MAX_TEXT`] in its middle: its start says what is held, its
/// end where the user goes (the module global, the running function, what to do).
fn shorten(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let half = MAX_TEXT / 2;
    let head = (0..=half)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let tail = (text.len() - half..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    format!("{}…{}", &text[..head], &text[tail..])
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
    if kind == "frame" {
        // A frame keeps its caller through `f_back`: not what holds the object.
        if type_name(&lead.obj) == "frame" {
            return Step::Skip;
        }
        // A call that has returned, kept with its locals by a traceback (an
        // exception stored somewhere: `sys.last_traceback` in a Script Editor), or a
        // suspended generator or coroutine: follow what keeps the frame.
        let next = format!(
            "{what} in a local variable of {}, kept by a traceback or a generator",
            frame_place(holder)
        );
        return if last {
            Step::Done(format!("{next}, held by an object outside the session"))
        } else {
            Step::Follow(next)
        };
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
