//! subsession: sub-sessions for one long-running Python interpreter.
//!
//! One cdylib is both the CPython extension `subsession._core` (pyo3, abi3-py39) and a
//! C ABI for C/C++ hosts (header `include/subsession.h`). The product contract is
//! `docs/contract.md`; how isolation works is `docs/design.md`.
//!
//! Layers, bottom up; a module uses only those listed before it:
//!
//! 1. [`base`]: names, the sharing policy, interpreter handles, errors.
//! 2. [`native`]: loaded libraries' import tables (ELF, Mach-O, PE), pure Rust.
//! 3. [`config`]: the studio config (TOML/JSON, layered), pure Rust.
//! 4. [`tracking`]: file stamps and the import graph, pure Rust.
//! 5. [`state`]: one session's record, the registry of open sessions, settings,
//!    change notifications.
//! 6. [`activation`]: entering and leaving a session (aliases, `sys.path`, env).
//! 7. [`imports`]: the hooks, finder and loaders that send each import to the right
//!    session, and what imports record for reload.
//! 8. [`reload`] (in place, deep, on save) and [`unload`] (close, leak report).
//! 9. [`bindings`]: the Python surface, one declarative `#[pymodule]`;
//!    [`ffi`]: the C ABI over the same Python API.

mod activation;
mod base;
mod bindings;
mod config;
mod ffi;
mod imports;
mod native;
mod reload;
mod state;
mod tracking;
mod unload;
