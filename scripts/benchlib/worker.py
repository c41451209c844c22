"""One measurement in a fresh interpreter: ``python worker.py TASK CONFIG_JSON``.

Prints ``BENCH-RESULT <json>`` as its last line. A *served* task (compared across
interpreters) prints its setup info that way, then answers each sampler name read from
stdin with one ``BENCH-RESULT <value>`` line, so the parent can interleave the samples of
several live interpreters. Every task first builds a Maya-like
interpreter (:func:`build`). A task whose API is not there yet (``NotImplementedError``
or ``AttributeError`` from the probed call) returns ``{"na": reason}``; anything else
that goes wrong raises, so the parent reports a crash.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

RESULT = "BENCH-RESULT "
NA_ERRORS = (NotImplementedError, AttributeError)
now = time.perf_counter_ns

# A broad, side-effect-free slice of the standard library (~370 modules with deps).
STDLIB = """json email email.mime.text http.client asyncio unittest xml.etree.ElementTree
logging.handlers concurrent.futures multiprocessing decimal sqlite3 ctypes argparse pydoc
inspect typing dataclasses urllib.request ssl csv zipfile tarfile shutil tempfile subprocess
pickle pprint difflib textwrap uuid hashlib hmac fractions statistics contextvars queue socket
selectors threading weakref glob fnmatch configparser getpass platform sysconfig ast dis
tokenize traceback optparse gettext locale calendar datetime zoneinfo html.parser
xml.dom.minidom xmlrpc.client wsgiref.simple_server http.server smtplib imaplib ftplib mailbox
mimetypes base64 binascii codecs io struct array heapq bisect secrets string shlex cmd code
timeit trace cProfile pstats tracemalloc doctest lzma bz2 gzip zlib plistlib netrc
importlib.metadata importlib.resources pkgutil runpy compileall py_compile filecmp stat sched
signal mmap logging.config unittest.mock email.parser email.policy http.cookies
http.cookiejar urllib.robotparser xml.sax ctypes.util colorsys graphlib numbers enum
functools operator itertools copy reprlib abc types""".split()


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def build(cfg: dict[str, Any], target: int, reserve: int = 0) -> None:
    """Fill ``sys.modules`` like Maya's: stdlib, global isolatable packages (800 from 3k on)
    and host packages (shared through ``keep_global``) up to ``target - reserve`` modules."""
    for name in STDLIB:
        importlib.import_module(name)
    root = Path(cfg["root"])
    sys.path += [str(root / "host"), str(root / "glob")]
    subs: list[str] = cfg["host_subs"]
    for sub in subs[: cfg["host_subs_used"]]:
        importlib.import_module(sub)
    room = target - reserve - len(sys.modules)
    for pkg in cfg["globs"][: max(0, min(len(cfg["globs"]), room // 250))]:
        importlib.import_module(pkg)
    for sub in subs[cfg["host_subs_used"] :]:
        if len(sys.modules) >= target - reserve:
            break
        importlib.import_module(sub)
    gc.collect()


def session(cfg: dict[str, Any], *paths: Path) -> Any:
    from subsession import Session

    return Session(paths=[str(p) for p in paths], keep_global=cfg["hosts"])


def timed(fn: Callable[[], object]) -> float:
    """Nanoseconds one call of ``fn`` takes (automatic GC off, as timeit does)."""
    gc.disable()
    try:
        start = now()
        fn()
        return float(now() - start)
    finally:
        gc.enable()


def alternate(
    a: Callable[[], float], b: Callable[[], float], reps: int, warmup: int = 0
) -> tuple[list[float], list[float]]:
    """Samples of ``a`` and ``b`` taken in ABBA order; the first ``warmup`` pairs dropped."""
    sa: list[float] = []
    sb: list[float] = []
    for i in range(reps + warmup):
        if i % 2:
            x, y = a(), b()
        else:
            y, x = b(), a()
        if i >= warmup:
            sa.append(x)
            sb.append(y)
    return sa, sb


def session_import(s: Any, name: str) -> types.ModuleType:
    with s:
        return importlib.import_module(name)


# -- (a) empty enter+exit (served: the parent interleaves samples of 1k/3k/10k workers) ----
Samplers = dict[str, Callable[[], float]]


def serve_enter_exit(cfg: dict[str, Any]) -> tuple[Samplers, dict[str, Any]]:
    build(cfg, cfg["size"], reserve=205)
    root = Path(cfg["root"])
    empty, full = session(cfg), session(cfg, root / "sess")
    session_import(full, "bsess")
    held = len(full.modules)
    assert held >= 200 and "bsess" not in sys.modules, "bsess must live in the session only"
    batch = int(cfg["batch"])

    def run(s: Any) -> Callable[[], float]:
        def loop() -> None:
            for _ in range(batch):
                with s:
                    pass

        return lambda: timed(loop) / batch / 1000  # µs per enter+exit

    # The floor: the same real-name sys.modules sets, then deletes, for the session's
    # modules, from Rust with no bookkeeping (subsession._core._floor_swap).
    from subsession import _core

    held_modules = dict(full.modules)
    names = list(held_modules)
    modules = [held_modules[n] for n in names]
    assert not any(n in sys.modules for n in names), "the floor must only add and delete"

    def floor() -> float:
        return timed(lambda: _core._floor_swap(names, modules, batch)) / batch / 1000

    samplers = {"0": run(empty), "200": run(full), "floor": floor}
    return samplers, {"sys_modules": len(sys.modules), "held": held}


# -- (l) enter+exit with a Maya-sized environment (served, like (a)) ------------------------
ENV_SIZE = 300


def serve_env(cfg: dict[str, Any]) -> tuple[Samplers, dict[str, Any]]:
    """Sessions in a 3k-module interpreter whose environment holds 300 variables (Maya's
    order): empty, one ``env`` entry, and the same with ``inherit_env=False``."""
    build(cfg, 3000)
    for i in range(ENV_SIZE - len(os.environ)):
        os.environ[f"BENCH_MAYA_LIKE_{i:03d}"] = f"/studio/maya/2025/plug-ins/{i}"
    from subsession import Session

    batch = int(cfg["batch"])
    sessions = {
        "empty": Session(keep_global=cfg["hosts"]),
        "one": Session(keep_global=cfg["hosts"], env={"BENCH_TOOL_VAR": "1"}),
        "isolated": Session(
            keep_global=cfg["hosts"], env={"BENCH_TOOL_VAR": "1"}, inherit_env=False
        ),
    }
    before = dict(os.environ)

    def run(s: Any) -> Callable[[], float]:
        def loop() -> None:
            for _ in range(batch):
                with s:
                    pass

        def sample() -> float:
            value = timed(loop) / batch / 1000  # µs per enter+exit
            assert dict(os.environ) == before, "the environment was not restored"
            return value

        return sample

    samplers = {name: run(s) for name, s in sessions.items()}
    return samplers, {"environ": len(os.environ), "sys_modules": len(sys.modules)}


# -- (b) importing a 200-module package in a session vs plainly ----------------------------
def task_import_pkg(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    sys.path.insert(0, str(Path(cfg["root"]) / "imp"))  # both variants find it first
    if cfg.get("nobytecode"):
        # PYTHONDONTWRITEBYTECODE=1 on a package that has no .pyc yet: every module is
        # compiled on every run. An empty cache prefix hides the generated .pyc files.
        sys.dont_write_bytecode = True
        sys.pycache_prefix = tempfile.mkdtemp(prefix="bench-nopyc-")
    else:
        # As users have it: the .pyc files (written when the package was generated) are
        # read, whatever PYTHONDONTWRITEBYTECODE says on this machine.
        sys.dont_write_bytecode = False
    names = iter(cfg["imps"])
    counts: list[int] = []

    def in_session() -> float:
        s, name = session(cfg), next(names)
        gc.collect()
        ns = timed(lambda: session_import(s, name))
        assert name not in sys.modules, f"{name} leaked out of the session"
        counts.append(len(s.modules))
        return ns

    def plain() -> float:
        name = next(names)
        gc.collect()
        ns = timed(lambda: importlib.import_module(name))
        assert name in sys.modules
        return ns

    a, b = alternate(in_session, plain, cfg["pairs"], warmup=1)
    return {
        "ms_session": median(a) / 1e6,
        "ms_plain": median(b) / 1e6,
        "held": min(counts),
        "samples_ns": {"session": a, "plain": b},
    }


# -- (c) an import statement of a loaded module, no block active ---------------------------
BODY = """    import json
    import os.path
    from json import dumps
    import json
    from collections import abc
    import json
    import os.path
    from json import dumps
    import json
    from collections import abc
"""
LOOP = compile("for _ in _r:\n" + BODY, "<bench-c>", "exec")
STATEMENTS = BODY.count("\n")


def serve_hook_cost(cfg: dict[str, Any]) -> tuple[Samplers, dict[str, Any]]:
    build(cfg, 3000)
    if cfg["mode"] == "subsession":
        s = session(cfg, Path(cfg["root"]) / "sess")
        session_import(s, "bsess")
        assert s.modules, "the session imported nothing"
    else:
        assert "subsession" not in sys.modules
    n = int(cfg["loops"])

    def sample() -> float:  # ns per statement
        return timed(lambda: exec(LOOP, {"_r": range(n)})) / (n * STATEMENTS)

    return {"ns": sample}, {"mode": cfg["mode"]}


# -- (d) the first lazy import after exit, from session code --------------------------------
def task_lazy(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    root = Path(cfg["root"])
    sys.path.insert(0, str(root / "lazy_g"))
    s = session(cfg, root / "lazy_s")
    smod = session_import(s, "bsessmod")
    gmod = importlib.import_module("bplainmod")
    ks = iter(range(cfg["lazy_count"]))
    kg = iter(range(cfg["lazy_count"]))

    def in_session() -> float:
        k = next(ks)
        fn = getattr(smod, f"lazy_{k}")
        ns = timed(fn)
        assert f"blazy_{k}" not in sys.modules, "a lazy session import leaked"
        return ns

    def plain() -> float:
        k = next(kg)
        return timed(getattr(gmod, f"lazy_{k}"))

    a, b = alternate(in_session, plain, cfg["lazy_count"] - 10, warmup=10)
    return {
        "us_session": median(a) / 1e3,
        "us_plain": median(b) / 1e3,
        "samples_ns": {"session": a, "plain": b},
    }


# -- (e) stale() vs a Python os.stat loop ---------------------------------------------------
def task_stale(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    s = session(cfg, Path(cfg["root"]) / "stale")
    session_import(s, "bstale")
    records = []
    for name, mod in s.modules.items():
        path = getattr(mod, "__file__", None)
        if path:
            st = os.stat(path)
            records.append((name, path, st.st_mtime_ns, st.st_size))
    try:
        found = s.stale()
    except NA_ERRORS as exc:
        return {"na": f"s.stale() raised {type(exc).__name__}: {exc}"}
    assert found == [], f"nothing changed, yet stale() returned {found[:5]}"

    def py_stale() -> list[str]:
        stat = os.stat
        out = []
        for name, path, mtime, size in records:
            st = stat(path)
            if st.st_mtime_ns != mtime or st.st_size != size:
                out.append(name)
        return out

    a, b = alternate(lambda: timed(s.stale), lambda: timed(py_stale), cfg["reps"], warmup=3)
    return {
        "ms_stale": median(a) / 1e6,
        "ms_python": median(b) / 1e6,
        "files": len(records),
        "samples_ns": {"stale": a, "python": b},
    }


# -- (f) reload_stale of one changed leaf vs importlib.reload ------------------------------
def task_reload_stale(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    root = Path(cfg["root"])
    leaf = f"brel.{cfg['leaf']}"
    s = session(cfg, root / "rel_s")
    session_import(s, "brel")
    smod = session_import(s, leaf)
    sys.path.insert(0, str(root / "rel_g"))
    gmod = importlib.import_module(leaf)
    assert gmod is not smod
    files = [Path(str(smod.__file__)), Path(str(gmod.__file__))]
    source = files[0].read_text().split(cfg["edits"])[0] + cfg["edits"]
    stamp = int(time.time()) - 100_000
    rev = iter(range(1, 1_000_000))

    def touch() -> int:
        k = next(rev)
        for f in files:  # new text, new size, a distinct whole-second mtime (pyc headers)
            f.write_text(f"{source}REV = {k}\n" + "#" * (k % 5))
            os.utime(f, (stamp + k, stamp + k))
        return k

    try:
        s.stale()
        touch()
        first = s.reload_stale()
        s.watch(interval=0.05)
    except NA_ERRORS as exc:
        return {"na": f"s.stale()/reload_stale()/watch() raised {type(exc).__name__}: {exc}"}
    reloaded: list[str] = list(first)
    from subsession import _watch

    def watcher_found() -> None:
        end = time.monotonic() + 10
        while not _watch._pending and time.monotonic() < end:
            time.sleep(0.001)
        assert _watch._pending, "the watcher did not see the change"

    def in_session() -> float:
        k = touch()
        watcher_found()  # watching: the stale set is known when reload_stale() runs
        gc.collect()
        ns = timed(s.reload_stale)
        assert s.modules[leaf].REV == k, "reload_stale() missed the change"
        return ns

    def unwatched() -> float:
        s.unwatch()
        try:
            k = touch()
            gc.collect()
            ns = timed(s.reload_stale)
            assert s.modules[leaf].REV == k, "reload_stale() missed the change"
            return ns
        finally:
            s.watch(interval=0.05)

    def plain() -> float:
        k = touch()
        gc.collect()
        ns = timed(lambda: importlib.reload(gmod))
        assert gmod.REV == k
        return ns

    a, b = alternate(in_session, plain, cfg["reps"], warmup=2)
    c, d = alternate(unwatched, plain, max(4, cfg["reps"] // 3), warmup=1)
    s.unwatch()
    return {
        "ms_session": median(a) / 1e6,
        "ms_plain": median(b) / 1e6,
        "ms_unwatched": median(c) / 1e6,
        "ms_plain_unwatched": median(d) / 1e6,
        "held": len(s.modules),
        "reloaded": reloaded,
        "samples_ns": {"session": a, "plain": b, "unwatched": c},
    }


# -- (h) save -> first call running the new code, watching a 200-module session -----------
def task_latency(cfg: dict[str, Any]) -> dict[str, Any]:
    import random

    import subsession

    build(cfg, 3000)
    root = Path(cfg["root"])
    leaf = f"brel.{cfg['leaf']}"
    s = session(cfg, root / "rel_s")
    session_import(s, "brel")
    smod = session_import(s, leaf)
    path = Path(str(smod.__file__))
    source = path.read_text().split(cfg["edits"])[0] + cfg["edits"]
    interval = 0.5  # the default
    try:
        s.watch()
    except NA_ERRORS as exc:
        return {"na": f"s.watch() raised {type(exc).__name__}: {exc}"}
    latencies: list[float] = []
    rng = random.Random(7)
    for k in range(1, cfg["saves"] + 1):
        time.sleep(rng.uniform(0, interval))  # saves land anywhere in the poll cycle
        saved = now()
        path.write_text(f"{source}REV = {k}\n" + "#" * (k % 5))
        # The host's event loop: pending reloads are run every millisecond.
        while True:
            subsession.process_pending()
            if getattr(s.modules[leaf], "REV", None) == k:
                break
            if now() - saved > 10e9:
                raise AssertionError("the save was never reloaded")
            time.sleep(0.001)
        latencies.append((now() - saved) / 1e6)
    s.unwatch()
    return {
        "interval_ms": interval * 1000,
        "ms_max": max(latencies),
        "ms_median": median(latencies),
        "held": len(s.modules),
        "samples_ms": latencies,
    }


# -- (i) CPU of watching 2,000 files at the default interval -------------------------------
def task_watch_cpu(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    s = session(cfg, Path(cfg["root"]) / "stale")
    session_import(s, "bstale")
    files = sum(1 for m in s.modules.values() if getattr(m, "__file__", None))
    seconds = cfg["seconds"]

    def cpu_over(window: float) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        time.sleep(window)
        return (time.process_time() - cpu) / (time.monotonic() - wall)

    idle = cpu_over(seconds)
    try:
        s.watch()
    except NA_ERRORS as exc:
        return {"na": f"s.watch() raised {type(exc).__name__}: {exc}"}
    time.sleep(1.0)  # first poll done
    watching = cpu_over(seconds)
    s.unwatch()
    return {
        "files": files,
        "idle_pct": idle * 100,
        "watch_pct": watching * 100,
        "cost_pct": max(0.0, watching - idle) * 100,
        "seconds": seconds,
    }


# -- (g) deep reload with 10k instances, small vs large unrelated heap ---------------------
def task_deep(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000)
    s = session(cfg, Path(cfg["root"]) / "deep")
    mod = session_import(s, "bdeep")
    path = Path(str(mod.__file__))
    source = path.read_text().split(cfg["edits"])[0] + cfg["edits"]
    widgets = [mod.Widget(i) for i in range(10_000)]
    rev = iter(range(1, 1_000_000))

    def edit() -> int:
        k = next(rev)
        path.write_text(f"{source}GENERATION = {k}\n" + "#" * (k % 5))
        os.utime(path, (k, k))
        return k

    try:
        edit()
        s.reload(mod, deep=True)
    except NA_ERRORS as exc:
        return {"na": f"s.reload(m, deep=True) raised {type(exc).__name__}: {exc}"}

    def with_heap(size: int) -> Callable[[], float]:
        def sample() -> float:
            heap = [[i] for i in range(size)]  # GC-tracked, unrelated to the module
            k = edit()
            gc.collect()
            ns = timed(lambda: s.reload(mod, deep=True))
            assert s.modules["bdeep"].GENERATION == k and widgets[0].click() == 3
            del heap
            return ns

        return sample

    a, b = alternate(with_heap(1_000_000), with_heap(10_000), cfg["pairs"], warmup=1)
    return {
        "ms_big": median(a) / 1e6,
        "ms_small": median(b) / 1e6,
        "samples_ns": {"big": a, "small": b},
    }


# -- (h) close() of a 200-module session -----------------------------------------------------
def task_close(cfg: dict[str, Any]) -> dict[str, Any]:
    build(cfg, 3000, reserve=205)
    root = Path(cfg["root"])
    samples: list[float] = []
    held: list[int] = []
    for _ in range(cfg["reps"] + 1):  # the first one warms up
        s = session(cfg, root / "sess")
        session_import(s, "bsess")
        held.append(len(s.modules))
        gc.collect()
        samples.append(timed(s.close))
        assert "bsess" not in sys.modules
    return {"ms_close": median(samples[1:]) / 1e6, "held": min(held), "samples_ns": samples}


# -- (k) a tool start-up at scale: a real stack of >= 1,500 modules, in a session or not ---
def task_startup(cfg: dict[str, Any]) -> dict[str, Any]:
    """One sample in a fresh interpreter: ``cfg["imports"]`` from the folder ``cfg["stack"]``,
    in a new session (its creation included) or plainly; bytecode caching on."""
    build(cfg, 3000)
    sys.dont_write_bytecode = False
    folder = Path(cfg["stack"])
    imports: list[str] = cfg["imports"]
    before = set(sys.modules)
    gc.collect()
    if cfg["mode"] == "session":
        held: list[Any] = []

        def start() -> None:
            s = session(cfg, folder)
            with s:
                for name in imports:
                    importlib.import_module(name)
            held.append(s)

        ns = timed(start)
        count = len(held[0].modules)
        assert not any(n in sys.modules for n in imports), "the stack leaked out of the session"
        from subsession import _core

        libraries, slots, redirect_ns = _core._redirect_stats()
        return {
            "ms": ns / 1e6,
            "modules": count,
            "redirected_libraries": libraries,
            "redirected_slots": slots,
            "redirect_ms": redirect_ns / 1e6,
        }
    else:
        sys.path.insert(0, str(folder))
        ns = timed(lambda: [importlib.import_module(name) for name in imports])
        count = len(set(sys.modules) - before)
    return {"ms": ns / 1e6, "modules": count}


# -- (m) close() of the (k) real stack against one full collection with it loaded ---------
def task_close_stack(cfg: dict[str, Any]) -> dict[str, Any]:
    """One fresh interpreter: the (k) stack imported in a session, then one timed
    ``gc.collect()`` before and one after ``close()`` is timed, both with the stack's
    survivors on the heap (the collection a close cannot avoid), then the report."""
    build(cfg, 3000)
    sys.dont_write_bytecode = False
    s = session(cfg, Path(cfg["stack"]))
    with s:
        for name in cfg["imports"]:
            importlib.import_module(name)
    held = len(s.modules)
    # Enter+exit of the real stack's session vs an empty one, interleaved (ABBA).
    empty = session(cfg)
    reps = 200
    stack_ns: list[float] = []
    empty_ns: list[float] = []

    def blocks(target: Any) -> float:
        def run() -> None:
            for _ in range(reps):
                with target:
                    pass

        return timed(run) / reps

    for i in range(8):
        for which in (s, empty) if i % 2 else (empty, s):
            (stack_ns if which is s else empty_ns).append(blocks(which))
    empty.close()
    gc.collect()
    gc_before = timed(gc.collect)
    report: list[Any] = []
    ns_close = timed(lambda: report.append(s.close()))
    gc_after = timed(gc.collect)
    r = report[0]
    return {
        "ms_close": ns_close / 1e6,
        "ms_gc": min(gc_before, gc_after) / 1e6,
        "ms_gc_before": gc_before / 1e6,
        "ms_gc_after": gc_after / 1e6,
        "held": held,
        "alive": len(r.leaks),
        "grouped": len(getattr(r, "held_by_extensions", ())),
        "first_lines": str(r).splitlines()[:4],
        "enter_exit_stack_ns": stack_ns,
        "enter_exit_empty_ns": empty_ns,
    }


SERVED: dict[str, Callable[[dict[str, Any]], tuple[Samplers, dict[str, Any]]]] = {
    "enter_exit": serve_enter_exit,
    "hook_cost": serve_hook_cost,
    "env": serve_env,
}
TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "import_pkg": task_import_pkg,
    "lazy": task_lazy,
    "stale": task_stale,
    "reload_stale": task_reload_stale,
    "latency": task_latency,
    "watch_cpu": task_watch_cpu,
    "deep": task_deep,
    "close": task_close,
    "startup": task_startup,
    "close_stack": task_close_stack,
}


def main() -> None:
    del sys.path[0]  # this script's folder: not part of a Maya-like interpreter
    task, cfg = sys.argv[1], json.loads(sys.argv[2])
    if task not in SERVED:
        print(RESULT + json.dumps(TASKS[task](cfg)), flush=True)
        return
    samplers, info = SERVED[task](cfg)
    print(RESULT + json.dumps(info), flush=True)
    for line in sys.stdin:  # one sampler name per line; an empty line or EOF ends
        if not line.strip():
            break
        print(RESULT + json.dumps(samplers[line.strip()]()), flush=True)


if __name__ == "__main__":
    main()
