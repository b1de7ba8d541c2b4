//! A real `redis-server` for the tests: its own free port on 127.0.0.1 and its own temporary
//! directory, append-only with `fsync` on every write, so a stop (SIGKILL) and a restart on the
//! same port and directory keep every write Redis acknowledged.
//!
//! ```ignore
//! let mut redis = RedisServer::start(); // fails the test without redis-server
//! let url = redis.url();
//! redis.stop();    // down: connections are refused
//! redis.restart(); // up again, same port, same data
//! ```
//!
//! A test that needs it is marked `#[ignore = "needs redis-server: …"]`, so that a plain
//! `cargo test` reports it as ignored rather than as passed; `cargo test -- --include-ignored`
//! (which `.ci/run` runs) runs it, and then a missing `redis-server` fails it, never skips it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long `redis-server` may take to say it is ready (a failure guard, never a wait).
const READY_GUARD: Duration = Duration::from_secs(20);

/// What `redis-server` prints once it serves.
const READY_LINE: &str = "Ready to accept connections";

/// A `redis-server` process the test owns; killed, and its directory removed, on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port with a new temporary directory, and returns once it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not on `PATH`, or does not start.
    pub fn start() -> RedisServer {
        let dir = temp_dir();
        let mut last_failure = String::new();
        // The free port is found by binding and releasing it, so another process may take it
        // before Redis does: try again with another port then.
        for _ in 0..5 {
            let port = free_port();
            match spawn(port, &dir) {
                Spawned::Ready(child) => {
                    return RedisServer {
                        port,
                        dir,
                        child: Some(child),
                    };
                }
                Spawned::Missing => {
                    let _ = std::fs::remove_dir_all(&dir);
                    panic!(
                        "redis-server not found on PATH: install it (apt-get install redis-server; \
                         .ci/run does), or leave out the tests that need it (they are ignored \
                         unless run with --include-ignored)"
                    );
                }
                Spawned::Failed(output) => last_failure = output,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("redis-server did not start:\n{last_failure}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The key of `topic`'s stream.
    pub fn key(topic: &str) -> String {
        format!("tower-sse:{topic}")
    }

    /// The key of `topic`'s metadata hash.
    pub fn meta_key(topic: &str) -> String {
        format!("tower-sse:{topic}#m")
    }

    /// The key of the record of idempotency key `key` on `topic`: the first publish's id and
    /// the SHA-1 of its event, until the window's `PX` drops it.
    pub fn key_record(topic: &str, key: &str) -> String {
        format!("tower-sse:{topic}#i:{key}")
    }

    /// Kills the server (SIGKILL: what it acknowledged is on disk, `appendfsync always`) and
    /// waits for it to exit. Connections to it are refused from then on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory, so it loads the same data, and
    /// returns once it accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not start (for example, another process took the port meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        match spawn(self.port, &self.dir) {
            Spawned::Ready(child) => self.child = Some(child),
            Spawned::Missing => panic!("redis-server has gone from PATH"),
            Spawned::Failed(output) => panic!(
                "redis-server did not restart on port {}:\n{output}",
                self.port
            ),
        }
    }

    /// Freezes the server (`kill -STOP`): connections stay open and commands are accepted by
    /// the kernel, but nothing is answered until [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server (`kill -CONT`): it runs what it was sent meanwhile.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum Spawned {
    Ready(Child),
    Missing,
    /// It exited, or did not get ready in time; what it printed.
    Failed(String),
}

fn spawn(port: u16, dir: &Path) -> Spawned {
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
        .arg(dir)
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(["--save", "", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Spawned::Missing,
        Err(err) => panic!("cannot run redis-server: {err}"),
    };
    // A thread reads every line the server prints, for as long as it runs (so the pipe never
    // fills), and passes them on until the ready line.
    let stdout = child.stdout.take().expect("stdout is piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    let mut output = String::new();
    loop {
        match received.recv_timeout(READY_GUARD) {
            Ok(line) => {
                let ready = line.contains(READY_LINE);
                output.push_str(&line);
                output.push('\n');
                if ready {
                    return Spawned::Ready(child);
                }
            }
            // The server exited (the port was taken, say), or hangs.
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                output.push_str(&format!("({err} before {READY_LINE:?})\n"));
                return Spawned::Failed(output);
            }
        }
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A new, empty directory under the system's temporary directory.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-redis-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => panic!("cannot create {}: {err}", dir.display()),
        }
    }
}

/// A plain Redis client for assertions on what the backend stored.
#[cfg(feature = "redis")]
pub struct Raw {
    connection: redis::aio::MultiplexedConnection,
}

#[cfg(feature = "redis")]
impl RedisServer {
    /// A plain client connected to this server.
    pub async fn raw(&self) -> Raw {
        let client = redis::Client::open(self.url()).unwrap();
        Raw {
            connection: client.get_multiplexed_async_connection().await.unwrap(),
        }
    }
}

#[cfg(feature = "redis")]
impl Raw {
    /// `XLEN` of `topic`'s stream.
    pub async fn xlen(&mut self, topic: &str) -> usize {
        redis::cmd("XLEN")
            .arg(RedisServer::key(topic))
            .query_async(&mut self.connection)
            .await
            .unwrap()
    }

    /// The ids of `XRANGE` over all of `topic`'s stream, oldest first.
    pub async fn ids(&mut self, topic: &str) -> Vec<String> {
        self.entries(topic)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// `XRANGE - +` over `topic`'s stream: each entry's id and its field `e` (the encoded event
    /// without its id; `end`, the final event, for a close marker), oldest first.
    pub async fn entries(&mut self, topic: &str) -> Vec<(String, String)> {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(RedisServer::key(topic))
            .arg("-")
            .arg("+")
            .query_async(&mut self.connection)
            .await
            .unwrap();
        entries
            .into_iter()
            .map(|(id, fields)| {
                let event = fields
                    .into_iter()
                    .find_map(|(name, value)| (name == "e" || name == "end").then_some(value))
                    .unwrap_or_else(|| panic!("entry {id} has no field e"));
                (id, event)
            })
            .collect()
    }

    /// The events `topic`'s stream holds, as stored (field `e`, without their ids), oldest
    /// first.
    pub async fn bodies(&mut self, topic: &str) -> Vec<String> {
        let entries = self.entries(topic).await;
        entries.into_iter().map(|(_, event)| event).collect()
    }

    /// How many of `keys` exist (`EXISTS`).
    pub async fn exists(&mut self, keys: &[String]) -> usize {
        redis::cmd("EXISTS")
            .arg(keys)
            .query_async(&mut self.connection)
            .await
            .unwrap()
    }

    /// `PTTL` of `key`: milliseconds left, -1 without expiry, -2 when it does not exist.
    pub async fn pttl(&mut self, key: &str) -> i64 {
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut self.connection)
            .await
            .unwrap()
    }

    /// Sets `key` to expire in `ms` milliseconds (`PEXPIRE`); whether it exists.
    pub async fn pexpire(&mut self, key: &str, ms: u64) -> bool {
        redis::cmd("PEXPIRE")
            .arg(key)
            .arg(ms)
            .query_async(&mut self.connection)
            .await
            .unwrap()
    }

    /// The Redis server's clock (`TIME`), in milliseconds.
    pub async fn now_ms(&mut self) -> u64 {
        let (secs, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.connection)
            .await
            .unwrap();
        secs * 1000 + micros / 1000
    }

    /// Kills the connections whose last command was `command` (`CLIENT LIST`'s `cmd=`), as a
    /// network failure would end them; returns how many.
    pub async fn kill_clients_running(&mut self, command: &str) -> usize {
        let wanted = format!("cmd={command}");
        self.kill_clients_where(|fields| fields.contains(&wanted.as_str()))
            .await
    }

    /// Kills the connections of Redis user `user` whose last command was `command`; returns how
    /// many.
    pub async fn kill_user_clients_running(&mut self, user: &str, command: &str) -> usize {
        let (user, command) = (format!("user={user}"), format!("cmd={command}"));
        self.kill_clients_where(|fields| {
            fields.contains(&user.as_str()) && fields.contains(&command.as_str())
        })
        .await
    }

    /// Kills the connections blocked in `command` (`CLIENT LIST`'s `flags=` has `b`, `cmd=` is
    /// `command`): sent and not yet run, e.g. held by `CLIENT PAUSE`. Returns how many.
    pub async fn kill_clients_blocked_in(&mut self, command: &str) -> usize {
        self.kill_clients_where(|fields| blocked_in(fields, command))
            .await
    }

    /// How many other connections are blocked in `command` (as [`Raw::kill_clients_blocked_in`]
    /// picks them), e.g. idle readers waiting in `XREAD`.
    pub async fn count_clients_blocked_in(&mut self, command: &str) -> usize {
        self.other_clients()
            .await
            .iter()
            .filter(|line| blocked_in(&line.split(' ').collect::<Vec<_>>(), command))
            .count()
    }

    /// Kills the connections whose `CLIENT LIST` fields `kill` picks; returns how many.
    async fn kill_clients_where(&mut self, kill: impl Fn(&[&str]) -> bool) -> usize {
        let mut killed = 0;
        for line in self.client_list().await.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if !kill(&fields) {
                continue;
            }
            let id = fields
                .iter()
                .find_map(|field| field.strip_prefix("id="))
                .expect("CLIENT LIST gives each client's id");
            let _: () = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut self.connection)
                .await
                .unwrap();
            killed += 1;
        }
        killed
    }

    /// `CLIENT PAUSE ms WRITE`: commands that may write (scripts included) wait, unrun.
    pub async fn pause_writes(&mut self, ms: u64) {
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("WRITE")
            .query_async(&mut self.connection)
            .await
            .unwrap();
    }

    /// `CLIENT UNPAUSE`: the commands held by [`pause_writes`](Self::pause_writes) run.
    pub async fn unpause(&mut self) {
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query_async(&mut self.connection)
            .await
            .unwrap();
    }

    /// `CLIENT LIST`: one line per connection to the server, this client's own included.
    async fn client_list(&mut self) -> String {
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.connection)
            .await
            .unwrap()
    }

    /// The `CLIENT LIST` lines of every connection to the server but this client's own.
    pub async fn other_clients(&mut self) -> Vec<String> {
        let own: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut self.connection)
            .await
            .unwrap();
        let own = format!("id={own}");
        self.client_list()
            .await
            .lines()
            .filter(|line| !line.split(' ').any(|field| field == own))
            .map(str::to_owned)
            .collect()
    }

    /// One field of `XINFO STREAM` for `topic`'s stream, as text (`"max-deleted-entry-id"`,
    /// `"entries-added"`, `"length"`, …).
    pub async fn info(&mut self, topic: &str, field: &str) -> String {
        let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(RedisServer::key(topic))
            .query_async(&mut self.connection)
            .await
            .unwrap();
        let value = info
            .get(field)
            .unwrap_or_else(|| panic!("XINFO STREAM has no {field}: {info:?}"));
        match value {
            redis::Value::Int(n) => n.to_string(),
            other => redis::from_redis_value_ref::<String>(other)
                .unwrap_or_else(|err| panic!("{field} is {other:?}: {err}")),
        }
    }
}

/// Whether a connection's `CLIENT LIST` `fields` say it is blocked (`flags=` has `b`) in
/// `command` (`cmd=`).
fn blocked_in(fields: &[&str], command: &str) -> bool {
    let blocked = fields.iter().any(|field| {
        field
            .strip_prefix("flags=")
            .is_some_and(|flags| flags.contains('b'))
    });
    blocked
        && fields
            .iter()
            .any(|field| field.strip_prefix("cmd=") == Some(command))
}
