//! Tracking: what each session needs to know to reload: which file each module ran
//! from (with its stamp and content hash) and who imports whom.

pub(crate) mod graph;
pub(crate) mod stale;

use std::collections::HashSet;

/// Per session: file stamps and the import graph.
#[derive(Default)]
pub(crate) struct Tracking {
    pub(crate) files: stale::FileIndex,
    pub(crate) graph: graph::ImportGraph,
    /// Global modules taken over by `subsession.adopt`: they keep their real names.
    pub(crate) adopted: HashSet<String>,
}
