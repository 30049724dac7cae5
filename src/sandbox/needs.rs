//! What one task's child must be able to reach, from its connections: the SQLite files (bound
//! read-only into its empty root, and the connections pointed at them there), the servers'
//! TCP ports (Landlock lets the child connect to those alone), the resolver's files when a
//! server is named by a host name, a Unix-socket directory when a server is reached that way.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::isolate::{Binds, Unreachable};
use crate::connector::ConnectorError;
use crate::run::{Connection, TaskFailure};
use crate::secret::Secret;
use crate::sql::Dialect;

/// Files the C library's resolver reads to turn a host name into addresses.
const RESOLVER_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// Where SQLite files appear inside the child's root.
const SQLITE_DIR: &str = "/db";

/// The child's root and Landlock rules for one task.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    /// What the root holds.
    pub binds: Binds,
    /// Paths (as the child will see them) it may read.
    pub read_files: Vec<PathBuf>,
    /// TCP ports it may connect to.
    pub ports: Vec<u16>,
    /// Connection names of the SQLite binds, by their path inside.
    sqlite: Vec<(PathBuf, String)>,
    /// The URLs the SQLite connections had before they were pointed inside (by index), and
    /// the host paths.
    originals: Vec<(usize, Secret, PathBuf)>,
}

impl Plan {
    /// Undoes the SQLite rewrite when no root could be built after all (the host forbids
    /// mounting): the files are then read, and Landlock-allowed, where they are.
    pub(crate) fn without_root(&mut self, connections: &mut [Connection]) {
        for (i, url, host) in self.originals.drain(..) {
            if let Some(c) = connections.get_mut(i) {
                c.target.url = url;
            }
            if let Some((_, inside)) = self.binds.files.iter().find(|(h, _)| *h == host) {
                let inside = inside.clone();
                for f in &mut self.read_files {
                    if *f == inside {
                        f.clone_from(&host);
                    }
                }
            }
        }
        self.binds = Binds::default();
        self.sqlite.clear();
    }

    /// One line for `Status`.
    pub(crate) fn describe(&self) -> String {
        if self.binds.files.is_empty() && self.binds.dirs.is_empty() {
            return "empty (read-only tmpfs)".to_owned();
        }
        let inside: Vec<String> = self
            .binds
            .files
            .iter()
            .chain(&self.binds.dirs)
            .map(|(_, p)| p.display().to_string())
            .collect();
        format!("read-only tmpfs holding {}", inside.join(", "))
    }
}

/// Plans the root for `connections` and points their SQLite targets at the files' places
/// inside it.
pub(crate) fn plan(connections: &mut [Connection], namespaced: bool) -> Plan {
    let mut plan = Plan::default();
    let mut resolver = false;
    for (i, c) in connections.iter_mut().enumerate() {
        let url = c.target.url.expose();
        match c.target.dialect {
            Dialect::Sqlite => {
                let Ok(options) = SqliteConnectOptions::from_str(url) else {
                    continue;
                };
                let host = options.get_filename().to_path_buf();
                if !namespaced {
                    plan.read_files.push(host);
                    continue;
                }
                let inside = PathBuf::from(format!("{SQLITE_DIR}/{i}.sqlite"));
                plan.binds.files.push((host, inside.clone()));
                plan.read_files.push(inside.clone());
                plan.sqlite.push((inside.clone(), c.name.clone()));
                let original = std::mem::replace(
                    &mut c.target.url,
                    Secret::new(format!("sqlite://{}", inside.display())),
                );
                plan.originals
                    .push((i, original, host_path(&plan, &inside)));
            }
            Dialect::Postgres => {
                if let Ok(o) = PgConnectOptions::from_str(url) {
                    server(
                        &mut plan,
                        &mut resolver,
                        o.get_host(),
                        o.get_port(),
                        namespaced,
                    );
                }
            }
            Dialect::Mysql => {
                if let Ok(o) = MySqlConnectOptions::from_str(url) {
                    server(
                        &mut plan,
                        &mut resolver,
                        o.get_host(),
                        o.get_port(),
                        namespaced,
                    );
                }
            }
        }
    }
    if resolver {
        for file in RESOLVER_FILES.iter().map(Path::new).filter(|p| p.exists()) {
            if namespaced {
                plan.binds
                    .files
                    .push((file.to_path_buf(), file.to_path_buf()));
            }
            plan.read_files.push(file.to_path_buf());
        }
        // DNS answers too long for UDP are fetched again over TCP.
        plan.ports.push(53);
    }
    plan.ports.sort_unstable();
    plan.ports.dedup();
    plan
}

fn host_path(plan: &Plan, inside: &Path) -> PathBuf {
    plan.binds
        .files
        .iter()
        .find(|(_, i)| i == inside)
        .map(|(h, _)| h.clone())
        .unwrap_or_default()
}

fn server(plan: &mut Plan, resolver: &mut bool, host: &str, port: u16, namespaced: bool) {
    if host.starts_with('/') {
        // A Unix socket directory (PostgreSQL's `host=/run/postgresql`).
        let dir = PathBuf::from(host);
        if namespaced {
            plan.binds.dirs.push((dir.clone(), dir.clone()));
        }
        plan.read_files.push(dir);
        return;
    }
    plan.ports.push(port);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_err() {
        *resolver = true;
    }
}

/// The failure of a task whose SQLite file the child's identity cannot read.
pub(crate) fn unreachable(plan: &Plan, lost: &Unreachable, host_uid: u32) -> TaskFailure {
    let name = plan
        .sqlite
        .iter()
        .find(|(inside, _)| *inside == lost.inside)
        .map(|(_, n)| n.as_str())
        .unwrap_or("a connection");
    TaskFailure::Query {
        node: None,
        error: ConnectorError::Connect(format!(
            "{name} (the sandbox's user, uid {host_uid}, cannot read the database file: {})",
            lost.why.desc()
        )),
    }
}
