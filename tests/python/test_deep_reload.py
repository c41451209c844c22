"""docs/contract.md §5.3 (issue 5, item 4): ``deep=True`` updates existing objects in place.

Each test writes version 1 of a session module, keeps references to its objects the
way an open tool window would (instances, bound methods as slots, callbacks, ``from m
import f`` in another module), writes version 2 with a new mtime and deep-reloads.
The known hard cases (frozen dataclasses, enums, property<->method, changed
``__slots__``, changed bases, C types) are each pinned to the engine's behaviour: updated
in place, or refused with a WARNING on the ``subsession`` logger while existing
instances keep their old class. Nothing may crash.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import os
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import subsession
from conftest import SESSION_PREFIX, PkgFactory

_BASE_NS = 1_650_000_000 * 1_000_000_000
_tick = itertools.count(1)


class Mod:
    """One session module rewritten between versions (distinct mtimes via os.utime)."""

    def __init__(self, root: Path, name: str, session: Any) -> None:
        self.root = root
        self.name = name
        self.session = session

    def write(self, source: str, rel: str | None = None) -> None:
        path = self.root / (rel or f"{self.name}.py")
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        ns = _BASE_NS + next(_tick) * 2_000_000_000
        os.utime(path, ns=(ns, ns))

    def load(self, source: str) -> types.ModuleType:
        self.write(source)
        return self.session.import_module(self.name)  # type: ignore[no-any-return]

    def deep(self, source: str) -> types.ModuleType:
        """Write the new version and deep-reload through ``reload_stale``."""
        self.write(source)
        assert self.session.reload_stale(deep=True) == [self.name]
        return self.session.modules[self.name]  # type: ignore[no-any-return]


@pytest.fixture
def mod(pkgs: PkgFactory, tmp_path: Path, new_session: Callable[..., Any]) -> Iterator[Mod]:
    name = pkgs.unique("deep")
    root = tmp_path / "deep-root"
    root.mkdir()
    yield Mod(root, name, new_session(paths=[root]))


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="subsession"):
        subsession._core.reset_log_cache()
        yield caplog


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("subsession")
        and r.levelno >= logging.WARNING
        and "not updated in place" in r.getMessage()
    ]


# -- functions --------------------------------------------------------------------------------


def test_functions_get_new_code_defaults_and_metadata(mod: Mod) -> None:
    m = mod.load(
        """
        def f(a=1, *, k=10):
            "doc1"
            return ("v1", a, k)
        cb = lambda: "lambda1"
        """
    )
    f, cb = m.f, m.cb
    assert (
        mod.deep(
            """
        def f(a=2, *, k=20) -> tuple:
            "doc2"
            return ("v2", a, k)
        cb = lambda: "lambda2"
        """
        )
        is m
    )
    assert m.f is f and m.cb is cb  # identity kept: holders of f see the update
    assert f() == ("v2", 2, 20)
    assert f(5, k=6) == ("v2", 5, 6)
    assert f.__doc__ == "doc2"
    assert f.__annotations__ == {"return": "tuple"} or f.__annotations__ == {"return": tuple}
    assert cb() == "lambda2"


def test_function_reading_module_globals_sees_the_new_globals(mod: Mod) -> None:
    m = mod.load("LIMIT = 1\ndef over(x):\n    return x > LIMIT\n")
    over = m.over
    mod.deep("LIMIT = 100\ndef over(x):\n    return x > LIMIT\n")
    assert over(50) is False


def test_closure_gets_the_new_values_when_compatible(mod: Mod) -> None:
    m = mod.load(
        """
        def make(k):
            def inner():
                return ("v1", k)
            return inner
        inner = make(1)
        """
    )
    inner = m.inner
    mod.deep(
        """
        def make(k):
            def inner():
                return ("v2", k)
            return inner
        inner = make(2)
        """
    )
    # Same free variables: the held function runs the new code with the new closure.
    assert inner() == ("v2", 2)
    assert m.inner() == ("v2", 2)


def test_decorated_function_runs_new_code(mod: Mod) -> None:
    """A decorator returns a wrapper closing over the function: what a Qt signal or a
    menu holds is the wrapper, so the wrapper's closure must reach the new function."""
    m = mod.load(
        """
        import functools
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper
        @logged
        def on_click():
            return "v1"
        """
    )
    held = m.on_click
    mod.deep(
        """
        import functools
        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper
        @logged
        def on_click():
            return "v2"
        """
    )
    assert m.on_click() == "v2"
    assert held() == "v2"


def test_incompatible_closure_keeps_old_code_and_module_gets_new(mod: Mod) -> None:
    m = mod.load(
        """
        def make():
            a = 1
            def inner():
                return a
            return inner
        inner = make()
        """
    )
    held = m.inner
    mod.deep(
        """
        def make():
            a, b = 1, 2
            def inner():
                return (a, b)
            return inner
        inner = make()
        """
    )
    # Different free variables: the old function cannot take the new code; it keeps
    # working as before and the module has the new function.
    assert held() == 1
    assert m.inner() == (1, 2)
    assert m.inner is not held


# -- classes and instances ------------------------------------------------------------------

CLASS_V1 = """
class Tool:
    KEPT = "kept"
    CHANGED = 1
    REMOVED = "gone soon"

    def __init__(self, state):
        self.state = state

    def describe(self):
        return ("v1", self.state)

    def removed(self):
        return "removed"

    @classmethod
    def make(cls):
        return ("cm1", cls.__name__)

    @staticmethod
    def helper():
        return "sm1"

class Sub(Tool):
    def extra(self):
        return "sub1"
"""

CLASS_V2 = """
class Tool:
    KEPT = "kept"
    CHANGED = 2
    ADDED = "new attr"

    def __init__(self, state):
        self.state = state * 10

    def describe(self):
        return ("v2", self.state, self.added())

    def added(self):
        return "added"

    @classmethod
    def make(cls):
        return ("cm2", cls.__name__)

    @staticmethod
    def helper():
        return "sm2"

class Sub(Tool):
    def extra(self):
        return ("sub2", self.describe())
"""


def test_classes_get_added_changed_and_removed_members(mod: Mod) -> None:
    m = mod.load(CLASS_V1)
    Tool, Sub = m.Tool, m.Sub
    tool, sub = Tool(7), Sub(8)
    mod.deep(CLASS_V2)
    assert m.Tool is Tool and m.Sub is Sub
    assert (Tool.KEPT, Tool.CHANGED, Tool.ADDED) == ("kept", 2, "new attr")
    assert not hasattr(Tool, "REMOVED") and not hasattr(Tool, "removed")
    assert not hasattr(tool, "removed")
    assert Tool.make() == ("cm2", "Tool") and Tool.helper() == "sm2"
    # Instances keep their state and see the new methods.
    assert tool.state == 7 and tool.describe() == ("v2", 7, "added")
    assert isinstance(tool, m.Tool) and type(tool) is m.Tool
    assert sub.extra() == ("sub2", ("v2", 8, "added"))
    assert isinstance(sub, m.Tool)
    # New instances use the new __init__.
    assert m.Tool(1).state == 10


def test_attributes_a_host_attached_after_the_body_survive(mod: Mod) -> None:
    """issue 20 (7): a registry that sets attributes on a class after its body ran
    (Blender's ``register_class`` puts ``bl_rna`` into the class's ``__dict__``) keeps
    them across deep reloads; what the old body defined and the new one does not goes,
    also when the old body was itself a reloaded one."""
    m = mod.load(
        """
        import dataclasses
        @dataclasses.dataclass
        class Op:
            bl_idname = "tool.op"
            size: int = 1
            def execute(self):
                return "v1"
            def dropped(self):
                return "gone soon"
        """
    )
    Op = m.Op
    rna = object()

    def register(cls: Any) -> None:  # what a host's registry does
        cls.bl_rna = rna
        cls._registered_as = cls.bl_idname

    register(Op)
    mod.deep(
        """
        import dataclasses
        @dataclasses.dataclass
        class Op:
            bl_idname = "tool.op"
            size: int = 2
            def execute(self):
                return "v2"
            def added(self):
                return "new"
        """
    )
    assert m.Op is Op and Op().execute() == "v2" and Op().size == 2
    assert Op.__dict__["bl_rna"] is rna and Op._registered_as == "tool.op"
    assert not hasattr(Op, "dropped") and Op().added() == "new"
    # The record follows the class that kept its identity: the next reload still tells
    # the host's attributes from the body's.
    mod.deep(
        """
        import dataclasses
        @dataclasses.dataclass
        class Op:
            bl_idname = "tool.op"
            size: int = 3
            def execute(self):
                return "v3"
        """
    )
    assert Op().execute() == "v3" and Op.__dict__["bl_rna"] is rna
    assert not hasattr(Op, "added")


def test_from_import_in_another_session_module_runs_new_code(mod: Mod) -> None:
    mod.write(CLASS_V1 + "\ndef f():\n    return 'f1'\n")
    mod.write(
        f"from {mod.name} import Tool, f\n\ndef go():\n    return (f(), Tool(1).describe())\n",
        rel=f"{mod.name}_user.py",
    )
    user = mod.session.import_module(f"{mod.name}_user")
    m = mod.session.modules[mod.name]
    f, tool = user.f, user.Tool(3)
    mod.write(CLASS_V2 + "\ndef f():\n    return 'f2'\n")
    # Only the changed module, not its importer: the importer's references must update.
    assert mod.session.reload(m, deep=True) is m
    assert user.f is f and f() == "f2"
    assert user.Tool is m.Tool
    assert user.go() == ("f2", ("v2", 10, "added"))
    assert tool.describe() == ("v2", 3, "added")


class Window:
    """A stand-in for an open Qt window: holds slots (bound methods) and callbacks."""

    def __init__(self) -> None:
        self.slots: dict[str, Callable[[], Any]] = {}

    def connect(self, signal: str, slot: Callable[[], Any]) -> None:
        self.slots[signal] = slot

    def emit(self, signal: str) -> Any:
        return self.slots[signal]()


def test_open_window_runs_new_code_on_the_next_click(mod: Mod) -> None:
    m = mod.load(
        """
        class Controller:
            def __init__(self):
                self.clicks = 0
            def on_click(self):
                self.clicks += 1
                return ("v1", self.clicks)
        def on_menu():
            return "menu1"
        controller = Controller()
        """
    )
    window = Window()
    controller = m.Controller()
    window.connect("clicked", controller.on_click)
    window.connect("menu", m.on_menu)
    window.connect("lambda", lambda: controller.on_click())
    assert window.emit("clicked") == ("v1", 1)
    mod.deep(
        """
        class Controller:
            def __init__(self):
                self.clicks = 0
            def on_click(self):
                self.clicks += 100
                return ("v2", self.clicks)
        def on_menu():
            return "menu2"
        controller = Controller()
        """
    )
    assert window.emit("clicked") == ("v2", 101)  # new code, state kept
    assert window.emit("lambda") == ("v2", 201)
    assert window.emit("menu") == "menu2"


def test_super_in_both_versions_keeps_working(mod: Mod) -> None:
    m = mod.load(
        """
        class Base:
            def hello(self):
                return "base"
        class Child(Base):
            def hello(self):
                return ("child1", super().hello())
        """
    )
    child = m.Child()
    mod.deep(
        """
        class Base:
            def hello(self):
                return "base2"
        class Child(Base):
            def hello(self):
                return ("child2", super().hello())
        """
    )
    assert child.hello() == ("child2", "base2")
    assert m.Child().hello() == ("child2", "base2")


def test_method_that_starts_using_super_works(mod: Mod) -> None:
    m = mod.load(
        """
        class Base:
            def hello(self):
                return "base"
        class Child(Base):
            def hello(self):
                return "child1"
        """
    )
    child = m.Child()
    mod.deep(
        """
        class Base:
            def hello(self):
                return "base"
        class Child(Base):
            def hello(self):
                return ("child2", super().hello())
        """
    )
    assert m.Child().hello() == ("child2", "base")
    assert child.hello() == ("child2", "base")


def test_name_changing_kind_is_rebound_without_crash(mod: Mod) -> None:
    m = mod.load("def a():\n    return 1\nclass B:\n    pass\nC = 3\n")
    old_a = m.a
    mod.deep("class a:\n    pass\ndef B():\n    return 'B'\ndef C():\n    return 'C'\n")
    assert isinstance(m.a, type) and m.B() == "B" and m.C() == "C"
    assert old_a() == 1


def test_objects_from_other_modules_are_not_touched(mod: Mod) -> None:
    """Only what the module itself defines is updated: names it imports from elsewhere
    (the standard library, other session modules) are left as they are."""
    mod.write(
        "def helper():\n    return 'helper'\nclass Shared:\n    def v(self):\n"
        "        return 'shared'\n",
        rel=f"{mod.name}_lib.py",
    )
    m = mod.load(f"from os.path import join\nfrom {mod.name}_lib import helper, Shared\n")
    lib = mod.session.modules[f"{mod.name}_lib"]
    code, v_code = lib.helper.__code__, lib.Shared.v.__code__
    join = os.path.join
    mod.deep(
        f"from {mod.name}_lib import helper as join\n"
        "def helper():\n    return 'mine'\nclass Shared:\n    def v(self):\n        return 'mine'\n"
    )
    assert os.path.join is join and os.path.join("a", "b") == os.sep.join(["a", "b"])
    assert lib.helper.__code__ is code and lib.helper() == "helper"
    assert lib.Shared.v.__code__ is v_code and lib.Shared().v() == "shared"
    assert m.helper() == "mine"


# -- known hard cases -------------------------------------------------------------------------


def test_frozen_dataclass_instances_stay_frozen_and_see_new_methods(mod: Mod) -> None:
    m = mod.load(
        """
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            y: int = 0
            def norm(self):
                return ("v1", abs(self.x) + abs(self.y))
        """
    )
    Point = m.Point
    p = Point(3, -4)
    mod.deep(
        """
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            y: int = 0
            def norm(self):
                return ("v2", (self.x ** 2 + self.y ** 2) ** 0.5)
        """
    )
    assert m.Point is Point
    assert p.norm() == ("v2", 5.0)
    assert (p.x, p.y) == (3, -4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.Point(1).x = 2
    assert p == m.Point(3, -4) and hash(p) == hash(m.Point(3, -4))


def test_frozen_dataclass_with_an_added_field(mod: Mod) -> None:
    m = mod.load(
        """
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
        """
    )
    old = m.Point(1)
    mod.deep(
        """
        import dataclasses
        @dataclasses.dataclass(frozen=True)
        class Point:
            x: int
            z: int = 9
        """
    )
    new = m.Point(1, 2)
    assert (new.x, new.z) == (1, 2)
    assert [f.name for f in dataclasses.fields(m.Point)] == ["x", "z"]
    assert repr(new) == "Point(x=1, z=2)"
    assert new == m.Point(1, 2) and new != m.Point(1, 3)
    # The old instance keeps its state; the missing field reads the class default.
    assert old.x == 1 and old.z == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.z = 3


def test_enum_members_keep_their_identity(mod: Mod, warnings_log: pytest.LogCaptureFixture) -> None:
    """docs/contract.md §5: ``Color.RED is old_red`` after a deep reload; changed values and
    methods apply; added members appear; removed members go."""
    m = mod.load(
        """
        import enum
        class Color(enum.Enum):
            RED = 1
            GREEN = 2
            GONE = 3
            def label(self):
                return "old " + self.name
        def favourite():
            return Color.RED
        """
    )
    Color, red, green = m.Color, m.Color.RED, m.Color.GREEN
    lookup = {red: "r"}
    mod.deep(
        """
        import enum
        class Color(enum.Enum):
            RED = 1
            GREEN = 20
            BLUE = 4
            CRIMSON = 1
            def label(self):
                return "new " + self.name
        def favourite():
            return Color.BLUE
        """
    )
    assert refusals(warnings_log) == []
    assert m.Color is Color and m.Color.RED is red and m.Color.GREEN is green
    assert red.label() == "new RED" and green.value == 20
    assert Color(20) is green and Color(1) is red and Color["RED"] is red
    assert Color.CRIMSON is red  # an alias of the kept member
    blue = m.favourite()
    assert blue is Color.BLUE and type(blue) is Color and isinstance(blue, Color)
    assert Color(4) is blue and blue.label() == "new BLUE"
    assert [c.name for c in Color] == ["RED", "GREEN", "BLUE"]
    assert not hasattr(Color, "GONE") and "GONE" not in Color.__members__
    assert lookup[Color.RED] == "r"
    import pickle

    assert pickle.loads(pickle.dumps(Color.BLUE)) is blue


def test_enum_members_bound_at_module_level_keep_their_identity(mod: Mod) -> None:
    """issue 20 (4): every global that held an old member holds the same old member
    after a deep reload: a module-level alias, its ``from``-importers (reloaded after
    it), a class attribute and a default argument."""
    colors = """
        import enum
        class Color(enum.Enum):
            RED = 1
            GREEN = 2
        FAVOURITE = Color.{fav}
        PAIR = (Color.RED, Color.GREEN)
        LABELS = {{Color.RED: "Red", "by_name": [Color.GREEN]}}
        class Settings:
            mode = Color.RED
        def pick(c=Color.GREEN, *, k=Color.RED):
            return c, k
        """
    m = mod.load(colors.format(fav="RED"))
    use = f"{mod.name}_use"
    mod.write(
        f"from {mod.name} import FAVOURITE, Color\nIS_RED = FAVOURITE is Color.RED\n", f"{use}.py"
    )
    u = mod.session.import_module(use)
    red, green, settings = m.Color.RED, m.Color.GREEN, m.Settings
    mod.write(colors.format(fav="RED") + "VERSION = 2\n")
    assert mod.session.reload_stale(deep=True) == [mod.name, use]
    assert m.Color.RED is red and m.FAVOURITE is red
    assert u.FAVOURITE is red and u.IS_RED is True
    assert m.Settings is settings and settings.mode is red
    assert m.pick() == (green, red) and m.pick()[0] is green and m.pick()[1] is red
    # In plain containers too: a dict keyed by a member still finds the kept member.
    assert m.PAIR == (red, green) and m.PAIR[0] is red
    assert m.LABELS[red] == "Red" and m.LABELS["by_name"][0] is green
    # A new alias target is the kept member too.
    mod.write(colors.format(fav="GREEN"))
    assert mod.session.reload_stale(deep=True) == [mod.name, use]
    assert m.FAVOURITE is green and u.FAVOURITE is green and u.IS_RED is False


def test_int_enum_and_flag_keep_identity(mod: Mod) -> None:
    m = mod.load(
        """
        import enum
        class Level(enum.IntEnum):
            LOW = 1
            HIGH = 2
        class Perm(enum.Flag):
            R = 1
            W = 2
        """
    )
    low, r = m.Level.LOW, m.Perm.R
    mod.deep(
        """
        import enum
        class Level(enum.IntEnum):
            LOW = 1
            HIGH = 3
            TOP = 9
        class Perm(enum.Flag):
            R = 1
            W = 2
            X = 4
        """
    )
    assert m.Level.LOW is low and m.Level.HIGH == 3 and m.Level(9) is m.Level.TOP
    assert low < m.Level.TOP and isinstance(m.Level.TOP, m.Level)
    assert m.Perm.R is r and (m.Perm.R | m.Perm.X).value == 5


def test_a_failed_reload_puts_an_enum_back(mod: Mod) -> None:
    m = mod.load(
        """
        import enum
        class Color(enum.Enum):
            RED = 1
        """
    )
    Color, red = m.Color, m.Color.RED
    with pytest.raises(subsession.ReloadError):
        mod.deep(
            """
            import enum
            class Color(enum.Enum):
                RED = 5
                BLUE = 2
            raise RuntimeError("after the enum")
            """
        )
    assert m.Color is Color and red.value == 1 and Color(1) is red
    assert [c.name for c in Color] == ["RED"] and not hasattr(Color, "BLUE")


def test_property_to_method_and_back(mod: Mod) -> None:
    m = mod.load(
        """
        class Node:
            def __init__(self):
                self._name = "n"
            @property
            def name(self):
                return "prop:" + self._name
            def size(self):
                return 1
        """
    )
    node = m.Node()
    assert node.name == "prop:n" and node.size() == 1
    mod.deep(
        """
        class Node:
            def __init__(self):
                self._name = "n"
            def name(self):
                return "method:" + self._name
            @property
            def size(self):
                return 2
        """
    )
    assert node.name() == "method:n"
    assert node.size == 2
    mod.deep(
        """
        class Node:
            def __init__(self):
                self._name = "n"
            @property
            def name(self):
                return "prop2:" + self._name
            def size(self):
                return 3
        """
    )
    assert node.name == "prop2:n" and node.size() == 3


def test_changed_slots_are_refused(mod: Mod, warnings_log: pytest.LogCaptureFixture) -> None:
    m = mod.load(
        """
        class Changed:
            __slots__ = ("a",)
            def v(self):
                return "c1"
        """
    )
    Changed = m.Changed
    changed = Changed()
    changed.a = 1
    mod.deep(
        """
        class Changed:
            __slots__ = ("a", "b")
            def v(self):
                return "c2"
        """
    )
    (message,) = refusals(warnings_log)
    assert f"{mod.name}.Changed" in message and "__slots__" in message
    assert type(changed) is Changed and changed.v() == "c1" and changed.a == 1
    assert m.Changed is not Changed and m.Changed().v() == "c2"


def test_unchanged_slots_class_updates_in_place(
    mod: Mod, warnings_log: pytest.LogCaptureFixture
) -> None:
    m = mod.load(
        """
        class Same:
            __slots__ = ("a",)
            def v(self):
                return ("s1", self.a)
        """
    )
    Same = m.Same
    same = Same()
    same.a = 5
    mod.deep(
        """
        class Same:
            __slots__ = ("a",)
            def v(self):
                return ("s2", self.a)
        """
    )
    assert refusals(warnings_log) == []
    assert m.Same is Same
    assert same.a == 5  # the slot descriptor still matches the instance layout
    assert same.v() == ("s2", 5)
    fresh = m.Same()
    fresh.a = 6
    assert fresh.v() == ("s2", 6)


def test_changed_bases_are_refused(mod: Mod, warnings_log: pytest.LogCaptureFixture) -> None:
    m = mod.load(
        "class A:\n    pass\nclass B:\n    pass\nclass X(A):\n    def v(self):\n"
        "        return 'x1'\n"
    )
    X = m.X
    x = X()
    mod.deep(
        "class A:\n    pass\nclass B:\n    pass\nclass X(B):\n    def v(self):\n"
        "        return 'x2'\n"
    )
    (message,) = refusals(warnings_log)
    assert f"{mod.name}.X" in message and "base" in message
    assert type(x) is X and x.v() == "x1" and m.X().v() == "x2"
    assert m.X is not X


def test_refused_class_still_derives_from_the_module_classes(
    mod: Mod, warnings_log: pytest.LogCaptureFixture
) -> None:
    """After a deep reload the module is consistent: a class that could not be updated
    in place (new bases) derives from the classes the module now exposes."""
    m = mod.load("class A:\n    pass\nclass B:\n    pass\nclass X(A):\n    pass\n")
    mod.deep("class A:\n    pass\nclass B:\n    pass\nclass X(B):\n    pass\n")
    assert len(refusals(warnings_log)) == 1
    assert issubclass(m.X, m.B)
    assert isinstance(m.X(), m.B)


def test_c_types_bound_or_subclassed_do_not_crash(
    mod: Mod, warnings_log: pytest.LogCaptureFixture
) -> None:
    od_dict = dict(vars(collections.OrderedDict))
    m = mod.load(
        """
        import collections, array, datetime
        OD = collections.OrderedDict
        Array = array.array
        When = datetime.datetime
        class Ordered(collections.OrderedDict):
            def tag(self):
                return "o1"
        class Number(int):
            def tag(self):
                return "n1"
        class Failure(Exception):
            def tag(self):
                return "f1"
        """
    )
    ordered, number, failure = m.Ordered(a=1), m.Number(5), m.Failure("x")
    mod.deep(
        """
        import collections, array, datetime
        OD = collections.OrderedDict
        Array = array.array
        When = datetime.date
        class Ordered(collections.OrderedDict):
            def tag(self):
                return "o2"
        class Number(int):
            def tag(self):
                return "n2"
        class Failure(Exception):
            def tag(self):
                return "f2"
        """
    )
    import array
    import datetime

    assert m.OD is collections.OrderedDict and m.Array is array.array
    assert m.When is datetime.date
    assert dict(vars(collections.OrderedDict)) == od_dict  # the C type is untouched
    assert (ordered.tag(), number.tag(), failure.tag()) == ("o2", "n2", "f2")
    assert ordered == {"a": 1} and number + 1 == 6
    assert refusals(warnings_log) == []


def test_reload_all_deep_and_real_names(mod: Mod) -> None:
    m = mod.load("def f():\n    return 1\n")
    f = m.f
    mod.write("def f():\n    return 2\n")
    names = mod.session.reload_all(deep=True)
    assert names == [mod.name]
    assert not any(n.startswith(SESSION_PREFIX) for n in names)
    assert f() == 2
