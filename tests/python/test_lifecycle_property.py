"""Issue 5, item 7: property-based lifecycle test (hypothesis, stateful).

Random sequences of create / activate (entered and left across steps, nested) /
import inside a block / nested blocks / raise inside / reload / deep reload / edit on
disk + reload_stale (including a syntax error introduced and fixed) / close. After
every step with no block open, and after every sequence, ``sys.modules`` (non-session
keys, by identity), ``sys.path``, ``os.environ``, ``sys.meta_path`` and
``builtins.__import__`` must equal their state before; inside blocks the innermost
session is current and imports give its modules.

The run is reproducible (``derandomize=True``, no example database) and covers at least
``MIN_STEPS`` steps (the time it took is printed, not asserted).
"""

from __future__ import annotations

import gc
import itertools
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import subsession
from conftest import (
    SESSION_PREFIX,
    GlobalState,
    PkgFactory,
    assert_state_equal,
    import_stmt,
    leaked_real_names,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

MIN_STEPS = 10_000
MAX_EXAMPLES = 130
STEPS_PER_EXAMPLE = 100
MAX_OPEN = 3
MAX_DEPTH = 4

SUBMODULES = ["", ".sub", ".leaf", ".cyc_a", ".cyc_b", ".edit", ".user", ".shapes"]
# Blocks stay open across steps, so the test framework's own lazy imports happen inside
# them: share it with every session, as a host shares its own packages.
FRAMEWORK = ["hypothesis", "pytest", "_pytest", "pluggy", "attr", "sortedcontainers"]
_BASE_NS = 1_550_000_000 * 1_000_000_000
_tick = itertools.count(1)


def package_files(version: str) -> dict[str, str]:
    return {
        "__init__.py": f"VERSION = {version!r}\n",
        "sub.py": "from . import leaf\nS = leaf.L + 1\n",
        "leaf.py": "L = 1\n",
        "cyc_a.py": "from . import cyc_b\nA = 'a'\n",
        "cyc_b.py": "from . import cyc_a\nB = 'b'\n",
        "edit.py": "N = 0\ndef value():\n    return N\n",
        "user.py": "from .edit import value\ndef show():\n    return value()\n",
        "shapes.py": (
            "class Shape:\n    def __init__(self):\n        self.n = 1\n"
            "    def area(self):\n        return self.n\n"
            "DEFAULT = Shape()\n"
        ),
    }


class Boom(Exception):
    pass


def assert_restored(before: GlobalState) -> None:
    """``assert_state_equal`` minus one allowance: modules of the test framework itself
    (shared with every session through ``keep_global``) that hypothesis imports lazily
    between steps. Anything else added, and anything removed or replaced, fails."""
    after = GlobalState.take()
    for key in set(after.modules) - set(before.modules):
        mod = after.modules[key]
        if key.partition(".")[0] in FRAMEWORK and not str(getattr(mod, "__name__", "")).startswith(
            SESSION_PREFIX
        ):
            del after.modules[key]
    assert_state_equal(before, after)


def release_hypothesis_module_cache(prefix: str) -> None:
    """hypothesis 6.141 (the last release for Python 3.9) keeps every module it ever
    saw in ``sys.modules`` alive in a module-level set, ``providers._seen_modules``;
    later releases keep ids. Like any host code holding a tool's modules, that would
    (rightly) show up in the unload report: drop this session's modules from it first,
    so the report measures subsession, not the test framework."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    seen = getattr(providers, "_seen_modules", None)
    if not isinstance(seen, set):
        return
    for module in list(seen):
        if not isinstance(module, types.ModuleType):
            continue
        module_name = str(getattr(module, "__name__", ""))
        if module_name == prefix or module_name.startswith(prefix + "."):
            seen.discard(module)


class Counter:
    steps = 0


def build_machine(name: str, roots: dict[str, Path], before: GlobalState) -> type:
    env_keys = [f"SUBSESSION_LP_{name}_{i}".upper() for i in range(3)]

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[tuple[Any, str]] = []  # (session, version)
            self.stack: list[tuple[Any, str]] = []  # entered, innermost last
            self.closed: list[Any] = []

        # -- helpers ------------------------------------------------------------------
        def pick(self, i: int) -> tuple[Any, str]:
            return self.open[i % len(self.open)]

        def check_import(self, session: Any, version: str, sub: str) -> None:
            real = name + sub
            mod = import_stmt(real)  # `import a.b as m` binds the submodule
            assert mod.__name__ == f"{session.prefix}.{real}", (mod.__name__, session.prefix)
            top = sys.modules[f"{session.prefix}.{name}"]
            assert top.VERSION == version

        def step(self) -> None:
            Counter.steps += 1

        # -- rules --------------------------------------------------------------------
        @precondition(lambda self: len(self.open) < MAX_OPEN)
        @rule(
            version=st.sampled_from(["1.0", "2.0"]),
            env=st.dictionaries(st.sampled_from(env_keys), st.sampled_from(["x", "y"])),
            inherit_paths=st.booleans(),
        )
        def create(self, version: str, env: dict[str, str], inherit_paths: bool) -> None:
            self.step()
            s = subsession.Session(
                paths=[roots[version]],
                env=env,
                inherit_paths=inherit_paths,
                keep_global=FRAMEWORK,
            )
            self.open.append((s, version))

        @precondition(lambda self: self.open and len(self.stack) < MAX_DEPTH)
        @rule(i=st.integers(0, MAX_OPEN))
        def enter(self, i: int) -> None:
            self.step()
            s, version = self.pick(i)
            s.__enter__()
            self.stack.append((s, version))
            assert subsession.current() is s

        @precondition(lambda self: self.stack)
        @rule()
        def leave(self) -> None:
            self.step()
            s, _ = self.stack.pop()
            s.__exit__(None, None, None)
            assert subsession.current() is (self.stack[-1][0] if self.stack else None)

        @precondition(lambda self: self.stack)
        @rule(sub=st.sampled_from(SUBMODULES))
        def import_in_block(self, sub: str) -> None:
            self.step()
            s, version = self.stack[-1]
            self.check_import(s, version, sub)

        @precondition(lambda self: self.stack)
        @rule(key=st.sampled_from(env_keys), value=st.sampled_from(["in1", "in2"]))
        def mutate_env_and_path_in_block(self, key: str, value: str) -> None:
            self.step()
            os.environ[key] = value
            sys.path.append(f"/nonexistent/lifecycle/{value}")

        @precondition(lambda self: self.open)
        @rule(
            i=st.integers(0, MAX_OPEN),
            j=st.integers(0, MAX_OPEN),
            sub=st.sampled_from(SUBMODULES),
            raise_at=st.sampled_from(["none", "outer", "inner", "import"]),
        )
        def nested_block(self, i: int, j: int, sub: str, raise_at: str) -> None:
            self.step()
            a, va = self.pick(i)
            b, vb = self.pick(j)
            outer_current = subsession.current()
            try:
                with a:
                    self.check_import(a, va, sub)
                    if raise_at == "outer":
                        raise Boom
                    with b:
                        self.check_import(b, vb, sub)
                        if raise_at == "import":
                            import_stmt(f"{name}.does_not_exist")
                        if raise_at == "inner":
                            raise Boom
                    assert subsession.current() is a
                    self.check_import(a, va, sub)
            except (Boom, ImportError):
                assert raise_at != "none"
            else:
                assert raise_at == "none"
            assert subsession.current() is outer_current

        @precondition(lambda self: self.open)
        @rule(i=st.integers(0, MAX_OPEN), sub=st.sampled_from(SUBMODULES))
        def import_via_api(self, i: int, sub: str) -> None:
            self.step()
            s, version = self.pick(i)
            mod = s.import_module(name + sub)
            assert mod.__name__ == f"{s.prefix}.{name}{sub}"
            assert s.modules[name].VERSION == version

        @precondition(lambda self: self.open)
        @rule(i=st.integers(0, MAX_OPEN), sub=st.sampled_from(SUBMODULES), deep=st.booleans())
        def reload_one(self, i: int, sub: str, deep: bool) -> None:
            self.step()
            s, _ = self.pick(i)
            real = name + sub
            if real not in s.modules:
                with pytest.raises(subsession.SessionError):
                    s.reload(real, deep=deep)
                return
            mod = s.modules[real]
            assert s.reload(real, deep=deep) is mod
            assert s.modules[real] is mod

        @precondition(lambda self: self.open)
        @rule(
            i=st.integers(0, MAX_OPEN),
            n=st.integers(1, 1000),
            deep=st.booleans(),
            broken=st.booleans(),
        )
        def edit_and_reload_stale(self, i: int, n: int, deep: bool, broken: bool) -> None:
            self.step()
            s, version = self.pick(i)
            path = roots[version] / name / "edit.py"
            imported = f"{name}.edit" in s.modules

            def write(source: str) -> None:
                path.write_text(source, encoding="utf-8")
                ns = _BASE_NS + next(_tick) * 2_000_000_000
                os.utime(path, ns=(ns, ns))

            old = s.modules[f"{name}.edit"].N if imported else None
            if broken:
                write(f"N = {n}\ndef value(:\n    return N\n")
                if imported:
                    with pytest.raises(subsession.ReloadError, match=r"line 2"):
                        s.reload_stale(deep=deep)
                    assert s.modules[f"{name}.edit"].N == old
                    assert f"{name}.edit" in s.stale()
                else:
                    assert f"{name}.edit" not in s.reload_stale(deep=deep)
            write(f"N = {n}\ndef value():\n    return N\n")
            reloaded = s.reload_stale(deep=deep)
            assert not any(r.startswith(SESSION_PREFIX) for r in reloaded)
            if imported and old == n:
                # Same bytes as what runs: no change of content, no reload (contract §5).
                assert f"{name}.edit" not in reloaded
            elif imported:
                assert f"{name}.edit" in reloaded
                assert s.modules[f"{name}.edit"].value() == n
                if f"{name}.user" in s.modules:
                    assert f"{name}.user" in reloaded
                    assert s.modules[f"{name}.user"].show() == n
            assert f"{name}.edit" not in s.stale()

        @precondition(lambda self: self.open)
        @rule(i=st.integers(0, MAX_OPEN), deep=st.booleans())
        def reload_all(self, i: int, deep: bool) -> None:
            self.step()
            s, _ = self.pick(i)
            names = s.reload_all(deep=deep)
            assert sorted(names) == sorted(s.modules)

        @precondition(lambda self: self.stack)
        @rule()
        def close_active_is_refused(self) -> None:
            self.step()
            s, _ = self.stack[0]
            with pytest.raises(subsession.SessionError, match="active"):
                s.close()
            assert not s.closed

        @precondition(lambda self: any(s not in [x for x, _ in self.stack] for s, _ in self.open))
        @rule(i=st.integers(0, MAX_OPEN), force=st.booleans())
        def close(self, i: int, force: bool) -> None:
            self.step()
            active = [x for x, _ in self.stack]
            candidates = [(s, v) for s, v in self.open if not any(s is a for a in active)]
            s, version = candidates[i % len(candidates)]
            prefix = s.prefix
            release_hypothesis_module_cache(prefix)
            report = s.close(force=force)
            assert not report, str(report)
            assert s.closed
            assert not [k for k in sys.modules if k.startswith(prefix + ".")]
            self.open = [(x, v) for x, v in self.open if x is not s]
            self.closed.append(s)

        @precondition(lambda self: self.closed)
        @rule(i=st.integers(0, 100))
        def closed_refuses_activation(self, i: int) -> None:
            self.step()
            s = self.closed[i % len(self.closed)]
            with pytest.raises(subsession.ClosedSessionError):
                with s:
                    pass
            assert subsession.current() is (self.stack[-1][0] if self.stack else None)

        # -- invariants ----------------------------------------------------------------
        @invariant()
        def globals_restored_when_no_block_is_open(self) -> None:
            if self.stack:
                assert subsession.current() is self.stack[-1][0]
                return
            assert subsession.current() is None
            assert_restored(before)
            assert not leaked_real_names()

        def teardown(self) -> None:
            while self.stack:
                s, _ = self.stack.pop()
                s.__exit__(None, None, None)
            for s, _ in self.open:
                s.close()
            assert subsession.current() is None
            assert_restored(before)
            assert not leaked_real_names()

    return Lifecycle


def test_random_lifecycles_restore_global_state(pkgs: PkgFactory, tmp_path: Path) -> None:
    name = pkgs.unique("lp")
    roots: dict[str, Path] = {}
    for version in ("1.0", "2.0"):
        # Under a folder named "tests": hypothesis then does not harvest constants from
        # these modules (it would keep them alive in a cache and make its data
        # generation depend on which sessions are open).
        roots[version] = pkgs.make(
            name, version, package_files(version), root=tmp_path / "tests" / f"v{version}"
        )

    # Warm-up: everything the engine (and hypothesis) imports lazily the first time.
    warm = subsession.Session(paths=[roots["1.0"]])
    with warm:
        for sub in SUBMODULES:
            import_stmt(name + sub)
    warm.reload(name, deep=True)
    warm.reload_all()
    warm.stale()
    try:
        with warm:
            raise Boom
    except Boom:
        pass
    warm.close()
    os.utime(roots["1.0"] / name / "edit.py", ns=(_BASE_NS, _BASE_NS))
    os.utime(roots["2.0"] / name / "edit.py", ns=(_BASE_NS, _BASE_NS))

    before = GlobalState.take()
    machine = build_machine(name, roots, before)
    Counter.steps = 0
    # Each close runs a full GC pass over the whole heap; in the full suite that heap
    # holds every earlier test's objects. Freeze them so the budget measures this test.
    gc.collect()
    gc.freeze()
    start = time.perf_counter()
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=MAX_EXAMPLES,
                stateful_step_count=STEPS_PER_EXAMPLE,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            ),
        )
    finally:
        gc.unfreeze()
    elapsed = time.perf_counter() - start
    print(f"\nlifecycle: {Counter.steps} steps in {elapsed:.1f} s")
    assert_restored(before)
    assert Counter.steps >= MIN_STEPS, f"only {Counter.steps} steps ran"
    # No assertion on the time: speed is measured by scripts/bench, not by unit tests
    # (a loaded CI machine would fail a correct run).
