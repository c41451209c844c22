//! The bottom layer: what everything else is written in terms of.
//!
//! - [`names`]: qualified names, session names, reading a module's name;
//! - [`policy`]: what every session shares with the host and what it isolates;
//! - [`interp`]: handles to the interpreter objects the engine works on;
//! - [`errors`]: the exceptions, one root (`SessionError`, a `RuntimeError`).

pub(crate) mod errors;
pub(crate) mod interp;
pub(crate) mod names;
pub(crate) mod policy;
