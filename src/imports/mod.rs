//! Imports: how each import reaches the right session, in the order an import runs.
//!
//! - [`hooks`]: `__import__` (session code's own and the process-wide one) and
//!   `importlib.import_module`, routing each import by who makes it;
//! - [`finder`]: the meta-path finder resolving qualified names on a session's search
//!   path, and the loaders' step that runs a session module's code;
//! - [`capi`]: the C-API import functions as a session's own compiled libraries see
//!   them (their import-table slots point there);
//! - [`record`]: what an import records for reload (file stamps, import edges);
//! - [`install`]: putting all of this in place, per interpreter and per session.

pub(crate) mod capi;
pub(crate) mod finder;
pub(crate) mod hooks;
pub(crate) mod install;
pub(crate) mod record;
