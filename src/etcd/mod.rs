//! A backend on an etcd cluster, for a namespace that several hosts mount
//! at once or that must outlive a machine: the same filesystem, with etcd
//! (Raft-replicated, transactional) holding the keys instead of the local
//! log. It speaks etcd's JSON gateway over plain HTTP, so it needs no
//! generated code and no async runtime.
//!
//! - `url`: `etcd://HOST:PORT,.../PREFIX`
//! - `http`: the little HTTP/1.1 it needs
//! - `client`: ranges, transactions and watches; failover and errors
//! - `record`: how keys, records, values and chunks lie in etcd
//! - `mirror`: the records in memory, kept current by a watch
//! - `backend`: the filesystem's `Storage` on all of that

mod backend;
mod client;
mod http;
mod mirror;
mod record;
mod url;

pub use backend::Etcd;
pub use client::{Client, Error as ClientError};
pub use url::EtcdUrl;
