//! A real `redis-server` (Debian's 7.0) for side-by-side comparisons, on a free loopback
//! port, killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// A real redis-server on a free port, killed on drop.
pub struct RealRedis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl RealRedis {
    /// Starts redis-server on a free port; retries with another port if that one was taken
    /// meanwhile (by a redraft another test started), and checks it is Redis that answers.
    pub fn start() -> RealRedis {
        for _ in 0..10 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--databases", "16"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (apt-get install redis-server)");
            let mut redis = RealRedis { child, port };
            let ready = wait_for("redis-server to start", Duration::from_secs(20), || {
                if let Ok(Some(_)) = redis.child.try_wait() {
                    return Some(false);
                }
                let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
                use std::io::{Read, Write};
                conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                conn.write_all(b"INFO server\r\n").ok()?;
                let mut buf = vec![0u8; 8192];
                let n = conn.read(&mut buf).ok()?;
                let text = String::from_utf8_lossy(&buf[..n]);
                Some(text.contains("redis_version") && !text.contains("redraft_version"))
            });
            if ready {
                return redis;
            }
            let _ = redis.child.kill();
            let _ = redis.child.wait();
        }
        panic!("could not start redis-server on a free port");
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
