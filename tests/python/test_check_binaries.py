"""scripts/check_binaries against small hand-made ELF, PE and Mach-O files: each rule
accepts a good binary and rejects the bad one it exists for. (CI also runs it on the
real cross-built binaries of the module zip.)"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEADER = (ROOT / "include" / "subsession.h").read_text(encoding="utf-8")
FUNCTIONS = sorted(set(re.findall(r"\b(subsession_[a-z0-9_]+)\s*\(", HEADER)))
EXPORTS = ["PyInit__core", *FUNCTIONS]


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_binaries"), "--binary", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def strings(names: list[str]) -> tuple[bytes, dict[str, int]]:
    table, offsets = b"\0", {}
    for name in names:
        offsets[name] = len(table)
        table += name.encode() + b"\0"
    return table, offsets


def elf(glibc: list[str], needed: list[str], exports: list[str]) -> bytes:
    """A minimal ELF64 shared object: .dynstr, .gnu.version_r, .dynamic, .dynsym."""
    dynstr, at = strings(["libc.so.6", *glibc, *needed, *exports])
    verneed = struct.pack("<HHIII", 1, len(glibc), at["libc.so.6"], 16, 0)
    for i, version in enumerate(glibc):
        last = i == len(glibc) - 1
        verneed += struct.pack("<IHHII", 0, 0, i + 2, at[version], 0 if last else 16)
    dynamic = b"".join(struct.pack("<qQ", 1, at[n]) for n in needed) + struct.pack("<qQ", 0, 0)
    dynsym = b"\0" * 24 + b"".join(
        struct.pack("<IBBHQQ", at[n], (1 << 4) | 2, 0, 1, 0x1000, 0) for n in exports
    )
    blobs = [(3, dynstr, 0, 0), (0x6FFFFFFE, verneed, 1, 0), (6, dynamic, 1, 16)]
    blobs.append((11, dynsym, 1, 24))
    body, sections, offset = b"", [b"\0" * 64], 64
    for kind, data, link, entsize in blobs:
        sections.append(
            struct.pack("<IIQQQQIIQQ", 0, kind, 0, 0, offset, len(data), link, 0, 8, entsize)
        )
        body += data
        offset += len(data)
    header = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, offset, 0, 64, 56, 0, 64, 5, 0)
    return header + body + b"".join(sections)


def pe(imports: list[str], exports: list[str], machine: int = 0x8664) -> bytes:
    """A minimal PE32+ DLL; one section mapping RVA == file offset."""
    head = bytearray(0x40)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x40)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", machine, 1, 0, 0, 0, 240, 0x2022)
    table_at = 0x40 + len(coff) + 240
    data_at = table_at + 40
    blob, names_at = bytearray(), {}
    for name in [*imports, *exports]:
        names_at[name] = data_at + len(blob)
        blob += name.encode() + b"\0"
    name_rvas_at = data_at + len(blob)
    blob += b"".join(struct.pack("<I", names_at[n]) for n in exports)
    export_at = data_at + len(blob)
    blob += struct.pack(
        "<IIHHIIIIIII", 0, 0, 0, 0, 0, 1, len(exports), len(exports), 0, name_rvas_at, 0
    )
    import_at = data_at + len(blob)
    for name in imports:
        blob += struct.pack("<IIIII", 0, 0, 0, names_at[name], 0)
    blob += b"\0" * 20
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<IIII", optional, 112, export_at, 40, import_at, 20 * (len(imports) + 1))
    size = data_at + len(blob)
    section = b".data\0\0\0" + struct.pack("<IIII", size, 0, size, 0) + b"\0" * 16
    return bytes(head) + coff + bytes(optional) + section + bytes(blob)


ARCHS = {"x86_64": 0x01000007, "arm64": 0x0100000C}


def thin(arch: str, symbols: list[str], dylibs: list[str]) -> bytes:
    """A minimal 64-bit Mach-O dylib: LC_LOAD_DYLIB per library, LC_SYMTAB."""
    commands = b""
    for lib in dylibs:
        name = lib.encode() + b"\0"
        name += b"\0" * (-len(name) % 8)
        commands += struct.pack("<IIIIII", 0xC, 24 + len(name), 24, 0, 0, 0) + name
    table, at = strings(["_" + s for s in symbols])
    symoff = 32 + len(commands) + 24
    stroff = symoff + 16 * len(symbols)
    commands += struct.pack("<IIIIII", 0x2, 24, symoff, len(symbols), stroff, len(table))
    nlist = b"".join(struct.pack("<IBBHQ", at["_" + s], 0x0F, 1, 0, 0) for s in symbols)
    header = struct.pack(
        "<IiiIIIII", 0xFEEDFACF, ARCHS[arch], 0, 6, len(dylibs) + 1, len(commands), 0, 0
    )
    return header + commands + nlist + table


def fat(slices: dict[str, bytes]) -> bytes:
    out = struct.pack(">II", 0xCAFEBABE, len(slices))
    offset = 4096
    body = b""
    for arch, data in slices.items():
        out += struct.pack(">iiIII", ARCHS[arch], 0, offset + len(body), len(data), 12)
        body += data + b"\0" * (-len(data) % 4096)
    return out + b"\0" * (offset - len(out)) + body


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


LIBC = ["libc.so.6"]
MAC_LIBS = ["/usr/lib/libSystem.B.dylib"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (elf(["GLIBC_2.2.5", "GLIBC_2.14"], LIBC, EXPORTS), None),
        (elf(["GLIBC_2.2.5", "GLIBC_2.17"], LIBC, EXPORTS), None),
        (elf(["GLIBC_2.2.5", "GLIBC_2.34"], LIBC, EXPORTS), "needs GLIBC_2.34, newer than"),
        (elf(["GLIBC_2.14"], [*LIBC, "libpython3.11.so.1.0"], EXPORTS), "must not link libpython"),
        (elf(["GLIBC_2.14"], LIBC, EXPORTS[:-1]), f"does not export ['{EXPORTS[-1]}']"),
        (pe(["python3.dll", "KERNEL32.dll"], EXPORTS), None),
        (pe(["python311.dll", "KERNEL32.dll"], EXPORTS), "it must import python3.dll only"),
        (pe(["python3.dll"], EXPORTS, machine=0x14C), "is not x86-64"),
        (pe(["python3.dll"], ["PyInit__core"]), "does not export"),
        (fat({a: thin(a, EXPORTS, MAC_LIBS) for a in ARCHS}), None),
        (fat({"x86_64": thin("x86_64", EXPORTS, MAC_LIBS)}), "it needs both x86_64 and arm64"),
        (thin("arm64", EXPORTS, MAC_LIBS), "not a universal (fat) Mach-O"),
        (
            fat({a: thin(a, EXPORTS, [*MAC_LIBS, "@rpath/libpython3.11.dylib"]) for a in ARCHS}),
            "must not link libpython",
        ),
        (
            fat({a: thin(a, EXPORTS[1:], MAC_LIBS) for a in ARCHS}),
            "does not define ['PyInit__core']",
        ),
    ],
)
def test_rules(tmp_path: Path, data: bytes, problem: str | None) -> None:
    done = check(write(tmp_path, "_core.bin", data))
    if problem is None:
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok ")
    else:
        assert done.returncode == 1, done.stdout
        assert done.stdout.startswith("FAIL ") and problem in done.stdout, done.stdout


def test_report_names_the_highest_glibc_and_the_python_dll(tmp_path: Path) -> None:
    linux = check(
        write(tmp_path, "a.so", elf(["GLIBC_2.3", "GLIBC_2.14", "GLIBC_2.2.5"], LIBC, EXPORTS))
    )
    assert "highest GLIBC symbol version: GLIBC_2.14" in linux.stdout
    windows = check(write(tmp_path, "a.pyd", pe(["KERNEL32.dll", "python3.dll"], EXPORTS)))
    assert "Python DLL: python3.dll only" in windows.stdout


def test_a_zip_without_every_platform_fails(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "subsession/platforms/linux/_core.abi3.so", elf(["GLIBC_2.14"], LIBC, EXPORTS)
        )
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_binaries"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no binary for mac, win64" in done.stdout
