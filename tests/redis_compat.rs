//! Byte-for-byte comparison with a real Redis.
//!
//! Goal: every reply redraft gives to the commands in `redis-compat/transcripts/*.txt` is the
//! reply Debian's `redis-server` 7.0 gives, in RESP2 and in RESP3. Method: start a real
//! `redis-server` (no persistence) and redraft on free loopback ports, send each transcript line
//! to both as a RESP multibulk command over a fresh connection per transcript, and compare the
//! raw reply bytes. Transcript lines use Redis's inline syntax (quotes, `\xHH` escapes); `#`
//! starts a comment line. A line starting `@name` runs on a second connection of that name
//! (opened on first use, so Pub/Sub transcripts can have subscribers and publishers), and
//! `@name read` reads one more reply from it without sending anything (a message).

mod common;

use std::collections::HashMap;
use std::path::Path;

use bytes::BytesMut;
use common::real_redis::RealRedis;
use common::{RawConnection, TestServer, resp_command};
use redraft::resp::RequestParser;

/// Splits a transcript line exactly as Redis splits an inline command.
fn split_line(line: &str) -> Vec<Vec<u8>> {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::from(format!("{line}\r\n").as_bytes());
    match parser.next_command(&mut buf, true) {
        Ok(Some(args)) => args.into_iter().map(|a| a.to_vec()).collect(),
        other => panic!("transcript line {line:?} does not parse: {other:?}"),
    }
}

/// One transcript line: a command sent on a connection, or a reply read from one.
struct Step {
    /// The connection: `main`, or the name after `@`.
    connection: String,
    /// The command; `None` for `@name read` (a reply already due, such as a Pub/Sub message).
    command: Option<Vec<Vec<u8>>>,
}

impl Step {
    /// Replies the step reads: one per name for SUBSCRIBE and its kin (Redis confirms each),
    /// one otherwise.
    fn replies(&self) -> usize {
        let Some(command) = &self.command else {
            return 1;
        };
        let name = String::from_utf8_lossy(&command[0]).to_ascii_lowercase();
        let subscribing = [
            "subscribe",
            "psubscribe",
            "ssubscribe",
            "unsubscribe",
            "punsubscribe",
            "sunsubscribe",
        ];
        if subscribing.contains(&name.as_str()) {
            command.len().saturating_sub(1).max(1)
        } else {
            1
        }
    }
}

fn parse_step(line: &str) -> Step {
    let (connection, rest) = match line.strip_prefix('@') {
        Some(tail) => {
            let (name, rest) = tail.split_once(' ').unwrap_or((tail, ""));
            (name.to_string(), rest.trim())
        }
        None => ("main".to_string(), line),
    };
    Step {
        connection,
        command: (rest != "read").then(|| split_line(rest)),
    }
}

fn transcripts() -> Vec<(String, Vec<Step>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("redis-compat/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("transcripts directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let steps = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(parse_step)
                .collect();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                steps,
            )
        })
        .collect()
}

/// A transcript's connections to both servers, by name, opened on first use.
struct Connections {
    resp3: bool,
    redis_port: u16,
    redraft_port: u16,
    open: HashMap<String, (RawConnection, RawConnection)>,
}

impl Connections {
    fn get(&mut self, name: &str) -> &mut (RawConnection, RawConnection) {
        let (resp3, redis_port, redraft_port) = (self.resp3, self.redis_port, self.redraft_port);
        let first = self.open.is_empty();
        self.open.entry(name.to_string()).or_insert_with(|| {
            let mut pair = (
                RawConnection::connect(redis_port),
                RawConnection::connect(redraft_port),
            );
            for conn in [&mut pair.0, &mut pair.1] {
                if first {
                    conn.send(&resp_command(&[b"FLUSHALL"]));
                    assert_eq!(conn.read_reply(), b"+OK\r\n");
                }
                if resp3 {
                    conn.send(&resp_command(&[b"HELLO", b"3"]));
                    conn.read_reply();
                }
            }
            pair
        })
    }
}

fn run_transcripts(resp3: bool) {
    let redis = RealRedis::start();
    let redraft = TestServer::start();
    let mut compared = 0;
    for (name, steps) in transcripts() {
        let mut connections = Connections {
            resp3,
            redis_port: redis.port,
            redraft_port: redraft.port,
            open: HashMap::new(),
        };
        connections.get("main");
        for step in steps {
            let (expected_conn, actual_conn) = connections.get(&step.connection);
            if let Some(command) = &step.command {
                let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
                let request = resp_command(&args);
                expected_conn.send(&request);
                actual_conn.send(&request);
            }
            for _ in 0..step.replies() {
                let expected = expected_conn.read_reply();
                let actual = actual_conn.read_reply();
                assert_eq!(
                    String::from_utf8_lossy(&actual),
                    String::from_utf8_lossy(&expected),
                    "{name} ({}): reply to {} {:?}",
                    if resp3 { "RESP3" } else { "RESP2" },
                    step.connection,
                    step.command
                        .iter()
                        .flatten()
                        .map(|a| String::from_utf8_lossy(a))
                        .collect::<Vec<_>>()
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "compared only {compared} replies");
}

#[test]
fn redis_compat_transcripts_match_real_redis_resp2() {
    run_transcripts(false);
}

#[test]
fn redis_compat_transcripts_match_real_redis_resp3() {
    run_transcripts(true);
}
