//! Operator subcommands (`redraft cluster add|remove|transfer|members --to host:port`): a small
//! RESP client that sends the matching `RAFT.*` command to a running member and prints the
//! reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

/// Membership and leadership actions, sent to any member of a running cluster.
#[derive(Clone, Debug, Subcommand)]
pub enum ClusterAction {
    /// Add a node: it becomes a learner, catches up, then a voter.
    Add {
        /// The new node's id.
        id: u64,
        /// Its client address, `host:port[@peerport]`.
        addr: String,
        /// Any member's client address.
        #[arg(long)]
        to: String,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node's id.
        id: u64,
        /// Any member's client address.
        #[arg(long)]
        to: String,
    },
    /// Hand leadership to a node (or to the most up-to-date voter).
    Transfer {
        /// The node to lead next.
        id: Option<u64>,
        /// The current leader's client address.
        #[arg(long)]
        to: String,
    },
    /// List members with their roles and replication progress.
    Members {
        /// Any member's client address.
        #[arg(long)]
        to: String,
    },
}

/// How long an action may take (adding a node waits for it to catch up).
const ACTION_TIMEOUT: Duration = Duration::from_secs(600);

fn command_bytes(args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    out
}

fn read_reply(stream: &mut TcpStream) -> anyhow::Result<OwnedFrame> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, _)) = decode(&buf).map_err(|e| anyhow::anyhow!("bad reply: {e:?}"))? {
            return Ok(frame);
        }
        let n = stream.read(&mut chunk).context("reading the reply")?;
        anyhow::ensure!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn render(frame: &OwnedFrame, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match frame {
        OwnedFrame::SimpleString(s) | OwnedFrame::BulkString(s) => {
            out.push_str(&format!("{pad}{}\n", String::from_utf8_lossy(s)));
        }
        OwnedFrame::Error(e) => out.push_str(&format!("{pad}(error) {e}\n")),
        OwnedFrame::Integer(n) => out.push_str(&format!("{pad}{n}\n")),
        OwnedFrame::Null => out.push_str(&format!("{pad}(nil)\n")),
        OwnedFrame::Array(items) => {
            for item in items {
                render(item, indent + 1, out);
            }
        }
    }
}

/// Runs one action against `--to`, authenticating with `password` if given.
pub fn run(action: &ClusterAction, password: Option<&str>) -> anyhow::Result<()> {
    let (to, args): (&str, Vec<String>) = match action {
        ClusterAction::Add { id, addr, to } => (
            to,
            vec!["RAFT.ADDNODE".into(), id.to_string(), addr.clone()],
        ),
        ClusterAction::Remove { id, to } => (to, vec!["RAFT.REMOVENODE".into(), id.to_string()]),
        ClusterAction::Transfer { id, to } => {
            let mut args = vec!["RAFT.TRANSFER".to_string()];
            args.extend(id.map(|id| id.to_string()));
            (to, args)
        }
        ClusterAction::Members { to } => (to, vec!["RAFT.MEMBERS".into()]),
    };
    let mut stream = TcpStream::connect(to).with_context(|| format!("cannot connect to {to}"))?;
    stream.set_read_timeout(Some(ACTION_TIMEOUT))?;
    if let Some(password) = password {
        stream.write_all(&command_bytes(&["AUTH".into(), password.into()]))?;
        if let OwnedFrame::Error(e) = read_reply(&mut stream)? {
            anyhow::bail!("{e}");
        }
    }
    stream.write_all(&command_bytes(&args))?;
    let reply = read_reply(&mut stream)?;
    if let OwnedFrame::Error(e) = &reply {
        anyhow::bail!("{e}");
    }
    let mut out = String::new();
    render(&reply, 0, &mut out);
    print!("{out}");
    Ok(())
}
