//! This thread's stack of open blocks, and the counters hooks read first.
//!
//! A block is named by a frame id (the token `enter` returns). Each thread keeps its
//! own stack of (frame, session), innermost last; a frame left by another thread (a
//! generator closed elsewhere) is dropped from its entering thread's stack the next
//! time that thread looks, for one atomic load when nothing is pending.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;

use crate::state::SessionCore;

/// Activations on all threads. Hooks check this first: zero means nothing to do.
pub(crate) static ACTIVE: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// This thread's activation frames: (frame id, session), innermost last.
    pub(super) static STACK: RefCell<Vec<(u64, Py<SessionCore>)>> = const { RefCell::new(Vec::new()) };
}

/// Counts activations ever begun: a hook that saw no block before a call and sees a
/// different count after it knows a block may have come and gone meanwhile.
pub(crate) static EPOCH: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn epoch() -> usize {
    EPOCH.load(Ordering::Acquire)
}

pub(crate) fn is_active() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0
}

/// Frames another thread left for the thread that entered them (a generator that
/// held a `with` block, closed elsewhere): that thread drops them from its stack the
/// next time it looks. The count makes the look one atomic load in the usual case.
pub(super) static LEFT_ELSEWHERE: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
pub(super) static LEFT_ELSEWHERE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Drops this thread's stack entries for frames another thread has left.
pub(super) fn purge_stack() {
    if LEFT_ELSEWHERE_COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    let mut dropped: Vec<(u64, Py<SessionCore>)> = Vec::new();
    {
        let mut left = LEFT_ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
        let _ = STACK.try_with(|s| {
            if let Ok(mut stack) = s.try_borrow_mut() {
                let mut i = 0;
                while i < stack.len() {
                    if let Some(at) = left.iter().position(|id| *id == stack[i].0) {
                        left.swap_remove(at);
                        dropped.push(stack.remove(i));
                    } else {
                        i += 1;
                    }
                }
            }
        });
        LEFT_ELSEWHERE_COUNT.store(left.len(), Ordering::Release);
    }
    // Released outside the lock: a last reference may run arbitrary finalisers.
    drop(dropped);
}

/// The innermost session active on this thread.
pub(crate) fn top_session(py: Python<'_>) -> Option<Py<SessionCore>> {
    purge_stack();
    STACK.with(|s| s.borrow().last().map(|(_, c)| c.clone_ref(py)))
}

pub(super) fn top_frame_id() -> Option<u64> {
    purge_stack();
    STACK.with(|s| s.borrow().last().map(|(id, _)| *id))
}

/// This thread's innermost frame, when it is a block of `session`.
pub(super) fn top_frame_of(session: &SessionCore) -> Option<u64> {
    purge_stack();
    STACK.with(|s| {
        s.borrow()
            .last()
            .filter(|(_, c)| std::ptr::eq(c.get(), session))
            .map(|(id, _)| *id)
    })
}

/// This thread's innermost block of `session`, wherever it sits in the stack.
pub(super) fn innermost_frame_of(session: &SessionCore) -> Option<u64> {
    purge_stack();
    STACK.with(|s| {
        s.borrow()
            .iter()
            .rev()
            .find(|(_, c)| std::ptr::eq(c.get(), session))
            .map(|(id, _)| *id)
    })
}

/// Tells the thread that entered frame `id` that another thread has left it.
pub(super) fn left_elsewhere(id: u64) {
    let mut left = LEFT_ELSEWHERE.lock().unwrap_or_else(|e| e.into_inner());
    left.push(id);
    LEFT_ELSEWHERE_COUNT.store(left.len(), Ordering::Release);
}

/// The number of this thread's activations.
pub(crate) fn depth() -> usize {
    purge_stack();
    STACK.with(|s| s.borrow().len())
}
