//! Private files: readable by their owner only (0600), in a directory created 0700, replaced
//! atomically (a temporary file in the same directory, fsync, rename, fsync of the directory),
//! so that a reader never sees half a file and a secret is never readable by others, not even
//! for a moment.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::text::io_text;

/// The mode of a private file.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a directory created for private files.
pub const DIR_MODE: u32 = 0o700;

/// A file operation that failed: `cannot write /path/state.json: permission denied`.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {}", path.display(), io_text(source))]
pub struct FileError {
    /// `read`, `write`, `create`, `delete`, `write in`.
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl FileError {
    fn new(action: &'static str, path: &Path, source: io::Error) -> FileError {
        FileError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A directory of private files. The path is a parameter so tests use a temporary one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateDir {
    dir: PathBuf,
}

impl PrivateDir {
    pub fn new(dir: impl Into<PathBuf>) -> PrivateDir {
        PrivateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The path of the file `name` in this directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The content of `name`; `None` when there is no such file.
    pub fn read(&self, name: &str) -> Result<Option<String>, FileError> {
        let path = self.file(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FileError::new("read", &path, e)),
        }
    }

    /// Replace `name` with `bytes`: the directory is created 0700 if missing, the file is 0600
    /// from its first byte (even where an old one was looser) and replaces the old one in one
    /// rename. A failed write leaves the old file and no temporary file.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), FileError> {
        self.create()?;
        let path = self.file(name);
        let temp = temp_path(&self.dir, name);
        let written = write_new(&temp, bytes).and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(FileError::new("write", &path, e));
        }
        // Make the rename durable; a failure here loses nothing that matters.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Remove `name`; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool, FileError> {
        let path = self.file(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(FileError::new("delete", &path, e)),
        }
    }

    /// Create the directory (0700) if it is missing. Only a directory this creates gets its
    /// mode set; an existing one is left as it is.
    pub fn create(&self) -> Result<(), FileError> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(DIR_MODE);
        }
        builder
            .create(&self.dir)
            .and_then(|()| set_mode(&self.dir, DIR_MODE))
            .map_err(|e| FileError::new("create", &self.dir, e))
    }

    /// Create the directory if it is missing and check that a file can be written in it,
    /// leaving nothing behind: done before a step that cannot be undone.
    pub fn check_writable(&self) -> Result<(), FileError> {
        self.create()?;
        let probe = temp_path(&self.dir, ".probe");
        let written = write_new(&probe, b"");
        let _ = fs::remove_file(&probe);
        written.map_err(|e| FileError::new("write in", &self.dir, e))
    }
}

/// A name in `dir` for a temporary copy of `name` that no other writer uses: this process,
/// this moment (`.name.PID.NANOS.tmp`).
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

/// Create `path`, which must not exist, readable and writable by its owner only (0600 exactly,
/// whatever the umask). Nothing is left behind on failure.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    let file = options.open(path)?;
    // The umask can only remove bits; set the mode exactly anyway.
    if let Err(e) = set_mode(path, FILE_MODE) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// Create `path` private (see [`create_private`]) and write `bytes` to disk.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const NAME: &str = "state.json";

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trip_with_modes() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("nested").join("watchgrid");
        let private = PrivateDir::new(&dir);
        assert_eq!(private.read(NAME).unwrap(), None);
        private.write(NAME, b"one").unwrap();
        assert_eq!(private.read(NAME).unwrap().as_deref(), Some("one"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&private.file(NAME)), 0o600);

        // An old file with a loose mode is replaced by a 0600 one.
        fs::set_permissions(private.file(NAME), fs::Permissions::from_mode(0o644)).unwrap();
        private.write(NAME, b"two").unwrap();
        assert_eq!(mode(&private.file(NAME)), 0o600);
        assert_eq!(private.read(NAME).unwrap().as_deref(), Some("two"));

        assert!(private.remove(NAME).unwrap());
        assert!(!private.remove(NAME).unwrap());
        assert_eq!(private.read(NAME).unwrap(), None);
    }

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let temp = tempfile::tempdir().unwrap();
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        PrivateDir::new(temp.path()).write(NAME, b"x").unwrap();
        assert_eq!(mode(temp.path()), 0o755);
    }

    #[test]
    fn writes_are_atomic_and_leave_no_temporary_file() {
        let temp = tempfile::tempdir().unwrap();
        let private = PrivateDir::new(temp.path());
        private.write(NAME, b"one").unwrap();
        let before = fs::metadata(private.file(NAME)).unwrap();

        // A write replaces the file by rename: a new inode, never a truncated old one that a
        // reader could see half-written.
        private.write(NAME, b"two").unwrap();
        let after = fs::metadata(private.file(NAME)).unwrap();
        assert_ne!(before.ino(), after.ino());
        private.check_writable().unwrap();
        assert_eq!(names(temp.path()), vec![NAME]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let temp = tempfile::tempdir().unwrap();
        let private = PrivateDir::new(temp.path());
        private.write(NAME, b"old").unwrap();
        // A directory in the way of the rename makes the write fail after the temporary file
        // was written; the temporary file must go, the old file stay.
        fs::create_dir(private.file("status.json")).unwrap();
        fs::write(private.file("status.json").join("x"), "").unwrap();
        let err = private.write("status.json", b"new").unwrap_err();
        assert_eq!(err.path(), private.file("status.json"));
        let line = err.to_string();
        assert!(
            line.starts_with(&format!(
                "cannot write {}: ",
                private.file("status.json").display()
            )),
            "{line}"
        );
        assert_eq!(names(temp.path()), vec![NAME, "status.json"]);
        assert_eq!(private.read(NAME).unwrap().as_deref(), Some("old"));
    }

    #[test]
    fn errors_name_the_operation_and_the_path() {
        let temp = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let file = temp.path().join("file");
        fs::write(&file, "").unwrap();
        let inside = PrivateDir::new(file.join("sub"));
        let err = inside.write(NAME, b"x").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot create {}: not a directory",
                file.join("sub").display()
            )
        );
        let err = inside.check_writable().unwrap_err().to_string();
        assert!(err.starts_with("cannot create "), "{err}");
        let err = PrivateDir::new(&file).read("x").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("cannot read {}: not a directory", file.join("x").display())
        );
    }

    #[test]
    fn check_writable_creates_the_directory_and_leaves_it_empty() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("new");
        PrivateDir::new(&dir).check_writable().unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn private_files_are_0600_and_new() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp_path(temp.path(), "phone.conf");
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with(&format!(".phone.conf.{}.", std::process::id())),
            "{name}"
        );
        assert!(name.ends_with(".tmp"), "{name}");
        drop(create_private(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        let err = create_private(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
