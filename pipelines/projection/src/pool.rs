//! A small pool of read-only connections to a projection store.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

/// Read-only connections to one SQLite file. WAL mode lets them read while the runner
/// writes; each sees the state of the last commit at the moment its query started.
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    pub fn new(path: &Path, max_idle: usize) -> Self {
        ReadPool {
            inner: Arc::new(PoolInner {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
                max_idle,
            }),
        }
    }

    /// Takes an idle connection or opens a new one.
    pub fn get(&self) -> rusqlite::Result<PooledConnection> {
        let idle = self.inner.idle.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            pool: self.inner.clone(),
        })
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.inner.path, flags)?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        conn.pragma_update(None, "cache_size", -16384)?;
        Ok(conn)
    }
}

/// A connection borrowed from a [`ReadPool`]; it goes back to the pool when dropped.
pub struct PooledConnection {
    conn: Option<Connection>,
    pool: Arc<PoolInner>,
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a pooled connection is only taken out when dropped"),
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.idle.lock();
            if idle.len() < self.pool.max_idle {
                idle.push(conn);
            }
        }
    }
}
