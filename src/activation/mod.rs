//! Activation: entering and leaving a session (the with-block), per thread, nestable
//! and overlapping across threads.
//!
//! Entering patches `sys.path` and `os.environ` in place and installs real-name aliases
//! of the session's modules in `sys.modules` (hiding conflicting globals), so code in
//! the block, C code and `sys.modules["x"]` see the session by real name. The cost is
//! O(this session's modules). Leaving restores all of it exactly and keeps, as the
//! session's, what the block's code added. docs/design.md §3 explains the design.
//!
//! Sections, bottom up:
//! - [`stack`]: this thread's open blocks and the counters hooks read first;
//! - [`table`]: the alias table (who shows what under each real name) and its lock;
//! - [`scan`]: what appeared in `sys.modules` since the last look;
//! - [`paths`] and [`environment`]: the `sys.path` and `os.environ` patches;
//! - [`frames`]: `enter` and `exit`, step by step;
//! - [`global_view`]: what threads without a block see.

mod environment;
mod frames;
mod global_view;
mod paths;
mod scan;
mod stack;
mod table;

pub(crate) use frames::{enter, exit};
pub(crate) use global_view::{count_global_load, global_view, global_view_keyed, with_global_view};
pub(crate) use paths::{base_path, gate_open, live_path_of, search_path, search_path_list};
pub(crate) use scan::{is_block_registration, mirror_registered_submodules, subtree_values};
pub(crate) use stack::{ACTIVE, depth, epoch, is_active, top_session};
pub(crate) use table::{alias_if_active, forget_session};
