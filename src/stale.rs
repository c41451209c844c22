//! Which files changed since a module was executed (mtime + size), without the GIL.
//!
//! A stat is mostly kernel path resolution, so files are grouped by folder and
//! stat'ed relative to one open folder (`fstatat`), and large sessions are split
//! over a few threads. Other platforms fall back to one `metadata` call per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// A file's identity for change detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub mtime_ns: i128,
    pub size: u64,
}

/// The stamp of one file, or None if it cannot be read (deleted: counts as changed).
pub fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?;
    let mtime_ns = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some(Stamp {
        mtime_ns,
        size: meta.len(),
    })
}

/// Below this many files one thread is faster than starting others.
const PARALLEL_FROM: usize = 512;
const MAX_THREADS: usize = 4;

type Entry = (String, PathBuf, Option<Stamp>);

/// The files of one folder, with the C strings `fstatat` needs made once per snapshot.
#[derive(Clone)]
pub struct DirGroup {
    files: Vec<Entry>,
    #[cfg(target_os = "linux")]
    c_names: Option<(std::ffi::CString, Vec<std::ffi::CString>)>,
}

#[cfg(target_os = "linux")]
fn c_names(dir: &Path, files: &[Entry]) -> Option<(std::ffi::CString, Vec<std::ffi::CString>)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_dir = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let names = files
        .iter()
        .map(|(_, path, _)| CString::new(path.file_name()?.as_bytes()).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((c_dir, names))
}

/// A session's module files and their stamps, grouped by folder once per change
/// (a stale check then only clones an `Arc`).
#[derive(Default)]
pub struct FileIndex {
    files: HashMap<String, (PathBuf, Option<Stamp>)>,
    snapshot: Option<Arc<Vec<DirGroup>>>,
    /// Where each name sits in the snapshot: a reload updates its stamp in place.
    slots: HashMap<String, (usize, usize)>,
}

impl FileIndex {
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    pub fn record(&mut self, name: &str, path: PathBuf, stamp: Option<Stamp>) {
        if let Some((known, recorded)) = self.files.get_mut(name) {
            if *known == path {
                *recorded = stamp;
                if let (Some(snapshot), Some(&(group, file))) =
                    (self.snapshot.as_mut(), self.slots.get(name))
                {
                    // Copies the snapshot only if a stale check still holds it.
                    if let Some(entry) = Arc::make_mut(snapshot)
                        .get_mut(group)
                        .and_then(|g| g.files.get_mut(file))
                    {
                        entry.2 = stamp;
                        return;
                    }
                }
                self.snapshot = None;
                return;
            }
        }
        self.files.insert(name.to_owned(), (path, stamp));
        self.snapshot = None;
    }

    pub fn snapshot(&mut self) -> Arc<Vec<DirGroup>> {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        let mut by_dir: HashMap<PathBuf, Vec<Entry>> = HashMap::new();
        for (name, (path, stamp)) in &self.files {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            by_dir
                .entry(dir)
                .or_default()
                .push((name.clone(), path.clone(), *stamp));
        }
        let mut groups: Vec<DirGroup> = by_dir
            .into_iter()
            .map(|(dir, files)| {
                #[cfg(not(target_os = "linux"))]
                let _ = dir;
                DirGroup {
                    #[cfg(target_os = "linux")]
                    c_names: c_names(&dir, &files),
                    files,
                }
            })
            .collect();
        // Heaviest first: threads are dealt similar loads.
        groups.sort_by_key(|g| std::cmp::Reverse(g.files.len()));
        self.slots.clear();
        for (g, group) in groups.iter().enumerate() {
            for (f, (name, _, _)) in group.files.iter().enumerate() {
                self.slots.insert(name.clone(), (g, f));
            }
        }
        let snapshot = Arc::new(groups);
        self.snapshot = Some(snapshot.clone());
        snapshot
    }
}

/// Names of the files whose stamp differs from the recorded one.
pub fn changed(groups: &[DirGroup]) -> Vec<String> {
    let total: usize = groups.iter().map(|g| g.files.len()).sum();
    let threads = if total < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_THREADS)
    };
    if threads == 1 {
        return groups.iter().flat_map(changed_in_group).collect();
    }
    let mut shares: Vec<Vec<&DirGroup>> = vec![Vec::new(); threads];
    let mut loads = vec![0usize; threads];
    for group in groups {
        let lightest = (0..threads).min_by_key(|&i| loads[i]).unwrap_or(0);
        loads[lightest] += group.files.len();
        shares[lightest].push(group);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share
                        .into_iter()
                        .flat_map(changed_in_group)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(target_os = "linux")]
fn changed_in_group(group: &DirGroup) -> Vec<String> {
    let Some((c_dir, names)) = &group.c_names else {
        return fallback(&group.files);
    };
    // SAFETY: c_dir is NUL-terminated; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return fallback(&group.files);
    }
    let mut out = Vec::new();
    for ((name, _, recorded), c_name) in group.files.iter().zip(names) {
        // SAFETY: `stat` is plain data filled by the kernel; fd is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatat(fd, c_name.as_ptr(), &mut st, 0) };
        let now = (rc == 0).then(|| Stamp {
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            size: st.st_size as u64,
        });
        if now != *recorded {
            out.push(name.clone());
        }
    }
    // SAFETY: fd came from open above and is closed once.
    unsafe { libc::close(fd) };
    out
}

#[cfg(not(target_os = "linux"))]
fn changed_in_group(group: &DirGroup) -> Vec<String> {
    fallback(&group.files)
}

fn fallback(files: &[(String, PathBuf, Option<Stamp>)]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, path, recorded)| stamp_of(path) != *recorded)
        .map(|(name, _, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("subsession-stale-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_edits_size_changes_and_deletions() {
        let dir = temp_dir("edits");
        let mut index = FileIndex::default();
        let mut entries = Vec::new();
        for i in 0..600 {
            let sub = dir.join(format!("d{}", i % 7));
            std::fs::create_dir_all(&sub).unwrap();
            let path = sub.join(format!("m{i}.py"));
            std::fs::write(&path, "x = 1\n").unwrap();
            index.record(&format!("m{i}"), path.clone(), stamp_of(&path));
            entries.push(path);
        }
        assert!(changed(&index.snapshot()).is_empty());
        std::fs::write(&entries[3], "x = 22\n").unwrap();
        std::fs::remove_file(&entries[500]).unwrap();
        let mut got = changed(&index.snapshot());
        got.sort();
        assert_eq!(got, ["m3", "m500"]);
        // Same size, new mtime: still a change.
        let same_size = &entries[10];
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(same_size)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(changed(&index.snapshot()).contains(&"m10".to_owned()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_stamp_for_a_known_file_updates_the_snapshot_in_place() {
        let dir = temp_dir("inplace");
        let mut index = FileIndex::default();
        let a = dir.join("a.py");
        let b = dir.join("b.py");
        std::fs::write(&a, "x = 1\n").unwrap();
        std::fs::write(&b, "y = 1\n").unwrap();
        index.record("a", a.clone(), stamp_of(&a));
        index.record("b", b.clone(), stamp_of(&b));
        let held = index.snapshot();
        std::fs::write(&a, "x = 22\n").unwrap();
        assert_eq!(changed(&index.snapshot()), ["a"]);
        index.record("a", a.clone(), stamp_of(&a));
        let fresh = index.snapshot();
        assert!(changed(&fresh).is_empty());
        // A snapshot a stale check still held keeps what it saw.
        assert_eq!(changed(&held), ["a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stamps_agree_between_fstatat_and_metadata() {
        let dir = temp_dir("agree");
        let path = dir.join("a.py");
        std::fs::write(&path, "pass\n").unwrap();
        let mut index = FileIndex::default();
        index.record("a", path.clone(), stamp_of(&path));
        let groups = index.snapshot();
        assert!(groups.iter().all(|g| changed_in_group(g).is_empty()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
