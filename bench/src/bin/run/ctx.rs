//! The run's context: starting servers (each alone on core 0, checked to listen and, for the
//! allocator rows, to have the library mapped) and stopping them, starting `loadgen` on core 1,
//! and what the report lists of both (the commands, the failures).

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::measure::{maps, tree};
use crate::servers::Server;

/// What every scenario shares.
pub(crate) struct Ctx {
    /// The workspace's root, the directory servers run in.
    pub(crate) root: PathBuf,
    /// This package's binaries.
    pub(crate) bin: PathBuf,
    /// The clients' reports and the servers' logs.
    pub(crate) scratch: PathBuf,
    /// The last port a server was started on.
    pub(crate) port: u16,
    /// Every distinct command run, for the report.
    pub(crate) commands: Vec<String>,
    /// Clock ticks per second (`getconf CLK_TCK`), the unit of /proc CPU times.
    pub(crate) clk_tck: f64,
    /// What did not deliver, for the report (and the smoke run's exit status).
    pub(crate) failures: Vec<String>,
}

/// A server started by [`Ctx::start`].
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// Its stdout and stderr.
    pub(crate) log: PathBuf,
}

/// `cmd` as a shell would run it: its environment, program and arguments.
fn shell_words(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            let _ = write!(s, "{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        // An empty argument, as a shell must be given it.
        match a.to_string_lossy() {
            a if a.is_empty() => s.push_str("''"),
            a => s.push_str(&a),
        }
    }
    s
}

impl Ctx {
    /// Adds `cmd` to the commands the report lists, unless one of its shape is there.
    fn record(&mut self, cmd: &Command) {
        let root = format!("{}/", self.root.display());
        let line = shell_words(cmd).replace(&root, "");
        // Keep one line per distinct command shape.
        let shape: String = line
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        if !self.commands.iter().any(|c| c.starts_with(&shape)) {
            self.commands.push(line);
        }
    }

    /// Starts `server` on a fresh port (trying the next ports if one is taken).
    pub(crate) fn start(
        &mut self,
        server: &Server,
        extra_env: &[(&str, &str)],
    ) -> Result<Running, String> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.start_once(server, extra_env) {
                Ok(r) => return Ok(r),
                Err(e) if e.contains("in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn start_once(
        &mut self,
        server: &Server,
        extra_env: &[(&str, &str)],
    ) -> Result<Running, String> {
        for need in &server.needs {
            if Path::new(need).is_absolute() && !Path::new(need).exists() {
                return Err(format!(
                    "`{need}` is not installed (`bench/peers/install.sh` installs it)"
                ));
            }
            if !self.root.join(need).exists() {
                return Err(format!("`{need}` is not in the repository"));
            }
        }
        self.port += 1;
        let addr = format!("127.0.0.1:{}", self.port);
        let dir = self.scratch.join(format!("{}-{}", server.name, self.port));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = dir.join("server.log");
        // `timeout` ends the server even if this run is interrupted; it forwards SIGTERM.
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", "1800", "taskset", "-c", "0"]);
        if let Some(lib) = &server.preload {
            cmd.arg("env").arg(format!("LD_PRELOAD={lib}"));
        }
        for a in &server.command {
            cmd.arg(
                a.replace("{ADDR}", &addr)
                    .replace("{PORT}", &self.port.to_string())
                    .replace("{DIR}", &dir.display().to_string()),
            );
        }
        cmd.current_dir(&self.root)
            .env("ADDR", &addr)
            .env("WORKERS", "1");
        for (k, v) in server.env.iter().chain(extra_env) {
            cmd.env(k, v);
        }
        let file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        cmd.stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file);
        self.record(&cmd);
        let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = out.lines().rev().take(3).collect();
                return Err(format!(
                    "exited ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                ));
            }
            if TcpStream::connect(&addr).is_ok() {
                std::thread::sleep(Duration::from_millis(300));
                // Still running: the listener that answered is this server's.
                if let Ok(None) = child.try_wait() {
                    let running = Running { child, addr, log };
                    // The dynamic loader only warns when it cannot preload a library, and the
                    // server then runs on glibc's malloc: check that it is mapped.
                    if let Some(lib) = &server.preload {
                        let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.into());
                        if !maps(running.child.id()).contains(&*real.to_string_lossy()) {
                            let said = std::fs::read_to_string(&running.log).unwrap_or_default();
                            stop(running);
                            return Err(format!(
                                "`{lib}` is not mapped in the server's process: {}",
                                said.lines().next().unwrap_or("(it said nothing)")
                            ));
                        }
                    }
                    return Ok(running);
                }
                continue;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err("did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `loadgen` with `args`, on core 1, recorded for the report.
    pub(crate) fn loadgen(&mut self, args: &[String]) -> Command {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg("1")
            .arg(self.bin.join("loadgen"))
            .args(args);
        self.record(&cmd);
        cmd
    }

    /// Runs a loadgen mode to its end and returns its last stdout line as JSON.
    pub(crate) fn loadgen_json(&mut self, args: &[String]) -> Value {
        let out = self.loadgen(args).stderr(Stdio::inherit()).output();
        let out = match out {
            Ok(out) => out,
            Err(e) => return serde_json::json!({"error": e.to_string()}),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null)
    }
}

/// Stops a server: SIGTERM, and after 3 s SIGKILL to its process tree.
pub(crate) fn stop(mut running: Running) {
    let pid = running.child.id();
    signal(pid, "-TERM");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(_)) = running.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in tree(pid) {
        signal(p, "-KILL");
    }
    let _ = running.child.wait();
}

/// Sends `signal` (`-TERM`, `-USR1`, …) to the process `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status();
}
