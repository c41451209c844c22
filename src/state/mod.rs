//! Session state: the record of one session, the registry of open sessions, settings
//! as given from Python, and change notifications.

pub(crate) mod notify;
pub(crate) mod registry;
mod session;
pub(crate) mod settings;

pub(crate) use session::{ModuleKeys, PendingImport, SessionCore, State};
