"""The import-table readers (src/native) on real binaries built for other OSes.

``_core._import_slots(path)`` reads any format on any OS: here it reads the Windows
(PE32+) and macOS (thin and universal Mach-O) extension modules of real PyPI wheels,
downloaded with ``pip download`` into the test cache outside the repository (see
``realpkgs.cache_root``). A failed download is a test failure, never a skip.

The expected offsets were read with other tools from the same pinned files:
``llvm-readobj --coff-imports`` (ImportAddressTableRVA + 8 * position) for PE and
``llvm-objdump --macho [--arch arm64] --indirect-symbols`` for Mach-O (the __TEXT
vmaddr of each is 0, so its addresses are the offsets).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import realpkgs
from subsession import _core

PYTHON_VERSION = "3.11"


def wheel(requirement: str, platform: str) -> Path:
    """The wheel of ``requirement`` for ``platform``, downloaded once into the cache."""
    folder = realpkgs.cache_root() / "foreign-wheels" / platform / requirement
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{requirement}-", dir=folder.parent))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        platform,
        "--python-version",
        PYTHON_VERSION,
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(staging),
        requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise realpkgs.FetchError(_explain(requirement, platform, str(exc))) from exc
    found = sorted(staging.glob("*.whl"))
    if proc.returncode != 0 or not found:
        shutil.rmtree(staging, ignore_errors=True)
        detail = (proc.stderr or proc.stdout).strip() or "no wheel downloaded"
        raise realpkgs.FetchError(_explain(requirement, platform, detail))
    if folder.exists():  # a concurrent download finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, folder)
    return sorted(folder.glob("*.whl"))[0]


def _explain(requirement: str, platform: str, detail: str) -> str:
    return (
        f"could not download the {platform} wheel of {requirement} (Python "
        f"{PYTHON_VERSION}) into {realpkgs.cache_root()} with pip from PyPI.\n"
        f"pip said: {detail[-2000:]}\n"
        "Fix: make PyPI reachable (proxy/index settings of pip), or point "
        "SUBSESSION_TEST_CACHE at a folder that already holds these wheels."
    )


def extension(requirement: str, platform: str, member: str) -> Path:
    """One file of the wheel, extracted next to it."""
    try:
        whl = wheel(requirement, platform)
    except realpkgs.FetchError as exc:
        pytest.fail(str(exc), pytrace=False)
    target = whl.parent / "extracted" / member
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(whl) as archive:
            data = archive.read(member)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        os.replace(partial, target)
    return target


NUMPY = "numpy==2.2.6"
LXML = "lxml==5.3.0"
NUMPY_WIN = "numpy/_core/_multiarray_umath.cp311-win_amd64.pyd"
NUMPY_MAC = "numpy/_core/_multiarray_umath.cpython-311-darwin.so"
LXML_WIN = "lxml/etree.cp311-win_amd64.pyd"
LXML_MAC = "lxml/etree.cpython-311-darwin.so"

# (requirement, platform, member) -> {symbol: (offset, read_only)}: every slot of a
# redirected function in the file, as llvm-readobj / llvm-objdump list them.
CASES: dict[tuple[str, str, str], dict[str, tuple[int, bool]]] = {
    # The IAT is in .rdata (no IMAGE_SCN_MEM_WRITE): read-only.
    (NUMPY, "win_amd64", NUMPY_WIN): {
        "PyCapsule_Import": (0x32B7A0, True),
        "PyImport_Import": (0x32BB08, True),
        "PyImport_ImportModule": (0x32BDB0, True),
    },
    (LXML, "win_amd64", LXML_WIN): {
        "PyThreadState_GetDict": (0x25B5B0, True),
        "PyImport_ImportModuleLevelObject": (0x25B988, True),
        "PyImport_ImportModule": (0x25B990, True),
        "PyImport_AddModule": (0x25BAD0, True),
        "PyImport_GetModule": (0x25BC10, True),
    },
    # Calls go through __DATA,__la_symbol_ptr: writable.
    (NUMPY, "macosx_11_0_arm64", NUMPY_MAC): {
        "PyCapsule_Import": (0x2A8068, False),
        "PyImport_Import": (0x2A8230, False),
        "PyImport_ImportModule": (0x2A8238, False),
    },
    (NUMPY, "macosx_10_9_x86_64", NUMPY_MAC): {
        "PyCapsule_Import": (0x5AC568, False),
        "PyImport_Import": (0x5AC730, False),
        "PyImport_ImportModule": (0x5AC738, False),
    },
    # Universal: each slice's slots, tagged with its architecture.
    (LXML, "macosx_10_9_universal2", LXML_MAC): {
        "x86_64:PyImport_AddModule": (0x3BD3F8, False),
        "x86_64:PyImport_GetModule": (0x3BD400, False),
        "x86_64:PyImport_ImportModule": (0x3BD410, False),
        "x86_64:PyImport_ImportModuleLevelObject": (0x3BD418, False),
        "x86_64:PyThreadState_GetDict": (0x3BD698, False),
        "arm64:PyImport_AddModule": (0x3B01D0, False),
        "arm64:PyImport_GetModule": (0x3B01D8, False),
        "arm64:PyImport_ImportModule": (0x3B01E8, False),
        "arm64:PyImport_ImportModuleLevelObject": (0x3B01F0, False),
        "arm64:PyThreadState_GetDict": (0x3B0470, False),
    },
}


@pytest.mark.parametrize(
    ("requirement", "platform", "member"),
    sorted(CASES),
    ids=[f"{r.split('==')[0]}-{p}" for r, p, _ in sorted(CASES)],
)
def test_slots_of_real_extension_modules(requirement: str, platform: str, member: str) -> None:
    path = extension(requirement, platform, member)
    slots = _core._import_slots(str(path))
    found = {symbol: (offset, read_only) for symbol, offset, read_only in slots}
    assert len(found) == len(slots), f"a symbol listed twice: {slots}"
    assert found == CASES[requirement, platform, member]


def test_the_expected_imports_are_there() -> None:
    """What the redirects exist for, named plainly: numpy imports modules and capsules,
    lxml keeps per-thread state."""
    for platform, member in (("win_amd64", NUMPY_WIN), ("macosx_11_0_arm64", NUMPY_MAC)):
        names = {s for s, _, _ in _core._import_slots(str(extension(NUMPY, platform, member)))}
        assert {"PyImport_ImportModule", "PyCapsule_Import"} <= names, platform
    names = {s for s, _, _ in _core._import_slots(str(extension(LXML, "win_amd64", LXML_WIN)))}
    assert "PyThreadState_GetDict" in names


def test_other_files_are_value_errors(tmp_path: Path) -> None:
    for name, data in {
        "empty": b"",
        "text": b"just some text, no library",
        "pe32": b"MZ" + b"\0" * 62,
        "fat": b"\xca\xfe\xba\xbe\xff\xff\xff\xff",
        "thin": b"\xcf\xfa\xed\xfe" + b"\0" * 28,
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError):
            _core._import_slots(str(path))
