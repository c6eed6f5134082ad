//! What can go wrong with the durable store, by kind, so that callers (and
//! tests) act on the kind rather than on message text: a store of another
//! layout is refused and left alone, a damaged one is replaced by a full sync
//! where that is safe, an I/O failure stops the writer.

use std::path::PathBuf;

/// A failure of the durable store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory path names a file.
    #[error("data directory {} is a file, not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The store was written by a build with another table layout, or by
    /// one before layouts were versioned (`found` is `None`).
    #[error("store {} has {}, this build reads version {want}", path.display(), found_layout(*found))]
    Layout {
        /// The store file.
        path: PathBuf,
        /// The layout version it has, if any.
        found: Option<u64>,
        /// The layout version this build reads.
        want: u64,
    },
    /// The file or a record in it is not what this build wrote.
    #[error("store {} is damaged: {detail}", path.display())]
    Damaged {
        /// The store file (or directory).
        path: PathBuf,
        /// What is wrong, e.g. which region does not decode.
        detail: String,
    },
    /// The file system or the database engine failed.
    #[error("store {}: cannot {action}", path.display())]
    Io {
        /// The store file (or directory).
        path: PathBuf,
        /// What the store was doing: "open store", "write", ...
        action: &'static str,
        /// The underlying failure (boxed: redb's error is large, and this
        /// travels in every `Result` of the write path).
        #[source]
        source: Box<redb::Error>,
    },
    /// The store was closed (the node is stopping); nothing was written.
    #[error("store {} is closed", .0.display())]
    Closed(PathBuf),
}

fn found_layout(found: Option<u64>) -> String {
    match found {
        Some(v) => format!("layout version {v}"),
        None => {
            "regions but no layout version (an older layout; move it away to start afresh)".into()
        }
    }
}

impl StorageError {
    /// Classify a database failure: corruption is damage, the rest is I/O.
    pub(super) fn from_db(
        path: &std::path::Path,
        action: &'static str,
        e: impl Into<redb::Error>,
    ) -> Self {
        match e.into() {
            redb::Error::Corrupted(detail) => StorageError::Damaged {
                path: path.to_path_buf(),
                detail,
            },
            source => StorageError::Io {
                path: path.to_path_buf(),
                action,
                source: Box::new(source),
            },
        }
    }
}
