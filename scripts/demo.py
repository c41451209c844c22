"""Two versions of one real library, side by side in one interpreter; then a compiled
library (PyYAML's C loader) in a session beside the host's own copy.

Run through ``scripts/demo``, which builds subsession and writes, locks and syncs the
studio config whose sessions this loads: ``demo.py CONFIG HOST_PYYAML_DIR``.
"""

from __future__ import annotations

import os
import sys

import subsession

# Tool code whose imports run only when called, long after the with-blocks closed.
LAZY_TOOL_CODE = """
def requirement(text):
    from packaging.requirements import Requirement
    from importlib.metadata import version
    return Requirement(text), version("packaging")
"""


def compiled(host_dir: str, tool: subsession.Session) -> dict[str, bool]:
    """PyYAML's C loader in a session beside the host's own PyYAML, used after the block."""
    sys.path.insert(0, host_dir)
    import yaml as host_yaml  # the host's copy, imported first, as Maya's start-up would

    sys.path.remove(host_dir)
    with tool:
        import yaml as tool_yaml
    doc = "shots: [sh010, sh020]\nfps: 24\n"
    # Host code, after the block: each copy's C loader builds its own copy's objects.
    loaded = {y.__version__: y.load(doc, Loader=y.CSafeLoader) for y in (host_yaml, tool_yaml)}
    for version, data in loaded.items():
        print(f"PyYAML {version} (C loader) read {data}")
    errors = []
    for y in (host_yaml, tool_yaml):
        try:
            y.load("x: !!python/name:os.system ''", Loader=y.CSafeLoader)
        except y.constructor.ConstructorError as error:
            errors.append(type(error))
    print(f"yaml_tool's compiled code imports in its session: {tool_yaml._yaml.__name__}")
    return {
        "two PyYAML versions, both with their C loader": host_yaml.__version__
        != tool_yaml.__version__
        and bool(host_yaml.__with_libyaml__ and tool_yaml.__with_libyaml__),
        "each C loader raised its own copy's error class": len(errors) == 2
        and errors[0] is not errors[1],
        "the host's yaml is still the global one": sys.modules["yaml"] is host_yaml,
    }


def main(config: str, yaml_host: str) -> int:
    # The sessions the config names; their paths are the synced wheels' store folders.
    old, new, yaml_tool = subsession.load_config(config)
    for session in (old, new, yaml_tool):
        print(f"{session.name}: {', '.join(os.path.basename(p) for p in session.paths)}")

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
    checks.update(compiled(yaml_host, yaml_tool))
    for record in subsession.versions():
        if record.conflict:
            print(f"versions(): {record.name} {record.version} in {record.session or 'the host'}")
    for check, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {check}")
    for session in (old, new, yaml_tool):
        report = session.close()
        print(f"closed {session.name}: {len(report.unloaded)} modules unloaded")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
