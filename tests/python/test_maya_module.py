"""The Maya module around the plug-in: subsession.mod, scripts/package and
scripts/install (with a stand-in binary: these tests check layout, not the build),
and scripts/maya_smoke.py run against the fake Maya."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import realpkgs
import subsession

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fake_maya"
HEADERS = {"linux": b"\x7fELF\x02\x01\x01", "mac": b"\xcf\xfa\xed\xfe\x07", "win64": b"MZ\x90\x00"}
NAMES = {"linux": "_core.abi3.so", "mac": "_core.abi3.so", "win64": "_core.pyd"}


def script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def fake_binary(tmp_path: Path, platform: str) -> Path:
    path = tmp_path / "built" / platform / NAMES[platform]
    path.parent.mkdir(parents=True)
    path.write_bytes(HEADERS[platform] + b"\0" * 64)
    return path


def package(tmp_path: Path, *platforms: str) -> Path:
    binaries: list[str] = []
    for platform in platforms or ("linux",):
        binaries += ["--binary", str(fake_binary(tmp_path, platform))]
    done = script("package", *binaries, "--out", str(tmp_path / "dist"))
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def test_mod_file_blocks() -> None:
    text = (ROOT / "maya" / "subsession.mod").read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    # A block per platform and Maya 2023-2027 (MAYAVERSION is an exact match): Maya 2022
    # and older (Python 3.7) skip the checkout's module, as they skip the zip's.
    assert {tuple(b.split()[1:3]) for b in blocks} == {
        (f"MAYAVERSION:{m}", f"PLATFORM:{p}")
        for m in range(2023, 2028)
        for p in ("linux", "mac", "win64")
    }
    assert len(blocks) == 15
    for block in blocks:
        head, *lines = block.strip().splitlines()
        assert head.split()[3:] == ["subsession", subsession.__version__, "."]
        for line in lines:
            key, _, value = line.partition(":")
            assert key in ("scripts", "plug-ins") and (ROOT / "maya" / value.strip()).is_dir()


def mod_blocks(text: str) -> list[tuple[str, str, list[str]]]:
    """(MAYAVERSION, PLATFORM, module words) of each block of a .mod."""
    out = []
    for line in text.splitlines():
        if line.startswith("+ "):
            words = line.split()
            conditions = dict(w.split(":", 1) for w in words[1:] if ":" in w)
            module = [w for w in words[1:] if ":" not in w]  # name, version, path
            out.append((conditions.get("MAYAVERSION", ""), conditions["PLATFORM"], module))
    return out


def test_package_one_zip_for_three_platforms(tmp_path: Path) -> None:
    zip_path = package(tmp_path, "linux", "win64", "mac")
    assert zip_path.name == f"subsession-maya-{subsession.__version__}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        top = archive.read("subsession.mod").decode()
        inner = archive.read("subsession/subsession.mod").decode()
        plugin = archive.read("subsession/plug-ins/subSession.py")
        binaries = {p: archive.read(f"subsession/platforms/{p}/{NAMES[p]}") for p in NAMES}
    blocks = mod_blocks(top)
    # A block per platform and Maya 2023-2027: a .mod MAYAVERSION is an exact match, so
    # Maya 2022 and older (Python 3.7) skip the module.
    assert {(m, p) for m, p, _ in blocks} == {
        (str(m), p) for m in range(2023, 2028) for p in ("linux", "mac", "win64")
    }
    assert len(blocks) == 15
    version = subsession.__version__
    assert {tuple(w) for _, _, w in blocks} == {("subsession", version, "subsession")}
    assert {tuple(w) for _, _, w in mod_blocks(inner)} == {("subsession", version, ".")}
    assert top.count("scripts: scripts") == 15 and top.count("plug-ins: plug-ins") == 15
    assert plugin == (ROOT / "maya" / "plug-ins" / "subSession.py").read_bytes()
    for platform, data in binaries.items():
        assert data.startswith(HEADERS[platform])
    for needed in ("__init__.py", "_session.py", "_platform.py", "command.py", "maya.py"):
        assert f"subsession/scripts/subsession/{needed}" in names
    # One copy of the package; the binaries only under platforms/.
    assert len([n for n in names if n.endswith("/__init__.py")]) == 1
    cores = sorted(n for n in names if "/_core" in n and not n.endswith(".pyi"))
    assert cores == sorted(f"subsession/platforms/{p}/{NAMES[p]}" for p in NAMES)
    assert "subsession/drag_into_maya.py" in names
    assert {"subsession/LICENSE", "subsession/CHANGELOG.md"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.parametrize("platform", ["linux", "mac", "win64"])
def test_package_one_platform(tmp_path: Path, platform: str) -> None:
    zip_path = package(tmp_path, platform)
    assert zip_path.name == f"subsession-maya-{subsession.__version__}-{platform}.zip"
    with zipfile.ZipFile(zip_path) as archive:
        top = archive.read("subsession.mod").decode()
        cores = [n for n in archive.namelist() if "/_core" in n and not n.endswith(".pyi")]
    assert {p for _, p, _ in mod_blocks(top)} == {platform}
    assert cores == [f"subsession/platforms/{platform}/{NAMES[platform]}"]


def test_package_rejects_two_binaries_of_one_platform(tmp_path: Path) -> None:
    first = fake_binary(tmp_path, "linux")
    second = tmp_path / "other" / "_core.abi3.so"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    done = script(
        "package", "--binary", str(first), "--binary", str(second), "--out", str(tmp_path)
    )
    assert done.returncode != 0 and "two linux binaries given" in done.stderr


def test_package_rejects_what_is_not_a_binary(tmp_path: Path) -> None:
    bogus = tmp_path / "_core.abi3.so"
    bogus.write_text("not a binary")
    done = script("package", "--binary", str(bogus), "--out", str(tmp_path))
    assert done.returncode != 0 and "is not a Linux, macOS or Windows binary" in done.stderr
    other = tmp_path / "libfoo.so"
    other.write_bytes(HEADERS["linux"])
    done = script("package", "--binary", str(other), "--out", str(tmp_path))
    assert done.returncode != 0 and "is not a _core binary" in done.stderr


def test_install_zip_into_target_and_replace(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    target = tmp_path / "modules"
    stale = target / "subsession" / "scripts" / "old.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    done = script("install", str(zip_path), "--target", str(target))
    assert done.returncode == 0, done.stderr
    assert mod_blocks((target / "subsession.mod").read_text())[0][1:] == (
        "linux",
        ["subsession", subsession.__version__, "subsession"],
    )
    assert (target / "subsession" / "plug-ins" / "subSession.py").is_file()
    assert (target / "subsession" / "platforms" / "linux" / "_core.abi3.so").is_file()
    assert not stale.exists()


def test_install_default_target_is_maya_app_dir(tmp_path: Path) -> None:
    zip_path = package(tmp_path)
    done = script("install", str(zip_path), env={"MAYA_APP_DIR": str(tmp_path / "app")})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "app" / "modules" / "subsession.mod").is_file()


def test_install_errors(tmp_path: Path) -> None:
    done = script("install", str(tmp_path / "nope.zip"), "--target", str(tmp_path))
    assert done.returncode != 0 and "does not exist; run scripts/package" in done.stderr
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "")
    done = script("install", str(other), "--target", str(tmp_path / "m"))
    assert done.returncode != 0 and "is not a subsession module zip" in done.stderr


@pytest.mark.parametrize("name", ["build", "package", "install", "typecheck_maya"])
def test_scripts_have_help(name: str) -> None:
    path = ROOT / "scripts" / name
    command = (
        [str(path), "--help"] if name == "typecheck_maya" else [sys.executable, str(path), "--help"]
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"scripts/{name}" in done.stdout


def test_smoke_script_against_the_fake_maya(tmp_path: Path) -> None:
    # Maya ships numpy: a real one on the path, for the compiled-code step.
    numpy_folder = str(realpkgs.ensure("numpy-new"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FAKE), numpy_folder, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "maya_smoke.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line for line in lines if line.startswith("FAIL")] == []
    assert len([line for line in lines if line.startswith("PASS")]) == 19
    assert "(skipped" not in done.stdout, done.stdout
    assert lines[-1] == "smoke: all steps passed"


# -- the artists' installer and the per-platform core ----------------------------------------


def extracted(tmp_path: Path) -> Path:
    """The module zip (stand-in binaries) extracted into an extra folder, as artists do."""
    zip_path = package(tmp_path, "linux", "win64", "mac")
    folder = tmp_path / "Downloads" / zip_path.stem
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    return folder / "subsession"


def load_installer(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("drag_into_maya", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_fake_maya(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if str(FAKE) not in sys.path:
        sys.path.append(str(FAKE))
    import fakehost

    from maya import _host

    fakehost.fresh_maya(monkeypatch)
    monkeypatch.setenv("MAYA_PLUG_IN_PATH", "")
    monkeypatch.setattr(sys, "path", list(sys.path))
    _host.state.app_dir = str(tmp_path / "prefs" / "maya")
    return _host


def unload_and_reset() -> None:
    from maya import _host, cmds

    if cmds.pluginInfo("subSession", query=True, loaded=True):
        cmds.unloadPlugin("subSession")
    _host.reset()


VERSIONED = f"subsession-{subsession.__version__}"


def test_drag_and_drop_installs_for_the_user_and_loads_the_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = extracted(tmp_path)
    start_fake_maya(tmp_path, monkeypatch)
    from maya import cmds

    try:
        installer = load_installer(source / "drag_into_maya.py")
        installer.onMayaDroppedPythonFile(None)
        modules = tmp_path / "prefs" / "maya" / "modules"
        installed = modules / VERSIONED
        blocks = mod_blocks((modules / "subsession.mod").read_text())
        assert len(blocks) == 15 and {tuple(w) for _, _, w in blocks} == {
            ("subsession", subsession.__version__, VERSIONED)
        }
        for platform, name in NAMES.items():
            assert (installed / "platforms" / platform / name).is_file()
        assert (installed / "scripts" / "subsession" / "__init__.py").is_file()
        assert (installed / "LICENSE").read_text().startswith("MIT License")
        plugin = cmds.pluginInfo("subSession", query=True, path=True)
        assert plugin == str(installed / "plug-ins" / "subSession.py")
        assert str(installed / "scripts") in sys.path
        assert str(installed / "plug-ins") in os.environ["MAYA_PLUG_IN_PATH"]
        out = capsys.readouterr().out
        assert "the subSession command is loaded" in out and "what changed" in out
        # Dropping the installed copy itself leaves everything in place.
        load_installer(installed / "drag_into_maya.py").install(str(modules))
        assert (installed / "scripts" / "subsession" / "__init__.py").is_file()
        assert installer.active_install(str(modules)) == str(installed)
    finally:
        unload_and_reset()


def lock_while_loaded(monkeypatch: pytest.MonkeyPatch, locked: Path) -> list[str]:
    """Deleting ``locked`` (a loaded _core) or renaming/removing a folder holding it
    raises PermissionError, as on Windows (Linux deletes an open file, so the lock is
    simulated); returns the refused operations."""
    refused: list[str] = []
    held = os.path.normcase(os.path.abspath(locked))

    def holds(path: Any) -> bool:
        path = os.path.normcase(os.path.abspath(os.fspath(path)))
        return held == path or held.startswith(path + os.sep)

    def guard(name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("dir_fd") is None and any(holds(a) for a in args[:1]):
                refused.append(f"{name} {args[0]}")
                raise PermissionError(13, "The process cannot access the file", str(args[0]))
            return original(*args, **kwargs)

        return call

    for name in ("remove", "unlink", "rmdir", "rename", "replace"):
        monkeypatch.setattr(os, name, guard(name, getattr(os, name)))
    # Windows has no dir_fd: shutil.rmtree deletes by path there, so it meets the lock.
    monkeypatch.setattr(shutil, "_use_fd_functions", False)
    return refused


def test_upgrade_never_deletes_a_loaded_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = _platform_name()
    source = extracted(tmp_path)
    start_fake_maya(tmp_path, monkeypatch)
    from maya import cmds

    modules = tmp_path / "prefs" / "maya" / "modules"
    try:
        installer = load_installer(source / "drag_into_maya.py")
        installer.onMayaDroppedPythonFile(None)
        first = modules / VERSIONED
        before = sorted(p.relative_to(first) for p in first.rglob("*"))
        refused = lock_while_loaded(monkeypatch, first / "platforms" / here / NAMES[here])
        # A newer zip dropped on the same Maya, the old core loaded.
        installer.onMayaDroppedPythonFile(None)
        second = modules / f"{VERSIONED}-2"
        assert installer.active_install(str(modules)) == str(second)
        assert (second / "platforms" / here / NAMES[here]).is_file()
        assert (first / ".subsession-obsolete").is_file()
        after = sorted(p.relative_to(first) for p in first.rglob("*"))
        assert [p for p in before if p not in after] == []  # nothing of it was deleted
        assert refused == []  # and nothing was even tried
        assert cmds.pluginInfo("subSession", query=True, loaded=True)
        # The next start-up runs the new version: the old folder stays while held...
        import subsession.maya

        assert subsession.maya.remove_old_installs(str(second)) == []
        assert (first / "scripts" / "subsession" / "__init__.py").is_file()
        assert refused and all(r.startswith("rename ") for r in refused)
        # ... and goes once no Maya holds it; the running install stays.
        monkeypatch.undo()
        assert subsession.maya.remove_old_installs(str(second)) == [str(first)]
        assert not first.exists() and (second / "scripts").is_dir()
        assert sorted(p.name for p in modules.iterdir()) == [f"{VERSIONED}-2", "subsession.mod"]
    finally:
        unload_and_reset()


def test_failed_upgrade_leaves_the_old_install_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = extracted(tmp_path)
    start_fake_maya(tmp_path, monkeypatch)
    from maya import cmds

    modules = tmp_path / "prefs" / "maya" / "modules"
    try:
        installer = load_installer(source / "drag_into_maya.py")
        installer.install(str(modules))
        first = modules / VERSIONED
        mod_before = (modules / "subsession.mod").read_text()
        files_before = sorted(p.relative_to(first) for p in first.rglob("*"))
        copied: list[str] = []
        real_copy = shutil.copyfile

        def copy_then_fail(src: str, dst: str, **kwargs: Any) -> Any:
            if len(copied) == 5:  # the disk fills up, or Maya is killed, mid-copy
                raise OSError(28, "No space left on device", dst)
            copied.append(dst)
            return real_copy(src, dst, **kwargs)

        monkeypatch.setattr(shutil, "copyfile", copy_then_fail)
        with pytest.raises(RuntimeError, match="is still installed and works"):
            installer.install(str(modules))
        monkeypatch.setattr(shutil, "copyfile", real_copy)
        assert (modules / "subsession.mod").read_text() == mod_before
        assert sorted(p.relative_to(first) for p in first.rglob("*")) == files_before
        assert not (first / ".subsession-obsolete").exists()
        assert sorted(p.name for p in modules.iterdir()) == [VERSIONED, "subsession.mod"]
        # Maya starting now loads the old version from what the .mod names.
        active = installer.active_install(str(modules))
        monkeypatch.setenv("MAYA_PLUG_IN_PATH", os.path.join(active, "plug-ins"))
        cmds.loadPlugin("subSession.py")
        assert cmds.pluginInfo("subSession", query=True, path=True) == str(
            first / "plug-ins" / "subSession.py"
        )
    finally:
        unload_and_reset()


def _platform_name() -> str:
    from subsession import _platform

    return _platform.maya_platform()


def test_drag_and_drop_refuses_old_maya_and_foreign_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if str(FAKE) not in sys.path:
        sys.path.append(str(FAKE))
    import fakehost

    from maya import _host

    source = extracted(tmp_path)
    fakehost.fresh_maya(monkeypatch)
    _host.state.app_dir = str(tmp_path / "prefs")
    _host.state.api_version = 20220000
    try:
        installer = load_installer(source / "drag_into_maya.py")
        with pytest.raises(RuntimeError, match="needs Maya 2023 or later"):
            installer.onMayaDroppedPythonFile(None)
        assert not (tmp_path / "prefs" / "modules").exists()
        with pytest.raises(RuntimeError, match="is not an extracted subsession module"):
            installer.install(str(tmp_path / "m"), source=str(tmp_path))
    finally:
        _host.reset()


def test_drag_and_drop_script_outside_maya(tmp_path: Path) -> None:
    source = extracted(tmp_path)
    done = subprocess.run(
        [sys.executable, str(source / "drag_into_maya.py"), "--target", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m" / "subsession.mod").is_file()
    assert (tmp_path / "m" / VERSIONED / "platforms" / "win64" / "_core.pyd").is_file()


def test_the_package_finds_its_platforms_core(tmp_path: Path) -> None:
    from subsession import _platform

    assert _platform.maya_platform("linux") == "linux"
    assert _platform.maya_platform("win32") == "win64"
    assert _platform.maya_platform("darwin") == "mac"
    package_dir = tmp_path / "subsession" / "scripts" / "subsession"
    package_dir.mkdir(parents=True)
    here = _platform.maya_platform()
    assert _platform.core_path([str(package_dir)]) == [str(package_dir)]  # no platforms/
    (tmp_path / "subsession" / "platforms" / here).mkdir(parents=True)
    assert _platform.core_path([str(package_dir)]) == [
        str(package_dir),
        str(tmp_path / "subsession" / "platforms" / here),
    ]
    (package_dir / NAMES[here]).write_bytes(b"")  # a development build: stays as is
    assert _platform.core_path([str(package_dir)]) == [str(package_dir)]


def test_the_upgrade_shows_what_changed_since_the_installed_version(tmp_path: Path) -> None:
    installer = load_installer(ROOT / "scripts" / "drag_into_maya.py")
    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## [Unreleased]\n\n- next\n\n## [0.3.0] - 2027-02-01\n\n- three\n\n"
        "## [0.2.0] - 2027-01-01\n\n- two\n\n## [0.1.0] - 2026-11-21\n\n- one\n",
        encoding="utf-8",
    )
    shown = installer.changes_since(str(tmp_path), "0.1.0")
    assert "- three" in shown and "- two" in shown and "- one" not in shown
    assert "next" not in shown  # unreleased notes are not a version's
    assert installer.changes_since(str(tmp_path), None).startswith("## [0.3.0]")
    assert installer.changes_since(str(tmp_path), "0.3.0") == ""
    assert installer.changes_since(str(tmp_path / "none"), "0.1.0") == ""
    # The repository's own changelog parses, and ships with the license in the zip.
    assert installer.changes_since(str(ROOT), None).startswith(f"## [{subsession.__version__}]")
