//! Debian's nginx as a child process of the test, with a config of the test's making, its own
//! free port, directory, logs and temporary files; stopped, and its directory removed, on drop.
//!
//! ```ignore
//! let binary = nginx_binary(); // fails the test without nginx
//! let nginx = Nginx::start(binary, |dir, port| format!("…listen 127.0.0.1:{port};…"));
//! client.get(nginx.url("/events/news"))…
//! ```
//!
//! A test that needs nginx (`/usr/sbin/nginx`, or `NGINX`) is marked `#[ignore = "needs nginx:
//! …"]`, so that a plain `cargo test` reports it as ignored rather than as passed;
//! `cargo test -- --include-ignored` (which `.ci/run` runs) runs it, and then a missing nginx
//! fails it ([`nginx_binary`] panics), never skips it.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::GUARD;

/// Where Debian puts nginx; `NGINX` overrides it.
fn nginx_path() -> PathBuf {
    std::env::var_os("NGINX").map_or_else(|| "/usr/sbin/nginx".into(), PathBuf::from)
}

/// The nginx binary.
///
/// # Panics
///
/// When it is not installed.
pub fn nginx_binary() -> PathBuf {
    let path = nginx_path();
    assert!(
        path.exists(),
        "nginx not found at {}: install it (apt-get install nginx-light; .ci/run does), or \
         leave out the tests that need it (they are ignored unless run with --include-ignored)",
        path.display()
    );
    path
}

/// A running nginx, stopped and its directory removed on drop.
pub struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    conf: PathBuf,
    child: Child,
    pub port: u16,
}

impl Nginx {
    /// Starts nginx with the config `config(dir, port)` returns (`dir`: a new directory of its
    /// own for logs and temporary files; `port`: a free port to listen on) and waits until it
    /// accepts connections. It stays in the foreground and logs its startup errors to `dir`;
    /// the config says where its pid file goes (`pid DIR/nginx.pid;`, not the system nginx's).
    ///
    /// # Panics
    ///
    /// When it does not start.
    pub fn start(binary: PathBuf, config: impl Fn(&Path, u16) -> String) -> Nginx {
        // The free port is found by binding and releasing it; should another process take it
        // in between, nginx fails to start and the next attempt uses another port.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Nginx::try_start(binary.clone(), &config) {
                Ok(nginx) => return nginx,
                Err(err) => failures.push(err),
            }
        }
        panic!("nginx did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(binary: PathBuf, config: &impl Fn(&Path, u16) -> String) -> Result<Nginx, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-nginx-{}-{port}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        fs::write(&conf, config(&dir, port)).unwrap();
        let stderr = fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let mut nginx = Nginx {
            binary,
            dir,
            conf,
            child,
            port,
        };
        let deadline = Instant::now() + GUARD;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait().unwrap() {
                return Err(format!("nginx exited ({status}):\n{}", nginx.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx did not accept connections on port {port} within {GUARD:?}:\n{}",
                    nginx.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What nginx wrote to its stderr and error log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A fast shutdown through the master process, so that its workers go too; SIGKILL if
        // that does not end it in time.
        let _ = Command::new(&self.binary)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(&self.conf)
            .args(["-g", "daemon off;", "-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Publishes `data` with `POST url` (through nginx) and returns the id the hub gave it.
pub async fn publish(client: &reqwest::Client, url: &str, data: &str) -> String {
    let response = client.post(url).body(data.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}
