//! Which files changed since a module was executed, without the GIL.
//!
//! A file whose stamp (mtime + size) is unchanged is unchanged. A file whose stamp
//! moved is compared with what was executed: an editor's touch or a checkout
//! rewriting identical bytes is not a change (docs/contract.md §5), and its new stamp
//! is kept so it is not read again. What was executed is fingerprinted from bytes the
//! import already had ([`Fingerprint`]), so an import reads nothing a plain import
//! does not; a module whose code came from its `.pyc` is judged with the GIL
//! (`reload::same_code`), here it is only [`Verdict::Unsure`].
//!
//! A stat is mostly kernel path resolution, so files are grouped by folder and
//! stat'ed relative to one open folder (`fstatat`), and large sessions are split
//! over a few threads. Other platforms fall back to one `metadata` call per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use rustc_hash::FxHashMap;

/// A file's identity for change detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) mtime_ns: i128,
    pub(crate) size: u64,
}

/// The stamp of one file, or None if it cannot be read (deleted: counts as changed).
pub(crate) fn stamp_of(path: &Path) -> Option<Stamp> {
    stamp_of_meta(&std::fs::metadata(path).ok()?)
}

fn stamp_of_meta(meta: &std::fs::Metadata) -> Option<Stamp> {
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

/// A file's content, hashed (not cryptographic: it only tells an edit from a touch).
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

/// The bytes of a file whose stamp is still `stamp` after reading it (so they belong
/// to that stamp); None if it cannot be read or changed meanwhile.
pub(crate) fn read_if_stamp(path: &Path, stamp: Stamp) -> Option<Vec<u8>> {
    use std::io::Read;
    // open, one read of the expected size, fstat, close: `fs::read` + a path `stat`
    // made six system calls (two of them path walks).
    let mut file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.size).ok()?);
    let wanted = stamp.size;
    (&mut file).take(wanted).read_to_end(&mut bytes).ok()?;
    // The stamp of the file just read (same descriptor): the bytes belong to it.
    (stamp_of_meta(&file.metadata().ok()?)? == stamp && bytes.len() as u64 == wanted)
        .then_some(bytes)
}

/// The content hash of a file whose stamp is still `stamp` after reading it.
pub(crate) fn hash_if_stamp(path: &Path, stamp: Stamp) -> Option<u64> {
    read_if_stamp(path, stamp).map(|b| hash_bytes(&b))
}

/// The current content hash of a file, if it can be read.
pub(crate) fn hash_file(path: &Path) -> Option<u64> {
    std::fs::read(path).ok().map(|b| hash_bytes(&b))
}

/// Below this many files one thread is faster than starting others.
const PARALLEL_FROM: usize = 512;
const MAX_THREADS: usize = 4;

/// What was executed, from bytes the import already had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fingerprint {
    /// The hash of the source that was compiled.
    Source(u64),
    /// The code came from the `.pyc`, whose header names the stamp it was validated
    /// with: the `.pyc` itself is the record of what ran, so nothing is kept.
    Pyc,
}

/// One tracked file: the module's real name, its path, the stamp and fingerprint of
/// what was executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) stamp: Option<Stamp>,
    pub(crate) print: Option<Fingerprint>,
}

/// What a stale check found for one file whose stamp moved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New content (or deleted, or unreadable).
    Changed(String),
    /// Same bytes under a new stamp: remember the stamp, not a change.
    Touched(String, Stamp),
    /// Code that came from a `.pyc`, under a new stamp of the same size: compiling
    /// the new source tells (with the GIL: `reload::same_code`).
    Unsure(Entry, Stamp),
}

/// The files of one folder, with the C strings `fstatat` needs made once per snapshot.
#[derive(Clone)]
pub(crate) struct DirGroup {
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
        .map(|e| CString::new(e.path.file_name()?.as_bytes()).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((c_dir, names))
}

/// A session's module files and their stamps, grouped by folder once per change
/// (a stale check then only clones an `Arc`).
#[derive(Default)]
pub(crate) struct FileIndex {
    files: FxHashMap<String, (PathBuf, Option<Stamp>, Option<Fingerprint>)>,
    snapshot: Option<Arc<Vec<DirGroup>>>,
    /// Where each name sits in the snapshot: a reload updates its stamp in place.
    slots: FxHashMap<String, (usize, usize)>,
}

impl FileIndex {
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    /// Whether `path` is the file of one of the session's modules.
    pub(crate) fn has_path(&self, path: &Path) -> bool {
        self.files.values().any(|(p, _, _)| p == path)
    }

    pub(crate) fn record(
        &mut self,
        name: &str,
        path: PathBuf,
        stamp: Option<Stamp>,
        print: Option<Fingerprint>,
    ) {
        if let Some((known, recorded, recorded_print)) = self.files.get_mut(name) {
            if *known == path {
                *recorded = stamp;
                *recorded_print = print;
                if let (Some(snapshot), Some(&(group, file))) =
                    (self.snapshot.as_mut(), self.slots.get(name))
                {
                    // Copies the snapshot only if a stale check still holds it.
                    if let Some(entry) = Arc::make_mut(snapshot)
                        .get_mut(group)
                        .and_then(|g| g.files.get_mut(file))
                    {
                        entry.stamp = stamp;
                        entry.print = print;
                        return;
                    }
                }
                self.snapshot = None;
                return;
            }
        }
        self.files.insert(name.to_owned(), (path, stamp, print));
        self.snapshot = None;
    }

    /// A file was touched without a change of content: keep its new stamp, and a
    /// new fingerprint if the old one was tied to the old stamp.
    pub(crate) fn touch(&mut self, name: &str, stamp: Stamp, print: Option<Fingerprint>) {
        if let Some((path, _, old)) = self.files.get(name).cloned() {
            self.record(name, path, Some(stamp), print.or(old));
        }
    }

    pub(crate) fn snapshot(&mut self) -> Arc<Vec<DirGroup>> {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        let mut by_dir: HashMap<PathBuf, Vec<Entry>> = HashMap::new();
        for (name, (path, stamp, print)) in &self.files {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            by_dir.entry(dir).or_default().push(Entry {
                name: name.clone(),
                path: path.clone(),
                stamp: *stamp,
                print: *print,
            });
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
            for (f, entry) in group.files.iter().enumerate() {
                self.slots.insert(entry.name.clone(), (g, f));
            }
        }
        let snapshot = Arc::new(groups);
        self.snapshot = Some(snapshot.clone());
        snapshot
    }
}

impl DirGroup {
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.files
    }
}

/// Whether a file whose stamp moved from `entry.stamp` to `now` has new content.
pub(crate) fn judge(entry: &Entry, now: Option<Stamp>) -> Option<Verdict> {
    if now == entry.stamp {
        return None;
    }
    if let (Some(now), Some(was), Some(print)) = (now, entry.stamp, entry.print) {
        // Same bytes need the same size: only then is the content worth a look.
        if now.size == was.size {
            match print {
                Fingerprint::Source(hash) if hash_if_stamp(&entry.path, now) == Some(hash) => {
                    return Some(Verdict::Touched(entry.name.clone(), now));
                }
                Fingerprint::Pyc => return Some(Verdict::Unsure(entry.clone(), now)),
                Fingerprint::Source(_) => {}
            }
        }
    }
    Some(Verdict::Changed(entry.name.clone()))
}

/// The files whose content differs from what was executed, and those only touched.
pub(crate) fn changed(groups: &[DirGroup]) -> Vec<Verdict> {
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
fn changed_in_group(group: &DirGroup) -> Vec<Verdict> {
    let mut out = Vec::new();
    scan_group(group, |entry, now| out.extend(judge(entry, now)));
    out
}

/// Stats every file of a folder and hands each entry with its current stamp to `visit`.
#[cfg(target_os = "linux")]
pub(crate) fn scan_group(group: &DirGroup, mut visit: impl FnMut(&Entry, Option<Stamp>)) {
    let Some((c_dir, names)) = &group.c_names else {
        return fallback(&group.files, visit);
    };
    // SAFETY: c_dir is NUL-terminated; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return fallback(&group.files, visit);
    }
    for (entry, c_name) in group.files.iter().zip(names) {
        // SAFETY: `stat` is plain data filled by the kernel; fd is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::fstatat(fd, c_name.as_ptr(), &mut st, 0) };
        let now = (rc == 0).then(|| Stamp {
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            size: st.st_size as u64,
        });
        visit(entry, now);
    }
    // SAFETY: fd came from open above and is closed once.
    unsafe { libc::close(fd) };
}

#[cfg(not(target_os = "linux"))]
fn changed_in_group(group: &DirGroup) -> Vec<Verdict> {
    let mut out = Vec::new();
    scan_group(group, |entry, now| out.extend(judge(entry, now)));
    out
}

/// Stats every file of a folder and hands each entry with its current stamp to `visit`.
#[cfg(not(target_os = "linux"))]
pub(crate) fn scan_group(group: &DirGroup, visit: impl FnMut(&Entry, Option<Stamp>)) {
    fallback(&group.files, visit)
}

fn fallback(files: &[Entry], mut visit: impl FnMut(&Entry, Option<Stamp>)) {
    for entry in files {
        visit(entry, stamp_of(&entry.path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: &mut FileIndex, name: &str, path: &Path) {
        let print = hash_file(path).map(Fingerprint::Source);
        index.record(name, path.to_path_buf(), stamp_of(path), print);
    }

    fn changed_names(groups: &[DirGroup]) -> Vec<String> {
        changed(groups)
            .into_iter()
            .filter_map(|v| match v {
                Verdict::Changed(n) => Some(n),
                Verdict::Touched(..) | Verdict::Unsure(..) => None,
            })
            .collect()
    }

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
            rec(&mut index, &format!("m{i}"), &path);
            entries.push(path);
        }
        assert!(changed(&index.snapshot()).is_empty());
        std::fs::write(&entries[3], "x = 22\n").unwrap();
        std::fs::remove_file(&entries[500]).unwrap();
        let mut got = changed_names(&index.snapshot());
        got.sort();
        assert_eq!(got, ["m3", "m500"]);
        // Same size, new mtime, same bytes: a touch, not a change.
        let same_size = &entries[10];
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(same_size)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let verdicts = changed(&index.snapshot());
        assert!(!changed_names(&index.snapshot()).contains(&"m10".to_owned()));
        assert!(
            verdicts
                .iter()
                .any(|v| matches!(v, Verdict::Touched(n, _) if n == "m10"))
        );
        // Same size, new bytes: a change.
        std::fs::write(&entries[11], "x = 2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&entries[11])
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(changed_names(&index.snapshot()).contains(&"m11".to_owned()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn code_from_a_pyc_is_unsure_only_under_a_stamp_of_the_same_size() {
        let dir = temp_dir("pyc");
        let path = dir.join("p.py");
        std::fs::write(&path, "x = 1\n").unwrap();
        let mut index = FileIndex::default();
        index.record("p", path.clone(), stamp_of(&path), Some(Fingerprint::Pyc));
        assert!(changed(&index.snapshot()).is_empty());
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(later).unwrap();
        match changed(&index.snapshot()).as_slice() {
            [Verdict::Unsure(entry, now)] => {
                assert_eq!(entry.name, "p");
                assert_eq!(Some(*now), stamp_of(&path));
            }
            other => panic!("expected one Unsure verdict, got {other:?}"),
        }
        // A touch resolved elsewhere keeps the new stamp and the fingerprint given.
        let now = stamp_of(&path).unwrap();
        index.touch("p", now, Some(Fingerprint::Source(7)));
        assert!(changed(&index.snapshot()).is_empty());
        std::fs::write(&path, "x = 12\n").unwrap();
        assert_eq!(changed_names(&index.snapshot()), ["p"]);
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
        rec(&mut index, "a", &a);
        rec(&mut index, "b", &b);
        let held = index.snapshot();
        std::fs::write(&a, "x = 22\n").unwrap();
        assert_eq!(changed_names(&index.snapshot()), ["a"]);
        rec(&mut index, "a", &a);
        let fresh = index.snapshot();
        assert!(changed(&fresh).is_empty());
        // A snapshot a stale check still held keeps what it saw.
        assert_eq!(changed_names(&held), ["a"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stamps_agree_between_fstatat_and_metadata() {
        let dir = temp_dir("agree");
        let path = dir.join("a.py");
        std::fs::write(&path, "pass\n").unwrap();
        let mut index = FileIndex::default();
        rec(&mut index, "a", &path);
        let groups = index.snapshot();
        assert!(groups.iter().all(|g| changed_in_group(g).is_empty()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
