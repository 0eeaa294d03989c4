//! Test harness: runs the real `redraft` binary on a free loopback port with its own temporary
//! data directory, and gives tests clients for it.
//!
//! The server is started with `--port 0`; the harness reads the port from the server's
//! "Ready to accept connections" log line, so tests never race for ports. Every wait has a
//! deadline. Dropping a [`TestServer`] kills its process (by its own PID) and removes its
//! directory.

#![allow(dead_code)]

pub mod cluster;
pub mod real_redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `redraft` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_redraft")
}

/// A running redraft process.
pub struct TestServer {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables the process gets besides the test's own.
    extra_env: Vec<(String, String)>,
    /// Client port of the running process.
    pub port: u16,
    /// Everything the current process has written to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts a fresh single-node server with a new data directory.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a fresh server with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = TestServer::unstarted(&dir.path().join("data"), args);
        server.dir = Some(dir);
        server.spawn();
        server
    }

    /// A server on `data_dir` that has not been started yet.
    fn unstarted(data_dir: &Path, args: &[&str]) -> TestServer {
        TestServer {
            child: None,
            dir: None,
            data_dir: data_dir.to_path_buf(),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            extra_env: Vec::new(),
            port: 0,
            log: Arc::new(Mutex::new(String::new())),
        }
    }

    /// Starts a server on a data directory the test owns (left in place on drop).
    pub fn start_in(data_dir: &Path, args: &[&str]) -> TestServer {
        TestServer::try_start_in(data_dir, args)
            .unwrap_or_else(|exited| panic!("redraft did not start: {exited}"))
    }

    /// Starts a server on a data directory the test owns, or returns how it refused to start.
    pub fn try_start_in(data_dir: &Path, args: &[&str]) -> Result<TestServer, String> {
        TestServer::try_start_in_with_env(data_dir, args, &[])
    }

    /// Like [`TestServer::try_start_in`], with extra environment variables for the process.
    pub fn try_start_in_with_env(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<TestServer, String> {
        let mut server = TestServer::unstarted(data_dir, args);
        server.extra_env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        server.try_spawn().map(|()| server)
    }

    /// Waits (bounded) for the process to exit by itself; `None` if it is still running.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The data directory the server uses.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn spawn(&mut self) {
        if let Err(exited) = self.try_spawn() {
            panic!("redraft did not start: {exited}");
        }
    }

    /// Starts the process; `Err` with its status and log if it exits before becoming ready.
    fn try_spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(binary())
            .arg("--port")
            .arg("0")
            .arg("--dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .env("REDRAFT_LOG", "info")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start redraft");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let thread_log = log.clone();
        let log_reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            let mut port_tx = Some(port_tx);
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.split("Ready to accept connections tcp on ").nth(1) {
                    let port = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(tx), Some(port)) = (port_tx.take(), port) {
                        let _ = tx.send(port);
                    }
                }
                thread_log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        self.log = log;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match port_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => {
                    self.port = port;
                    self.child = Some(child);
                    return Ok(());
                }
                Err(_) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redraft did not become ready within {START_TIMEOUT:?}; log:\n{}",
                        self.log.lock().unwrap()
                    );
                }
                Err(_) => {
                    if let Some(status) = child.try_wait().expect("wait") {
                        // The process is gone: its stderr ends, and the reader has every line.
                        let _ = log_reader.join();
                        return Err(format!(
                            "exited with {status}: {}",
                            self.log.lock().unwrap()
                        ));
                    }
                }
            }
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` the process and wait for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal by PID and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redraft did not exit after SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// A `redis://` URL for this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A synchronous `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect")
    }

    /// A raw TCP connection with read timeouts.
    pub fn raw(&self) -> RawConnection {
        RawConnection::connect(self.port)
    }

    /// Runs `redis-cli -p <port> args...` and returns its stdout.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Runs `redis-cli` against a port; panics if redis-cli is missing or times out.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("20")
        .arg("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(
        output.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// A raw RESP connection for byte-exact checks.
pub struct RawConnection {
    stream: TcpStream,
}

impl RawConnection {
    /// Connects to 127.0.0.1:port.
    pub fn connect(port: u16) -> RawConnection {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        RawConnection { stream }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.stream.read_exact(&mut buf).expect("read");
        buf
    }

    /// Reads one complete RESP reply and returns its raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        self.try_read_reply().expect("read reply")
    }

    /// Reads one complete RESP reply, or `None` if the connection ends or times out first.
    pub fn try_read_reply(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.read_value(&mut out).ok()?;
        Some(out)
    }

    fn read_line(&mut self, out: &mut Vec<u8>) -> std::io::Result<String> {
        let start = out.len();
        let mut byte = [0u8; 1];
        loop {
            self.stream.read_exact(&mut byte)?;
            out.push(byte[0]);
            if out.len() >= start + 2 && &out[out.len() - 2..] == b"\r\n" {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&out[start..out.len() - 2]).into_owned())
    }

    fn read_value(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let line = self.read_line(out)?;
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | "-" | ":" | "_" | "," | "#" | "(" => {}
            "$" | "=" | "!" => {
                let len: i64 = rest.parse().expect("bulk length");
                if len >= 0 {
                    let mut data = vec![0u8; len as usize + 2];
                    self.stream.read_exact(&mut data)?;
                    out.extend_from_slice(&data);
                }
            }
            "*" | "~" | ">" => {
                let n: i64 = rest.parse().expect("array length");
                for _ in 0..n.max(0) {
                    self.read_value(out)?;
                }
            }
            "%" | "|" => {
                let n: i64 = rest.parse().expect("map length");
                for _ in 0..n.max(0) * 2 {
                    self.read_value(out)?;
                }
            }
            other => panic!("unexpected reply type {other:?} in {line:?}"),
        }
        Ok(())
    }

    /// Whether the server closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.stream.read(&mut buf), Ok(0))
    }
}

/// Encodes a command as a RESP multibulk array.
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The folder holding ioredis and the other npm clients (`bash .ci/test` runs `npm ci`
/// there and exports it); asserts they are installed.
pub fn node_clients() -> std::path::PathBuf {
    let dir = std::env::var("REDRAFT_TEST_NODE_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/redis-compat/clients/ioredis").to_string()
    });
    let dir = std::path::PathBuf::from(dir);
    assert!(
        dir.join("node_modules/ioredis/package.json").is_file(),
        "ioredis is not installed in {}: run `bash .ci/test` (it runs npm ci there)",
        dir.display()
    );
    dir
}

/// Runs a client-library script (`program script ports…`, at most `seconds`) and asserts it
/// exits successfully printing `OK`, showing what it printed otherwise.
pub fn run_client_script(program: &str, script: &std::path::Path, ports: &[u16], seconds: u32) {
    let output = Command::new("timeout")
        .arg(seconds.to_string())
        .arg(program)
        .arg(script)
        .args(ports.iter().map(u16::to_string))
        .output()
        .unwrap_or_else(|err| {
            panic!("timeout and {program} (run `bash .ci/test`, it installs them): {err}")
        });
    assert!(
        output.status.success(),
        "{} failed ({}):\n{}{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "OK");
}

/// The Python interpreter with redis-py (`bash .ci/test` makes `target/pyenv`).
pub fn python() -> String {
    if let Ok(python) = std::env::var("REDRAFT_TEST_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyenv/bin/python");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}
