"""docs/contract.md §4.3 item 7: exceptions and nesting restore all global state exactly.

Each scenario runs once as a warm-up (the engine may import standard-library helpers
lazily the first time), then again between two snapshots of ``sys.modules`` (every
non-session key, by identity), ``sys.path``, ``os.environ`` (content, identity, type),
``sys.meta_path``, ``sys.path_hooks`` and ``builtins.__import__``, which must be equal.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import subsession
from conftest import (
    SESSION_PREFIX,
    GlobalState,
    PkgFactory,
    assert_state_equal,
    default_init,
    import_stmt,
    leaked_real_names,
)


class Boom(Exception):
    pass


@dataclass
class Ctx:
    pkgs: PkgFactory
    new_session: Callable[..., Any]

    def two(self, **kwargs: Any) -> tuple[str, Any, Any]:
        """A package in versions 1.0 / 2.0 and a session on each."""
        name = self.pkgs.unique("st")
        files = {"sub.py": "X = 1\n", "deep/__init__.py": "", "deep/leaf.py": "Y = 2\n"}
        a = self.new_session(paths=[self.pkgs.make(name, "1.0", files)], **kwargs)
        b = self.new_session(paths=[self.pkgs.make(name, "2.0", files)], **kwargs)
        return name, a, b


def env_key(tag: str) -> str:
    import uuid

    return f"SUBSESSION_ST_{tag}_{uuid.uuid4().hex[:6]}".upper()


Scenario = Callable[[Ctx], Callable[[], None]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def clean_block_with_imports_env_and_path(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two(env={env_key("set"): "v", "PATH": os.environ.get("PATH", "") + ":/x"})

    def run() -> None:
        with a:
            import_stmt(f"{name}.deep.leaf")
            import_stmt(f"{name}.sub")
            os.environ[env_key("added")] = "1"
            sys.path.append("/nonexistent/added-in-block")

    return run


@scenario
def exception_in_block(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two(env={env_key("e"): "v"})

    def run() -> None:
        with pytest.raises(Boom):
            with a:
                import_stmt(f"{name}.sub")
                os.environ[env_key("added")] = "1"
                del os.environ["PATH"]
                sys.path.insert(0, "/nonexistent/front")
                raise Boom()

    return run


@scenario
def base_exception_in_block(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two()

    def run() -> None:
        with pytest.raises(KeyboardInterrupt):
            with a:
                import_stmt(name)
                raise KeyboardInterrupt()

    return run


@scenario
def exception_during_import(ctx: Ctx) -> Callable[[], None]:
    name = ctx.pkgs.unique("raising")
    root = ctx.pkgs.make(
        name,
        "1.0",
        {
            "__init__.py": default_init("1.0") + "from . import ok\nfrom . import broken\n",
            "ok.py": "X = 1\n",
            "broken.py": "import os\nos.environ['SUBSESSION_ST_LEAK'] = '1'\nraise ValueError()\n",
        },
    )
    s = ctx.new_session(paths=[root])

    def run() -> None:
        with pytest.raises(ValueError):
            with s:
                import_stmt(name)
        assert "SUBSESSION_ST_LEAK" not in os.environ  # set by module code in the block

    return run


@scenario
def syntax_error_during_import(ctx: Ctx) -> Callable[[], None]:
    name = ctx.pkgs.unique("syntax")
    root = ctx.pkgs.make(name, "1.0", {"__init__.py": "def broken(:\n"})
    s = ctx.new_session(paths=[root])

    def run() -> None:
        with pytest.raises(SyntaxError):
            with s:
                import_stmt(name)

    return run


@scenario
def missing_module_import(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two()

    def run() -> None:
        with pytest.raises(ImportError):
            a.import_module(f"{name}.does_not_exist")
        with pytest.raises(ImportError):
            with a:
                import_stmt(f"{name}_missing_top")

    return run


@scenario
def exception_in_nested_session(ctx: Ctx) -> Callable[[], None]:
    name, a, b = ctx.two(env={env_key("n"): "v"})

    def run() -> None:
        with a:
            import_stmt(f"{name}.sub")
            with pytest.raises(Boom):
                with b:
                    import_stmt(f"{name}.deep.leaf")
                    os.environ[env_key("inner")] = "1"
                    raise Boom()
            assert sys.modules[name].__name__ == f"{a.prefix}.{name}"

    return run


@scenario
def exception_through_all_levels_aba(ctx: Ctx) -> Callable[[], None]:
    name, a, b = ctx.two()

    def run() -> None:
        with pytest.raises(Boom):
            with a:
                import_stmt(name)
                with b:
                    import_stmt(f"{name}.sub")
                    with a:
                        import_stmt(f"{name}.deep.leaf")
                        raise Boom()

    return run


@scenario
def aba_nesting(ctx: Ctx) -> Callable[[], None]:
    name, a, b = ctx.two(env={env_key("aba"): "a"})

    def run() -> None:
        with a:
            ma = import_stmt(name)
            with b:
                mb = import_stmt(name)
                with a:
                    assert import_stmt(name) is ma
                    import_stmt(f"{name}.sub")
                    with a:
                        import_stmt(f"{name}.deep.leaf")
                assert import_stmt(name) is mb
            assert import_stmt(name) is ma

    return run


@scenario
def aba_with_global_loaded(ctx: Ctx) -> Callable[[], None]:
    name = ctx.pkgs.unique("withglobal")
    files = {"sub.py": "X = 1\n"}
    groot = ctx.pkgs.make(name, "0.1", files)
    sys.path.insert(0, str(groot))  # removed by the test's teardown
    g = import_stmt(f"{name}.sub")
    a = ctx.new_session(paths=[ctx.pkgs.make(name, "1.0", files)])
    b = ctx.new_session(paths=[ctx.pkgs.make(name, "2.0", files)])

    def run() -> None:
        with a:
            import_stmt(f"{name}.sub")
            with b:
                import_stmt(f"{name}.sub")
                with a:
                    import_stmt(name)
        assert sys.modules[f"{name}.sub"] is g

    return run


@scenario
def decorator_raising(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two()

    @a
    def tool() -> None:
        import_stmt(f"{name}.sub")
        raise Boom()

    def run() -> None:
        with pytest.raises(Boom):
            tool()

    return run


@scenario
def exec_and_run_raising(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two()

    def fail() -> None:
        import_stmt(name)
        raise Boom()

    def run() -> None:
        with pytest.raises(Boom):
            a.run(fail)
        with pytest.raises(ZeroDivisionError):
            a.exec(f"import {name}.sub\n1 / 0\n")

    return run


@scenario
def generator_closed_inside_block(ctx: Ctx) -> Callable[[], None]:
    name, a, _ = ctx.two()

    def gen() -> Any:
        with a:
            import_stmt(name)
            yield 1
            yield 2

    def run() -> None:
        g = gen()
        assert next(g) == 1
        g.close()

    return run


@scenario
def isolated_env_and_paths_raising(ctx: Ctx) -> Callable[[], None]:
    name, a, b = ctx.two(env={env_key("only"): "x"}, inherit_env=False, inherit_paths=False)

    def run() -> None:
        with pytest.raises(Boom):
            with a:
                import_stmt(name)
                with b:
                    import_stmt(f"{name}.sub")
                    raise Boom()

    return run


@scenario
def block_code_writes_real_name_keys(ctx: Ctx) -> Callable[[], None]:
    """Like requests' packages.py: session code stores its modules under new real names."""
    name = ctx.pkgs.unique("writer")
    src = default_init("1.0") + (
        "import sys\nfrom . import sub\n"
        f"sys.modules[{name!r} + '.packages.sub'] = sub\n"
        f"sys.modules[{name!r} + '_vendored'] = sub\n"
    )
    s = ctx.new_session(paths=[ctx.pkgs.make(name, "1.0", {"__init__.py": src, "sub.py": ""})])

    def run() -> None:
        with s:
            import_stmt(name)
            assert f"{name}.packages.sub" in sys.modules
        assert f"{name}.packages.sub" not in sys.modules
        assert f"{name}_vendored" not in sys.modules

    return run


@scenario
def reentry_many_times(ctx: Ctx) -> Callable[[], None]:
    name, a, b = ctx.two()

    def run() -> None:
        for _ in range(50):
            with a:
                with a:
                    import_stmt(name)
                with b:
                    import_stmt(name)

    return run


@pytest.fixture
def ctx(pkgs: PkgFactory, new_session: Callable[..., Any]) -> Any:
    saved = list(sys.path)
    yield Ctx(pkgs, new_session)
    sys.path[:] = saved


@pytest.mark.usefixtures("env_guard")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_state_restored_exactly(ctx: Ctx, name: str) -> None:
    SCENARIOS[name](ctx)()  # warm-up
    run = SCENARIOS[name](ctx)
    before = GlobalState.take()
    run()
    assert subsession.current() is None
    assert not leaked_real_names(), leaked_real_names()
    assert_state_equal(before)


@pytest.mark.usefixtures("env_guard")
@pytest.mark.parametrize("name", ["aba_nesting", "exception_in_nested_session"])
def test_state_restored_after_close(ctx: Ctx, name: str) -> None:
    SCENARIOS[name](ctx)()  # warm-up
    before = GlobalState.take()
    keys_before = {k for k in sys.modules if k.startswith(SESSION_PREFIX)}
    run = SCENARIOS[name](ctx)
    run()
    for s in subsession.sessions():
        if s.prefix not in {k.partition(".")[0] for k in keys_before}:
            s.close()
    assert_state_equal(before)
    assert {k for k in sys.modules if k.startswith(SESSION_PREFIX)} <= keys_before


def test_snapshot_helper_detects_changes() -> None:
    """The comparison must be able to fail (guards the helper itself)."""
    before = GlobalState.take()
    sys.path.append("/nonexistent/probe")
    os.environ["SUBSESSION_ST_PROBE"] = "1"
    sys.modules["subsession_st_probe"] = sys
    try:
        problems = before.diff(GlobalState.take())
    finally:
        sys.path.remove("/nonexistent/probe")
        del os.environ["SUBSESSION_ST_PROBE"]
        del sys.modules["subsession_st_probe"]
    assert len(problems) == 3, problems
    assert_state_equal(before)
