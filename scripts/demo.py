"""Two versions of one real library, side by side in one interpreter.

Run through ``scripts/demo`` (which builds subsession and fetches the packages).
"""

from __future__ import annotations

import sys

import subsession

# Tool code whose imports run only when called, long after the with-blocks closed.
LAZY_TOOL_CODE = """
def requirement(text):
    from packaging.requirements import Requirement
    from importlib.metadata import version
    return Requirement(text), version("packaging")
"""


def main(old_dir: str, new_dir: str) -> int:
    old = subsession.Session("legacy_tool", paths=[old_dir])
    new = subsession.Session("modern_tool", paths=[new_dir])

    with old:
        import packaging.version as old_version  # packaging 20.9 (+ pyparsing)
    with new:
        import packaging.version as new_version  # packaging 24.2

    # The blocks are closed: both copies keep working, each in its own session.
    print(f"legacy_tool: {old_version.__name__}")
    print(f"modern_tool: {new_version.__name__}")
    print(f"'packaging' in the global sys.modules: {'packaging' in sys.modules}")

    legacy = old_version.parse("2.0-studio-build")  # 20.9: a LegacyVersion
    print(f"20.9 parses '2.0-studio-build' as {type(legacy).__name__}: {legacy}")
    try:
        new_version.parse("2.0-studio-build")
        print("24.2 parsed it too (unexpected)")
        return 1
    except new_version.InvalidVersion as error:
        print(f"24.2 rejects it: {error}")

    # Lazy imports after exit: code of each session imports its own modules.
    old_ns = old.exec(LAZY_TOOL_CODE)
    new_ns = new.exec(LAZY_TOOL_CODE)
    for label, ns in (("legacy_tool", old_ns), ("modern_tool", new_ns)):
        req, version = ns["requirement"]("maya-tools[ui]>=2.1; python_version>'3'")
        print(f"{label}: packaging {version} lazily built {type(req).__module__}.Requirement")

    checks = {
        "two different module objects": old_version is not new_version,
        "20.9 has LegacyVersion": hasattr(old_version, "LegacyVersion"),
        "24.2 has no LegacyVersion": not hasattr(new_version, "LegacyVersion"),
        "nothing leaked into the global namespace": "packaging" not in sys.modules,
        "pyparsing only in the legacy session": "pyparsing" in old.modules
        and "pyparsing" not in new.modules,
    }
    for check, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {check}")
    for session in (old, new):
        report = session.close()
        print(f"closed {session.name}: {len(report.unloaded)} modules unloaded")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
