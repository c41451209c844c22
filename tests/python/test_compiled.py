"""Compiled libraries in sessions: two versions of each, one per session, and a third
copy in the host, all used together, mostly AFTER the blocks exited and from host code
(docs/contract.md §3.3.11). Each scenario runs in a fresh interpreter: the host imports
its own copy first, as Maya's start-up would, then sessions import theirs.

The C code of a session's extension modules imports through the C API by real name
(numpy's lazy ``npy_cache_import``, pandas' ``PyCapsule_Import``, Cython's
``PyImport_ImportModuleLevelObject``); these tests fail with ``No module named ...``,
"not the same object", a wrong class or a crash (lxml) when that is not routed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import realpkgs
import subsession

PRELUDE = """\
import gc, json, os, pickle, sys, copy, io, warnings
import subsession
from subsession import Session
HOST, A, B = os.environ["T_HOST"], os.environ["T_A"], os.environ["T_B"]
def host_import(name):
    sys.path.insert(0, HOST)
    try:
        return __import__(name, fromlist=["_"])
    finally:
        sys.path.remove(HOST)
sa = Session(paths=[A])
sb = Session(paths=[B])
"""


def copy_of(key: str, tmp_path: Path) -> Path:
    """A second folder with the same version: other files, so a separate load."""
    target = tmp_path / f"{key}-copy"
    shutil.copytree(realpkgs.ensure(key), target)
    return target


def scenario(code: str, host: Path, a: Path, b: Path) -> str:
    """Runs PRELUDE + ``code`` in a fresh interpreter; returns its stdout."""
    # The subsession under test, wherever it was imported from (a wheel, the module zip).
    package_root = str(Path(subsession.__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, T_HOST=str(host), T_A=str(a), T_B=str(b), PYTHONPATH=pythonpath)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    assert "OK" in proc.stdout.splitlines(), proc.stdout
    return proc.stdout


def test_numpy_after_the_block_beside_the_hosts(tmp_path: Path) -> None:
    host = realpkgs.ensure("numpy-old")
    scenario(
        """
        hnp = host_import("numpy")
        with sa:
            import numpy as np_a
            y = np_a.arange(10)
        with sb:
            import numpy as np_b
            z = np_b.linspace(0, 1, 5)
        assert np_a is not np_b is not hnp and np_a.__version__ != hnp.__version__
        # Host code, no block open: numpy's C code imports numpy._core._methods lazily.
        assert y.mean() == 4.5 and round(float(y.std()), 3) == 2.872
        assert repr(y) == "array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])", repr(y)
        assert str(z) == "[0.   0.25 0.5  0.75 1.  ]", str(z)
        assert float(np_a.linalg.inv(np_a.eye(3) * 2).sum()) == 1.5
        assert copy.deepcopy(y).tolist() == list(range(10))
        assert (y.astype(float) / 2).max() == 4.5 and z.argmax() == 4
        try:
            y.reshape(3, 3)
        except ValueError as e:
            assert "cannot reshape" in str(e)
        # Pickling by the session's own code round-trips its objects.
        back = sa.run(lambda: pickle.loads(pickle.dumps(y)))
        assert type(back) is type(y) and back.tolist() == y.tolist()
        # The host's copy is untouched.
        h = hnp.arange(4)
        assert h.mean() == 1.5 and repr(h) == "array([0, 1, 2, 3])"
        assert pickle.loads(pickle.dumps(h)).tolist() == [0, 1, 2, 3]
        assert subsession._core._redirect_stats()[0] >= 2
        sa.close()
        assert hnp.arange(3).mean() == 1.0 and repr(hnp.arange(2)) == "array([0, 1])"
        assert z.mean() == 0.5
        print("OK")
        """,
        host,
        realpkgs.ensure("numpy-new"),
        copy_of("numpy-new", tmp_path),
    )


def test_lxml_two_copies_never_share_thread_state(tmp_path: Path) -> None:
    host = realpkgs.ensure("lxml-old")
    scenario(
        """
        hx = host_import("lxml.etree")
        with sa:
            from lxml import etree as e1
        with sb:
            from lxml import etree as e2
        assert e1.LXML_VERSION != hx.LXML_VERSION and e1 is not e2
        for i in range(300):
            for et in (e1, e2, hx):
                root = et.fromstring(b"<r><c n='1'>x</c><c n='2'/></r>")
                assert [c.get("n") for c in root.iter("c")] == ["1", "2"]
                assert et.tostring(et.Element("e%d" % i)) == b"<e%d/>" % i
                assert root.xpath("count(//c)") == 2.0
        try:
            e1.fromstring(b"<bad")
        except e1.XMLSyntaxError:
            pass
        sa.close()
        assert hx.tostring(hx.fromstring(b"<a/>")) == b"<a/>"
        assert e2.tostring(e2.fromstring(b"<b/>")) == b"<b/>"
        print("OK")
        """,
        host,
        realpkgs.ensure("lxml-new"),
        copy_of("lxml-old", tmp_path),
    )


def test_pyyaml_c_loader_binds_to_its_session(tmp_path: Path) -> None:
    host = realpkgs.ensure("pyyaml-old")
    scenario(
        """
        hy = host_import("yaml")
        with sa:
            import yaml as ya
        with sb:
            import yaml as yb
        assert ya.__version__ != hy.__version__ and ya.__with_libyaml__
        doc = "a: [1, 2]\\nb: {c: x}\\n"
        for y in (ya, yb, hy):
            assert y.load(doc, Loader=y.CSafeLoader) == {"a": [1, 2], "b": {"c": "x"}}
            assert y.load(y.dump({"k": 1}, Dumper=y.CDumper), Loader=y.CLoader) == {"k": 1}
            try:
                y.load("a: !!python/name:os.system x", Loader=y.CSafeLoader)
            except y.constructor.ConstructorError:
                pass  # this copy's own error class: its C loader built this copy's classes
            else:
                raise AssertionError("no ConstructorError")
        sa.close()
        assert hy.load("x: 1", Loader=hy.CSafeLoader) == {"x": 1}
        print("OK")
        """,
        host,
        realpkgs.ensure("pyyaml-new"),
        copy_of("pyyaml-old", tmp_path),
    )


def test_msgpack_markupsafe_orjson(tmp_path: Path) -> None:
    for lib in ("msgpack", "markupsafe", "orjson"):
        host = realpkgs.ensure(f"{lib}-old")
        scenario(
            f"""
            lib = {lib!r}
            h = host_import(lib)
            with sa:
                a = __import__(lib)
            with sb:
                b = __import__(lib)
            assert a is not b is not h
            if lib == "msgpack":
                for m in (a, b, h):
                    ts = m.Timestamp(1, 2)
                    back = m.unpackb(m.packb({{"t": ts, "e": m.ExtType(5, b"x")}}), timestamp=0)
                    assert type(back["t"]) is m.Timestamp and back["e"] == m.ExtType(5, b"x")
                    assert m.Packer is not h.Packer or m is h
                assert "msgpack._cmsgpack" in sa.modules  # the compiled packer, not the fallback
            elif lib == "markupsafe":
                for m in (a, b, h):
                    out = m.escape("<i>") + m.Markup("<b>")
                    assert type(out) is m.Markup and str(out) == "&lt;i&gt;<b>", (type(out), out)
                    assert type(m.escape("x")) is m.Markup
                    assert m.escape_silent(None) == m.Markup("")
            else:
                import datetime, dataclasses
                @dataclasses.dataclass
                class P:
                    x: int
                for m in (a, b, h):
                    data = m.dumps({{"p": P(1), "d": datetime.date(2024, 1, 2)}})
                    assert m.loads(data) == {{"p": {{"x": 1}}, "d": "2024-01-02"}}
                    try:
                        m.loads(b"{{")
                    except m.JSONDecodeError:
                        pass
            sa.close()
            print("OK")
            """,
            host,
            realpkgs.ensure(f"{lib}-new"),
            copy_of(f"{lib}-old", tmp_path),
        )


def test_pillow_and_protobuf(tmp_path: Path) -> None:
    scenario(
        """
        hpil = host_import("PIL.Image")
        with sa:
            from PIL import Image as ia
        with sb:
            from PIL import Image as ib
        assert ia is not hpil and ia.__version__ != hpil.__version__
        for im in (ia, ib, hpil):
            img = im.new("RGB", (4, 3), (255, 0, 0)).rotate(90, expand=True)
            buf = io.BytesIO(); img.save(buf, format="PNG")
            back = im.open(io.BytesIO(buf.getvalue()))
            assert back.size == (3, 4) and back.getpixel((0, 0)) == (255, 0, 0)
            assert back.convert("L").getpixel((1, 1)) == 76
        sa.close()
        assert hpil.new("L", (2, 2)).size == (2, 2)
        print("OK")
        """,
        realpkgs.ensure("pillow-old"),
        realpkgs.ensure("pillow-new"),
        copy_of("pillow-old", tmp_path),
    )
    scenario(
        """
        hs = host_import("google.protobuf.struct_pb2")
        hj = host_import("google.protobuf.json_format")
        with sa:
            from google.protobuf import struct_pb2 as sa_s, json_format as sa_j
        with sb:
            from google.protobuf import struct_pb2 as sb_s, json_format as sb_j
        assert sa_s is not hs and sa_s is not sb_s
        for s_mod, j_mod in ((sa_s, sa_j), (sb_s, sb_j), (hs, hj)):
            m = s_mod.Struct()
            m.update({"a": 1, "b": [True, "x"]})
            data = m.SerializeToString()
            back = s_mod.Struct.FromString(data)
            assert json.loads(j_mod.MessageToJson(back)) == {"a": 1.0, "b": [True, "x"]}
        sa.close()
        assert hs.Struct.FromString(hs.Struct().SerializeToString()) == hs.Struct()
        print("OK")
        """,
        realpkgs.ensure("protobuf-old"),
        realpkgs.ensure("protobuf-new"),
        copy_of("protobuf-old", tmp_path),
    )


def test_pydantic1_compiled_in_a_session_beside_host_pydantic2(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.mkdir()
    (tool / "p1tool.py").write_text(
        "from pydantic import BaseModel\n\n\nclass M(BaseModel):\n    x: int\n    name: str = 'a'\n"
    )
    host = realpkgs.ensure("pydantic-2.10.6")
    scenario(
        f"""
        sys.path.append(HOST)  # the host's pydantic 2 stays importable, as in Maya
        import pydantic as hp, pydantic.main
        sa.configure(paths=[A, {str(tool)!r}])
        mod = sa.import_module("p1tool")
        p1 = sa.import_module("pydantic")
        assert p1.VERSION.startswith("1.") and p1.compiled and hp.VERSION.startswith("2.")
        m = mod.M(x="3")
        assert m.dict() == {{"x": 3, "name": "a"}}
        assert json.loads(m.json()) == {{"x": 3, "name": "a"}}
        assert json.loads(mod.M.schema_json())["required"] == ["x"]
        try:
            mod.M(x="zz")
        except p1.ValidationError as e:
            assert "value is not a valid integer" in str(e)
        else:
            raise AssertionError("no ValidationError")
        class H(hp.BaseModel):
            y: int
        assert H(y="4").model_dump() == {{"y": 4}}
        sa.close()
        assert H(y=5).model_dump_json() == '{{"y":5}}'
        print("OK")
        """,
        host,
        realpkgs.ensure("pydantic-cython-1.10.21"),
        tmp_path,
    )


def test_pandas_scipy_tool_after_the_block_beside_host_numpy(tmp_path: Path) -> None:
    scenario(
        """
        hnp = host_import("numpy")
        with sa:
            import pandas as pd
            import scipy.stats
            df = pd.DataFrame({"a": [1, 2, 3], "b": [4.0, 5.5, 6.1]})
        assert df.sum().tolist() == [6.0, 15.6]
        assert repr(df).splitlines()[0].split() == ["a", "b"]
        assert df.describe().shape == (8, 2)
        expected = {"a": {"0": 1, "1": 2, "2": 3}, "b": {"0": 4.0, "1": 5.5, "2": 6.1}}
        assert json.loads(df.to_json()) == expected
        assert pd.to_datetime(["2024-03-01"]).month.tolist() == [3]
        assert scipy.stats.norm.cdf(0) == 0.5
        assert df.groupby("a").b.mean().to_dict() == {1: 4.0, 2: 5.5, 3: 6.1}
        assert hnp.arange(4).mean() == 1.5 and hnp.__version__ != pd.__version__
        report = sa.close()
        assert hnp.arange(3).mean() == 1.0 and repr(hnp.arange(2)) == "array([0, 1])"
        print("OK")
        """,
        realpkgs.ensure("numpy-old"),
        realpkgs.ensure("pandas-scipy"),
        tmp_path,
    )


def test_one_extension_file_in_two_sessions_is_shared_and_named(tmp_path: Path) -> None:
    folder = realpkgs.ensure("msgpack-new")
    out = scenario(
        """
        import logging
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("subsession").addHandler(handler)
        sb.configure(paths=[A])  # the same folder: the same extension files
        with sa:
            import msgpack as ma
        with sb:
            import msgpack as mb
        assert ma is not mb and mb.unpackb(mb.packb([1, "x"])) == [1, "x"]
        text = [r.getMessage() for r in records if "already loaded by session" in r.getMessage()]
        assert text and sa.prefix in text[0] and sb.prefix in text[0], text
        print(text[0])
        print("OK")
        """,
        folder,
        folder,
        tmp_path,
    )
    assert "its C code imports in session" in out
