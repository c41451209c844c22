"""Sessions from requirements (SPEC §5.1, docs/config.md "Requirements"): the config
keys, ``python -m subsession lock`` (uv), ``sync`` into the wheel store, start-up
checks, ``subsession.versions()`` and the manager's Versions view.

Real wheels from PyPI (packaging 20.9 and 24.2, pyparsing, the compiled MarkupSafe),
fetched once into the test cache (tests/python/wheelhouse.py); most tests lock offline
against that wheelhouse with ``--no-index``, one locks against PyPI for every target.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import subsession
from subsession import _requirements, _store
from subsession._requirements import RequirementsError
from wheelhouse import COMPILED, OTHER_PLATFORM, ensure_uv, ensure_wheelhouse

PACKAGE_ROOT = Path(subsession.__file__).resolve().parents[1]
TARGET = _requirements.current_target()
pytestmark = pytest.mark.skipif(TARGET is None, reason="no lock target for this platform")
PYTHON, _, PLATFORM = (TARGET or "--").partition("-")


@pytest.fixture(scope="module")
def uv() -> str:
    return ensure_uv()


@pytest.fixture(scope="module")
def house() -> Path:
    return ensure_wheelhouse()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv(_store.STORE_ENV, str(root))
    monkeypatch.delenv(_requirements.LOCK_ENV, raising=False)
    return root


@pytest.fixture
def closing() -> Iterator[list[subsession.Session]]:
    """Sessions a test got from load_config, closed at teardown."""
    made: list[subsession.Session] = []
    yield made
    for session in reversed(made):
        if not session.closed:
            session.close(force=True)


def studio(
    folder: Path, house: Path, *, new: str = '"packaging==24.2", "MarkupSafe==3.0.2"'
) -> Path:
    """Two tools locked to two versions of packaging, for this Python on this platform
    and on one other platform (the wheelhouse has wheels for both)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "studio.toml"
    # a TOML literal string: Windows backslashes stay as written
    config.write_text(
        textwrap.dedent(
            f"""\
            [defaults]
            find_links = ['{house}']
            pythons = ["{PYTHON}"]
            platforms = ["{PLATFORM}", "{OTHER_PLATFORM}"]

            [sessions.oldTool]
            requirements = ["packaging==20.9"]

            [sessions.newTool]
            requirements = [{new}]
            """
        ),
        encoding="utf-8",
    )
    return config


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- lock ---------------------------------------------------------------------------------


def test_lock_offline_from_a_wheelhouse(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    config = studio(tmp_path / "cfg", house)
    path = _requirements.lock([str(config)], no_index=True, uv=uv)
    assert path == str(tmp_path / "cfg" / "subsession.lock")
    lock = _requirements.read_lock(path)
    assert sorted(lock.sessions) == ["newTool", "oldTool"]
    old = lock.sessions["oldTool"]
    assert old.targets == [TARGET, f"{PYTHON}-{OTHER_PLATFORM}"]
    assert {(w.name, w.version) for w in old.wheels[TARGET]} == {
        ("packaging", "20.9"),
        ("pyparsing", "2.4.7"),
    }
    new = lock.sessions["newTool"]
    for target in new.targets:
        wheels = {w.name: w for w in new.wheels[target]}
        assert wheels["packaging"].version == "24.2"
        compiled = wheels["markupsafe"]
        # the compiled wheel is the one built for that target, hash and all
        assert compiled.file.startswith(f"MarkupSafe-3.0.2-cp{PYTHON.replace('.', '')}")
        assert ("win_amd64" in compiled.file) == target.endswith("windows_x86_64")
        assert compiled.sha256 == sha256(house / compiled.file)
        assert compiled.url is None  # a local wheel: sync finds it through find_links
    text = Path(path).read_text(encoding="utf-8")
    assert str(house) not in text and str(tmp_path) not in text


def test_lock_is_reproducible(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    first = _requirements.lock([str(studio(tmp_path / "a", house))], no_index=True, uv=uv)
    again = _requirements.lock([str(studio(tmp_path / "a", house))], no_index=True, uv=uv)
    elsewhere = _requirements.lock([str(studio(tmp_path / "b", house))], no_index=True, uv=uv)
    assert first == again
    data = Path(first).read_bytes()
    assert data == Path(elsewhere).read_bytes()


def test_conflict_is_one_line_naming_both(
    tmp_path: Path, uv: str, house: Path, store: Path
) -> None:
    config = studio(tmp_path, house, new='"packaging==20.9", "packaging==24.2"')
    with pytest.raises(RequirementsError) as caught:
        _requirements.lock([str(config)], no_index=True, uv=uv)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"sessions.newTool.requirements cannot be locked for {TARGET}: ")
    assert "packaging==20.9" in message and "packaging==24.2" in message
    assert not (tmp_path / "subsession.lock").exists()


def test_missing_uv_says_how_to_install_it(tmp_path: Path, house: Path) -> None:
    config = studio(tmp_path, house)
    env = dict(os.environ, PATH=str(tmp_path / "empty"), PYTHONPATH=str(PACKAGE_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "subsession", "lock", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "subsession lock: error: uv is not installed: run `python -m pip install uv` "
        "(or put uv on PATH), then lock again\n"
    )
    assert not (tmp_path / "subsession.lock").exists()


def test_uv_from_the_python_package(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    """No uv on PATH, but the ``uv`` package importable: its binary is used."""
    config = studio(tmp_path, house)
    package_dir = str(Path(uv).parents[1])  # <target>/bin/uv -> <target> holds uv/
    env = dict(
        os.environ,
        PATH=str(tmp_path / "empty"),
        PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), package_dir]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "subsession", "lock", "--no-index", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "subsession.lock").is_file()


def test_lock_against_pypi_for_every_target(tmp_path: Path, uv: str, store: Path) -> None:
    """The default targets: CPython 3.9-3.13 on Linux, Windows and both macOS arches."""
    config = tmp_path / "studio.toml"
    config.write_text(
        f'[sessions.t]\nrequirements = ["packaging==24.2", "{COMPILED}"]\n', encoding="utf-8"
    )
    started = time.perf_counter()
    lock = _requirements.read_lock(_requirements.lock([str(config)], uv=uv))
    seconds = time.perf_counter() - started
    locked = lock.sessions["t"]
    assert len(locked.targets) == 20, locked.targets
    for target in locked.targets:
        python, _, platform_name = target.partition("-")
        compiled = {w.name: w for w in locked.wheels[target]}["markupsafe"]
        assert f"-cp{python.replace('.', '')}-" in compiled.file, (target, compiled.file)
        # universal2 serves both macOS arches (MarkupSafe ships no x86_64 one for 3.9)
        expected = {
            "linux_x86_64": ("manylinux",),
            "windows_x86_64": ("win_amd64",),
            "macos_arm64": ("_arm64.", "_universal2."),
            "macos_x86_64": ("_x86_64.", "_universal2."),
        }[platform_name]
        assert any(e in compiled.file for e in expected), (target, compiled.file)
        assert compiled.url and compiled.url.endswith("/" + compiled.file)
    print(f"locked 20 targets against PyPI in {seconds:.1f}s")
    # and the wheels of this Python come from PyPI's URLs, hash-checked
    report = _store.sync([str(config)])
    assert sorted(report.installed) == sorted(w.file for w in locked.wheels[str(TARGET)])


# -- sync and start-up --------------------------------------------------------------------


def test_sync_then_both_tools_run_their_versions(
    tmp_path: Path,
    uv: str,
    house: Path,
    store: Path,
    closing: list[subsession.Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    # Before sync: start-up downloads nothing and says, once per session, what fixes it.
    with caplog.at_level(logging.WARNING, logger="subsession"):
        closing.extend(subsession.load_config(str(config)))
    lines = [r.getMessage() for r in caplog.records if r.name == "subsession"]
    assert len(lines) == 2, lines
    for name, line in zip(["oldTool", "newTool"], lines):
        assert line.startswith(f"session {name}: ") and "\n" not in line
        assert f"python -m subsession sync {config}" in line
    assert not store.exists()
    for session in closing:
        session.close()
    closing.clear()

    report = _store.sync([str(config)])
    assert len(report.installed) == 4 and not report.present
    assert sorted(os.listdir(store)) == sorted(
        _store.wheel_folder(w, str(store)).rsplit(os.sep, 1)[-1]
        for s in _requirements.read_lock(str(tmp_path / "subsession.lock")).sessions.values()
        for w in s.wheels[TARGET]
    )
    assert _store.sync([str(config)]).present  # the second sync finds everything there

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="subsession"):
        closing.extend(subsession.load_config(str(config)))
    assert [r for r in caplog.records if r.name == "subsession"] == []
    old, new = closing
    with old:
        import packaging.version

        assert packaging.__version__ == "20.9"  # type: ignore[attr-defined]
        assert packaging.__file__.startswith(str(store))
    with new:
        import markupsafe
        import packaging.version  # noqa: F811

        assert packaging.__version__ == "24.2"  # type: ignore[attr-defined]
        assert markupsafe.escape("<a>") == "&lt;a&gt;"
        assert markupsafe._speedups.__file__.startswith(str(store))  # type: ignore[attr-defined]
    records = {(r.name.lower(), r.session): r for r in subsession.versions()}
    assert records[("packaging", "oldTool")].version == "20.9"
    assert records[("packaging", "newTool")].version == "24.2"
    assert records[("packaging", "oldTool")].conflict
    assert records[("markupsafe", "newTool")].extensions
    assert not records[("markupsafe", "newTool")].shared_with_host


def test_sync_refuses_a_hash_mismatch(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    copy = tmp_path / "house"
    shutil.copytree(house, copy)
    config = studio(tmp_path / "cfg", copy)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    wheel = copy / "packaging-20.9-py2.py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    with pytest.raises(RequirementsError) as caught:
        _store.sync([str(config)])
    message = str(caught.value)
    assert message.startswith("packaging-20.9-py2.py3-none-any.whl: sha256 ")
    assert "does not match the lock's" in message and "\n" not in message
    assert [n for n in os.listdir(store) if n.startswith("packaging-20.9")] == []
    assert [n for n in os.listdir(store) if n.startswith(".tmp-")] == []


def test_interrupted_sync_leaves_no_half_folder(
    tmp_path: Path, uv: str, house: Path, store: Path
) -> None:
    """A sync killed in the middle of unpacking: the wheel's folder is absent (only a
    .tmp- folder nobody reads), start-up reports it missing, the next sync installs it."""
    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""\
        import sys, time, zipfile
        sys.path.insert(0, {str(PACKAGE_ROOT)!r})
        from subsession import _store
        real = zipfile.ZipFile.open
        def slow_open(self, *args, **kwargs):
            # after the first file is written: signal, then hang until killed
            if not getattr(slow_open, "done", False):
                slow_open.done = True
            else:
                open({str(ready)!r}, "w").close()
                time.sleep(60)
            return real(self, *args, **kwargs)
        zipfile.ZipFile.open = slow_open
        _store.sync([{str(config)!r}])
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "the sync ended before it was interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    names = os.listdir(store)
    assert [n for n in names if not n.startswith(".tmp-")] == []
    assert [n for n in names if n.startswith(".tmp-")], names
    parsed = subsession.config.parse_config(str(config))
    folders, problems = _store.session_paths(parsed, [str(config)])
    assert folders == {"oldTool": [], "newTool": []}
    assert len(problems) == 2
    report = _store.sync([str(config)])
    assert len(report.installed) == 4
    folders, problems = _store.session_paths(parsed, [str(config)])
    assert problems == [] and all(len(f) >= 2 for f in folders.values())


def test_sync_for_another_target(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    report = _store.sync([str(config)], target=f"{PYTHON}-{OTHER_PLATFORM}")
    assert any("win_amd64" in f or "macosx" in f for f in report.installed)
    unlocked = "3.9-linux_x86_64" if PYTHON != "3.9" else "3.10-linux_x86_64"
    with pytest.raises(RequirementsError, match=f"has no wheels for {unlocked}"):
        _store.sync([str(config)], target=unlocked)


def test_requirements_changed_since_the_lock(
    tmp_path: Path, uv: str, house: Path, store: Path
) -> None:
    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    studio(tmp_path, house, new='"packaging==24.2"')
    with pytest.raises(RequirementsError) as caught:
        _store.sync([str(config)])
    assert str(caught.value).startswith("session newTool: its requirements changed since ")
    assert f"python -m subsession lock {config}" in str(caught.value)


def test_cli_lock_sync_check(tmp_path: Path, uv: str, house: Path, store: Path) -> None:
    config = studio(tmp_path, house)
    env = dict(
        os.environ,
        PATH=str(Path(uv).parent) + os.pathsep + os.environ.get("PATH", ""),
        PYTHONPATH=str(PACKAGE_ROOT),
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "subsession", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    done = run("check", str(config))
    assert done.returncode == 1 and "no lock file" in done.stdout
    done = run("lock", "--no-index", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {tmp_path / 'subsession.lock'}\n"
    done = run("sync", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("4 wheels installed, 0 already there")
    done = run("check", str(config))
    assert (done.returncode, done.stdout) == (0, "every locked wheel is in the store\n")


# -- versions -------------------------------------------------------------------------------


def test_versions_flags_a_compiled_file_shared_with_the_host(
    tmp_path: Path, uv: str, house: Path, store: Path, new_session: Any
) -> None:
    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    _store.sync([str(config)])
    lock = _requirements.read_lock(str(tmp_path / "subsession.lock"))
    (compiled,) = [w for w in lock.sessions["newTool"].wheels[TARGET] if w.name == "markupsafe"]
    folder = _store.wheel_folder(compiled)
    # The host imports MarkupSafe from the store folder, then a session from the same one:
    # the session gets its own Python modules but the one loaded _speedups file.
    sys.path.insert(0, folder)
    try:
        import markupsafe as host

        # found even once its folder has left sys.path, as a host's start-up may do
        sys.path.remove(folder)
        session = new_session("sharesMarkupSafe", paths=[folder])
        with session:
            import markupsafe as inside

        assert inside is not host
        records = [r for r in subsession.versions() if r.key == "markupsafe"]
        by_owner = {r.session: r for r in records}
        assert set(by_owner) == {None, "sharesMarkupSafe"}
        assert by_owner[None].shared_with_host == ()
        (shared,) = by_owner["sharesMarkupSafe"].shared_with_host
        assert os.path.basename(shared).startswith("_speedups")
        assert not by_owner["sharesMarkupSafe"].conflict  # same version, same file
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
        for name in [n for n in sys.modules if n == "markupsafe" or n.startswith("markupsafe.")]:
            del sys.modules[name]


def test_manager_versions_view(
    tmp_path: Path,
    uv: str,
    house: Path,
    store: Path,
    closing: list[subsession.Session],
) -> None:
    import uihelp
    from subsession import ui

    uihelp.app()

    config = studio(tmp_path, house)
    _requirements.lock([str(config)], no_index=True, uv=uv)
    _store.sync([str(config)])
    closing.extend(subsession.load_config(str(config)))
    for session in closing:
        session.import_module("packaging.version")
    manager = ui.SessionManager(stale_interval=0)
    try:
        manager.show()
        manager.tabs.setCurrentWidget(manager.versions_view)
        view = manager.versions_view
        view.refresh()
        assert "packaging" in view.conflicts()
        view.only_conflicts.setChecked(True)
        tops = [view.tree.topLevelItem(i) for i in range(view.tree.topLevelItemCount())]
        packaging_rows = [t for t in tops if t is not None and t.text(0) == "packaging"]
        assert len(packaging_rows) == 1
        row = packaging_rows[0]
        assert "20.9" in row.text(1) and "24.2" in row.text(1)
        owners = {row.child(i).text(2): row.child(i).text(1) for i in range(row.childCount())}
        assert owners["oldTool"] == "20.9" and owners["newTool"] == "24.2"
        assert "loaded at" in row.text(5)
        # A session closed elsewhere disappears from the view on its own.
        closing[0].close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(r.session == "oldTool" for r in view.records):
            uihelp.pump(0.02)
        assert not any(r.session == "oldTool" for r in view.records)
    finally:
        manager.close()
        manager.deleteLater()


def test_versions_of_hand_made_installs(tmp_path: Path, new_session: Any) -> None:
    """Distributions whose RECORD is empty are still found (top_level.txt); modules
    nobody imported are not listed."""
    from conftest import make_dist_info, write_files

    roots = {}
    for version in ("1.0", "2.0"):
        root = tmp_path / version
        write_files(root, {"studio_lib_x/__init__.py": f"V = {version!r}\n", "unused_x.py": ""})
        make_dist_info(root, "studio-lib-x", version, top_level="studio_lib_x")
        make_dist_info(root, "unused-x", version, top_level="unused_x")
        roots[version] = root
    one = new_session("libOne", paths=[str(roots["1.0"])])
    two = new_session("libTwo", paths=[str(roots["2.0"])])
    one.import_module("studio_lib_x")
    two.import_module("studio_lib_x")
    records = [r for r in subsession.versions() if r.key in ("studio-lib-x", "unused-x")]
    assert [(r.name, r.version, r.session, r.conflict) for r in records] == [
        ("studio-lib-x", "1.0", "libOne", True),
        ("studio-lib-x", "2.0", "libTwo", True),
    ]
    assert records[0].modules == ("studio_lib_x",)
    assert records[0].location == str(roots["1.0"])
    # installed into the same folder after the first look: seen (the folder changed)
    write_files(roots["1.0"], {"late_x.py": ""})
    make_dist_info(roots["1.0"], "late-x", "0.3", top_level="late_x")
    one.import_module("late_x")
    late = [(r.name, r.version, r.session) for r in subsession.versions() if r.key == "late-x"]
    assert late == [("late-x", "0.3", "libOne")]
