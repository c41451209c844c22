fn main() {
    // macOS: -undefined dynamic_lookup for the extension (no-op elsewhere).
    pyo3_build_config::add_extension_module_link_args();
    // Test binaries embed Python: point their rpath at the libpython pyo3 found,
    // or they silently load the system's libpython instead of pyenv's.
    pyo3_build_config::add_libpython_rpath_link_args();
}
