//! Byte-for-byte comparison with a real Redis.
//!
//! Goal: every reply redraft gives to the commands in `redis-compat/transcripts/*.txt` is the
//! reply Debian's `redis-server` 7.0 gives, in RESP2 and in RESP3. Method: start a real
//! `redis-server` (no persistence) and redraft on free loopback ports, send each transcript line
//! to both as a RESP multibulk command over a fresh connection per transcript, and compare the
//! raw reply bytes. Transcript lines use Redis's inline syntax (quotes, `\xHH` escapes); `#`
//! starts a comment line.

mod common;

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

fn transcripts() -> Vec<(String, Vec<Vec<Vec<u8>>>)> {
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
            let commands = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(split_line)
                .collect();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                commands,
            )
        })
        .collect()
}

fn run_transcripts(resp3: bool) {
    let redis = RealRedis::start();
    let redraft = TestServer::start();
    let mut compared = 0;
    for (name, commands) in transcripts() {
        let mut expected_conn = RawConnection::connect(redis.port);
        let mut actual_conn = RawConnection::connect(redraft.port);
        for conn in [&mut expected_conn, &mut actual_conn] {
            conn.send(&resp_command(&[b"FLUSHALL"]));
            assert_eq!(conn.read_reply(), b"+OK\r\n");
            if resp3 {
                conn.send(&resp_command(&[b"HELLO", b"3"]));
                conn.read_reply();
            }
        }
        for command in commands {
            let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
            let request = resp_command(&args);
            expected_conn.send(&request);
            actual_conn.send(&request);
            let expected = expected_conn.read_reply();
            let actual = actual_conn.read_reply();
            assert_eq!(
                String::from_utf8_lossy(&actual),
                String::from_utf8_lossy(&expected),
                "{name} ({}): reply to {:?}",
                if resp3 { "RESP3" } else { "RESP2" },
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            );
            compared += 1;
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
