"""Transparency to real code (docs/contract.md §4.4): what pytest, monkeypatch, jinja2, compiled
extensions, setuptools' editable installs and pickling do inside a session works as in
a plain interpreter.

- ``sys.path`` changed inside a block is searched by the block's very next import;
- an object put into ``sys.modules`` by real name inside a block is what the block's
  imports get, belongs to the session afterwards and never stays global;
- custom meta-path finders and path hooks are asked for the real name, and what they
  load is a session module whose own imports are routed;
- ``.pth`` files of a session's site folder apply inside the session (an editable
  install made by pip with setuptools' finder works from a session);
- hypothesis (whose Rust core registers submodules) imports in a session;
- pickles written by session code name real modules: a plain interpreter, the session
  itself after the block, a same-named session of another process and spawned
  ``concurrent.futures`` workers load them.
"""

from __future__ import annotations

import concurrent.futures
import importlib.machinery
import importlib.util
import multiprocessing
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Callable

import pytest
import realpkgs
from conftest import PkgFactory, is_session_module, unique_name, write_files

# -- sys.path ---------------------------------------------------------------------------


def test_sys_path_insert_in_block_is_seen_by_the_next_import(
    pkgs: PkgFactory, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    name = pkgs.unique("late")
    late = pkgs.make(name, "2.0")
    s = new_session(paths=[str(pkgs.make(pkgs.unique("base")))])
    before = list(sys.path)
    with s:
        sys.path.insert(0, str(late))
        mod = __import__(name)
    assert mod.VERSION == "2.0"
    assert is_session_module(mod)
    assert sys.path == before
    assert name not in sys.modules


def test_monkeypatch_syspath_prepend_in_block(
    pkgs: PkgFactory, new_session: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = pkgs.unique("mp")
    folder = pkgs.make(name, "3.0")
    s = new_session()
    with s:
        monkeypatch.syspath_prepend(str(folder))
        import importlib

        mod = importlib.import_module(name)
        monkeypatch.undo()
    assert mod.VERSION == "3.0"
    assert s.modules[name] is mod


# -- sys.modules registrations -------------------------------------------------------------


def test_module_registered_in_block_is_imported_owned_and_not_left_global(
    new_session: Callable[..., Any],
) -> None:
    name = unique_name("fake_plugin")
    s = new_session()
    fake = types.ModuleType(name)
    fake.ANSWER = 42  # type: ignore[attr-defined]
    with s:
        sys.modules[name] = fake
        imported = __import__(name)
        answer = __import__(name, fromlist=["ANSWER"]).ANSWER
    assert imported is fake
    assert answer == 42
    assert name not in sys.modules
    with pytest.raises(ImportError):
        __import__(name)
    # It belongs to the session: there again on its next activation.
    with s:
        assert sys.modules[name] is fake
        assert __import__(name) is fake
    assert name not in sys.modules


@pytest.mark.parametrize(
    "value", [17, "text", None.__class__, object()], ids=["int", "str", "type", "object"]
)
def test_any_object_registered_in_block_is_what_import_gets(
    new_session: Callable[..., Any], value: object
) -> None:
    name = unique_name("registered")
    s = new_session()
    with s:
        sys.modules[name] = value  # type: ignore[assignment]
        assert __import__(name) is value
    assert name not in sys.modules


def test_monkeypatch_setitem_sys_modules_in_block(
    new_session: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique_name("patched")
    s = new_session()
    stub = types.ModuleType(name)
    with s:
        monkeypatch.setitem(sys.modules, name, stub)
        import importlib

        assert importlib.import_module(name) is stub
        monkeypatch.undo()
        with pytest.raises(ImportError):
            importlib.import_module(name)
    assert name not in sys.modules


def test_submodule_registered_by_session_code(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    # Like compiled extensions (hypothesis's Rust core) or pytest's importlib mode:
    # module code registers a submodule by real name, then imports it.
    name = pkgs.unique("reg")
    folder = pkgs.make(
        name,
        files={
            "__init__.py": f"""\
                import sys, types
                _sub = types.ModuleType("{name}.virtual")
                _sub.VALUE = "virtual"
                sys.modules["{name}.virtual"] = _sub
                from {name}.virtual import VALUE
                """
        },
    )
    s = new_session(paths=[str(folder)])
    with s:
        mod = __import__(name)
    assert mod.VALUE == "virtual"
    assert f"{name}.virtual" not in sys.modules


PYTEST_FAMILY = ["pytest", "_pytest.*", "pluggy.*", "iniconfig.*", "py", "packaging.*"]


@pytest.mark.parametrize("mode", ["importlib", "prepend"])
def test_the_hosts_pytest_run_in_a_block_leaves_test_modules_to_the_session(
    tmp_path: Path, new_session: Callable[..., Any], mode: str
) -> None:
    """Issue 20 item 6 (SPEC §3.3.10): the host's own pytest (shared) runs a session's
    tests with ``s.run``. In importlib mode pytest itself puts each test module into
    sys.modules under its real name; pickle and typing in the block must find that
    very module, and at exit it belongs to the session, never left global."""
    tests = unique_name("suite")
    write_files(
        tmp_path,
        {
            f"{tests}/__init__.py": "",
            f"{tests}/test_dunders.py": """\
                import pickle, sys, typing

                class X:
                    a: "int" = 1

                def test_pickle_finds_this_module():
                    assert sys.modules[X.__module__] is sys.modules[__name__]
                    assert type(pickle.loads(pickle.dumps(X()))) is X

                def test_typing_finds_this_module():
                    assert typing.get_type_hints(X) == {"a": int}
                """,
        },
    )
    s = new_session(keep_global=PYTEST_FAMILY, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    args = [f"--import-mode={mode}", "-q", "-p", "no:cacheprovider", str(tmp_path / tests)]
    code = s.run(pytest.main, args)
    assert code == 0
    module = f"{tests}.test_dunders"
    assert module not in sys.modules and tests not in sys.modules
    if mode == "importlib":
        # pytest's own module object, under its real name, shown again by the session.
        with s:
            assert sys.modules[module].__name__ == module
    else:
        # Imported through sys.path in the block: an ordinary module of the session.
        assert s.modules[module].__name__ == f"{s.prefix}.{module}"
    assert module not in sys.modules


# -- custom finders, path hooks, .pth files ------------------------------------------------


class _RealNameFinder:
    """A studio-style importer: knows modules by their real names only."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources
        self.asked: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        self.asked.append(fullname)
        if fullname in self.sources:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        real = module.__spec__.name.rpartition(".")[2] if module.__spec__ else ""
        source = next(v for k, v in self.sources.items() if k.endswith(real))
        exec(compile(textwrap.dedent(source), f"<studio {real}>", "exec"), module.__dict__)


def test_custom_meta_path_finder_is_asked_for_the_real_name(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    helper = pkgs.unique("helper")
    studio = unique_name("studio_mod")
    folder = pkgs.make(helper, "5.0")
    finder = _RealNameFinder({studio: f"def lazy():\n    import {helper}\n    return {helper}\n"})
    sys.meta_path.append(finder)
    try:
        s = new_session(paths=[str(folder)])
        with s:
            mod = __import__(studio)
        assert studio in finder.asked
        assert is_session_module(mod)
        assert s.modules[studio] is mod
        assert studio not in sys.modules
        # Its code is routed like any session module's, after the block too.
        lazy = mod.lazy()
        assert lazy.VERSION == "5.0"
        assert is_session_module(lazy)
    finally:
        sys.meta_path.remove(finder)


class _NameKeyedImporter:
    """Like shiboken's embedded zip importer: its files are indexed by module name, and
    ``create_module``/``exec_module`` look the spec's name up as given."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources
        self.created: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in self.sources:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, self)
        spec.submodule_search_locations = [] if "." not in fullname else None
        return spec

    def create_module(self, spec: Any) -> None:
        self.created.append(spec.name)
        self.sources[spec.name]  # noqa: B018  (a KeyError here is the bug)
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        assert module.__spec__ is not None
        fullname = module.__spec__.name
        code = compile(textwrap.dedent(self.sources[fullname]), fullname, "exec")
        exec(code, module.__dict__)
        sys.modules[fullname] = module


def test_a_loader_that_looks_the_module_up_by_its_name_gets_the_real_name(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    helper = pkgs.unique("helper")
    top = unique_name("embedded")
    folder = pkgs.make(helper, "6.0")
    importer = _NameKeyedImporter(
        {
            top: "from . import part\nVALUE = part.VALUE\n",
            f"{top}.part": f"import {helper}\nVALUE = {helper}.VERSION\n",
        }
    )
    sys.meta_path.append(importer)
    try:
        s = new_session(paths=[str(folder)])
        with s:
            mod = __import__(top)
        assert importer.created == [top, f"{top}.part"]
        assert mod.VALUE == "6.0" and is_session_module(mod)
        assert s.modules[top] is mod and s.modules[f"{top}.part"] is mod.part
        assert top not in sys.modules and f"{top}.part" not in sys.modules
    finally:
        sys.meta_path.remove(importer)


class _RealNamePathFinder:
    """A path-entry finder for folders named ``*.realnames``: real names only."""

    def __init__(self, path: str) -> None:
        if not path.endswith(".realnames"):
            raise ImportError("not mine")
        self.path = path
        self.asked: list[str] = []

    def find_spec(self, fullname: str, target: Any = None) -> Any:
        _ASKED.append(fullname)
        file = Path(self.path) / f"{fullname}.txt"
        if not file.exists():
            return None
        loader = importlib.machinery.SourceFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, str(file), loader=loader)


_ASKED: list[str] = []


def test_custom_path_hook_is_asked_for_the_real_name(
    new_session: Callable[..., Any], tmp_path: Path
) -> None:
    name = unique_name("hooked")
    folder = tmp_path / "lib.realnames"
    folder.mkdir()
    (folder / f"{name}.txt").write_text("VALUE = 'from a path hook'\n", encoding="utf-8")
    sys.path_hooks.insert(0, _RealNamePathFinder)
    sys.path_importer_cache.pop(str(folder), None)
    try:
        s = new_session(paths=[str(folder)])
        with s:
            mod = __import__(name)
        assert mod.VALUE == "from a path hook"
        assert name in _ASKED
        assert is_session_module(mod)
        assert name not in sys.modules
    finally:
        sys.path_hooks.remove(_RealNamePathFinder)
        sys.path_importer_cache.pop(str(folder), None)


def test_pth_files_of_a_session_path_apply_inside_the_session(
    pkgs: PkgFactory, new_session: Callable[..., Any], tmp_path: Path
) -> None:
    name = pkgs.unique("pthpkg")
    extra = pkgs.make(name, "7.0")
    marker = unique_name("pth_ran")
    site = tmp_path / "site"
    site.mkdir()
    (site / "extra.pth").write_text(
        f"# comment\n{extra}\nimport sys; sys.{marker} = __import__('os').environ.get('PTH_ENV')\n",
        encoding="utf-8",
    )
    before = list(sys.path)
    s = new_session(paths=[str(site)], env={"PTH_ENV": "inside"})
    assert getattr(sys, marker) == "inside"  # the import line ran inside the session
    delattr(sys, marker)
    assert sys.path == before
    with s:
        mod = __import__(name)
    assert mod.VERSION == "7.0"
    assert is_session_module(mod)
    with pytest.raises(ImportError):
        __import__(name)


@pytest.fixture(scope="module")
def editable_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``pip install -e`` of a project whose package folder is renamed (package-dir), so
    setuptools must use its meta-path finder (no plain path entry can map it)."""
    root = tmp_path_factory.mktemp("editable")
    name = unique_name("edpkg")
    project = root / "project"
    (project / "code").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{name}"
            version = "1.0"
            [tool.setuptools]
            packages = ["{name}"]
            package-dir = {{"{name}" = "code"}}
            """
        ),
        encoding="utf-8",
    )
    (project / "code" / "__init__.py").write_text(
        "from . import sub\nVALUE = 'editable'\n", encoding="utf-8"
    )
    (project / "code" / "sub.py").write_text("X = 1\n", encoding="utf-8")
    site = root / "site"
    # pip builds in an isolated environment (setuptools from PyPI): the test
    # interpreter's own packages stay as they are.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(site),
            "-e",
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(site.glob("__editable__*finder.py")), "setuptools did not use its finder"
    return site, name


def test_editable_install_used_from_a_session(
    editable_site: tuple[Path, str], new_session: Callable[..., Any]
) -> None:
    site, name = editable_site
    meta_path = list(sys.meta_path)
    s = new_session(paths=[str(site)])
    assert sys.meta_path == meta_path  # its finder serves the session only
    with s:
        mod = __import__(name)
        assert mod.VALUE == "editable"
        assert mod.sub.X == 1
    assert is_session_module(mod) and is_session_module(mod.sub)
    assert Path(mod.__file__).parent.name == "code"
    assert name not in sys.modules
    with pytest.raises(ImportError):
        __import__(name)


# -- hypothesis (a compiled core registering submodules) ----------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="hypothesis with its Rust core needs 3.11+")
def test_hypothesis_imports_and_runs_in_a_session(new_session: Callable[..., Any]) -> None:
    # The global hypothesis (pytest's plugin) is loaded too: the session's Rust core
    # overwrites its sys.modules keys while it initialises, and must give them back.
    import hypothesis as global_hypothesis
    import hypothesis.strategies  # noqa: F401

    global_keys = {k: v for k, v in sys.modules.items() if k.startswith("hypothesis")}
    folder = realpkgs.ensure("hypothesis-6.170.17")
    s = new_session(paths=[str(folder)])
    ns = s.exec(
        textwrap.dedent(
            """\
            import hypothesis
            from hypothesis import given, settings, strategies as st

            seen = []

            @settings(max_examples=20, database=None)
            @given(st.lists(st.integers()))
            def check(xs):
                seen.append(xs)
                assert sorted(xs) == sorted(reversed(xs))

            check()
            """
        )
    )
    assert is_session_module(ns["hypothesis"])
    assert ns["hypothesis"].__file__.startswith(str(folder))
    assert len(ns["seen"]) >= 1
    assert ns["hypothesis"] is not global_hypothesis
    now = {k: v for k, v in sys.modules.items() if k.startswith("hypothesis")}
    assert now.keys() == global_keys.keys()
    assert all(now[k] is v for k, v in global_keys.items())


# -- portable pickles ----------------------------------------------------------------------------

TOOL = """\
    import dataclasses
    import enum
    import pickle


    @dataclasses.dataclass
    class Item:
        name: str
        count: int = 1


    class Color(enum.Enum):
        RED = 1


    def double(x):
        return 2 * x


    def dump(obj):
        return pickle.dumps(obj)


    def load(data):
        return pickle.loads(data)


    def run_pool(method, values):
        import concurrent.futures
        import multiprocessing

        ctx = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
            return list(pool.map(double, values))
    """


@pytest.fixture
def tool(pkgs: PkgFactory, new_session: Callable[..., Any]) -> tuple[Any, Any, str, Path]:
    name = pkgs.unique("pickletool")
    folder = pkgs.make(name, files={"__init__.py": TOOL})
    session_name = unique_name("pk")
    s = new_session(session_name, paths=[str(folder)])
    return s, s.import_module(name), name, folder


def test_pickle_written_by_session_code_names_real_modules(tool: Any) -> None:
    s, mod, name, folder = tool
    data = mod.dump([mod.Item("a", 2), mod.Color.RED, mod.double])
    assert b"__subsession" not in data
    assert name.encode() in data
    # Read back by session code after the block: the session's own objects.
    item, color, fn = mod.load(data)
    assert type(item) is mod.Item and item == mod.Item("a", 2)
    assert color is mod.Color.RED
    assert fn is mod.double


def test_pickle_through_run_and_exec_names_real_modules(tool: Any) -> None:
    """Issue 20 item 8: ``s.run(pickle.dumps, obj)`` hands the host's function to the
    block; it pickles as session code does, and so does ``s.exec``."""
    import io
    import pickle

    s, mod, name, folder = tool
    obj = [mod.Item("r", 1), mod.Color.RED, mod.double]
    for data in (
        s.run(pickle.dumps, obj),
        s.run(pickle.dumps, obj, protocol=2),
        _exec_dumps(s, obj),
    ):
        assert b"__subsession" not in data and name.encode() in data, data
        assert mod.load(data)[0] == mod.Item("r", 1)
    buf = io.BytesIO()
    s.run(pickle.dump, obj, buf)
    assert b"__subsession" not in buf.getvalue()
    buf = io.BytesIO()
    s.run(lambda: pickle.Pickler(buf).dump(obj))  # the host's own Pickler: unchanged
    assert b"__subsession" in buf.getvalue()


def _exec_dumps(s: Any, obj: Any) -> bytes:
    s.exec("import pickle\n")["OBJ"] = obj
    data: bytes = s.exec("DATA = pickle.dumps(OBJ)\n")["DATA"]
    return data


def test_pickle_of_session_code_is_read_by_a_plain_subprocess(tool: Any) -> None:
    s, mod, name, folder = tool
    data = mod.dump([mod.Item("b", 3), mod.Color.RED, mod.double])
    script = (
        "import pickle, sys\n"
        "assert 'subsession' not in sys.modules\n"
        "item, color, fn = pickle.loads(sys.stdin.buffer.read())\n"
        "print(type(item).__module__, item.count, color.name, fn(21))\n"
    )
    # -S: no site-packages, so subsession cannot even be imported there.
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script],
        input=data,
        capture_output=True,
        env={"PYTHONPATH": str(folder)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == [name, "3", "RED", "42"]


def test_pickle_is_read_by_a_same_named_session_of_another_process(tool: Any) -> None:
    s, mod, name, folder = tool
    data = mod.dump(mod.Item("c", 4))
    script = textwrap.dedent(
        f"""\
        import sys
        import subsession

        s = subsession.Session({s.name!r}, paths=[{str(folder)!r}])
        ns = s.exec("import pickle, sys\\nitem = pickle.loads(sys.stdin.buffer.read())")
        item = ns["item"]
        assert type(item) is s.modules[{name!r}].Item, type(item)
        print(type(item).__module__, item.count)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == [f"__subsession_{s.name}__.{name}", "4"]


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_process_pool_workers_run_session_functions(tool: Any, method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    s, mod, name, folder = tool
    with s:  # spawned children get the block's sys.path
        assert mod.run_pool(method, [1, 2, 3]) == [2, 4, 6]
    if method == "fork":
        assert mod.run_pool(method, [4]) == [8]  # after the block too


def test_global_pickling_of_session_objects_still_round_trips(tool: Any) -> None:
    s, mod, name, folder = tool
    import pickle

    data = pickle.dumps(mod.Item("d"))
    assert type(pickle.loads(data)) is mod.Item
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(mod.double, 5).result() == 10


# -- the session's __import__ called directly --------------------------------------------


def test_session_import_hook_takes_every_call_shape_of_the_builtin(
    pkgs: PkgFactory, new_session: Callable[..., Any]
) -> None:
    """Session code's ``__import__`` is a C function with a fast path for the five
    positional arguments of an import statement; every other shape the builtin accepts
    (keywords, fewer arguments, a relative level) gives what the builtin gives, and a
    level out of range is an error, as with the builtin."""
    name = pkgs.unique("shapes")
    root = pkgs.make(
        name,
        "1.0",
        {
            "sub.py": "VALUE = 'sub'\n",
            "probe.py": """
                def shapes():
                    hook = __builtins__["__import__"]
                    pkg_name = __name__.rpartition(".")[0].rpartition(".")[2]
                    one = __import__(pkg_name)
                    five = __import__(pkg_name + ".sub", globals(), None, ["VALUE"], 0)
                    keywords = __import__(pkg_name, fromlist=["sub"], level=0)
                    relative = __import__("sub", globals(), None, ["VALUE"], 1)
                    try:
                        __import__(pkg_name, globals(), None, None, 10**30)
                    except OverflowError:
                        overflow = "OverflowError"
                    else:
                        overflow = "no error"
                    return hook, one, five, keywords, relative, overflow
            """,
        },
    )
    s = new_session(paths=[str(root)])
    probe = s.import_module(f"{name}.probe")
    hook, one, five, keywords, relative, overflow = probe.shapes()
    pkg = s.modules[name]
    sub = s.modules[f"{name}.sub"]
    assert hook is not __import__
    assert one is pkg and keywords is pkg
    assert five is sub and relative is sub and five.VALUE == "sub"
    assert overflow == "OverflowError"
    assert name not in sys.modules
