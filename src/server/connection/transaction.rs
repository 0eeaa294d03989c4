//! MULTI/EXEC/DISCARD/UNWATCH on one connection: what is queued, how EXEC becomes one
//! [`Command::Transaction`], and how the replies of its non-keyspace commands are spliced into
//! EXEC's answer.

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Outcome, Session};
use crate::command::Command;
use crate::resp::{Protocol, Reply};

/// Commands queued after MULTI.
#[derive(Default)]
pub(super) struct Transaction {
    /// Keyspace commands: EXEC applies them as one log entry.
    queued: Vec<Vec<Bytes>>,
    /// Other commands (PING, ECHO, INFO, CLIENT SETNAME…) with their place in the queue: they
    /// touch no key, so the connection answers them when the keyspace part has applied and
    /// splices their replies in.
    local: Vec<(usize, Command)>,
    /// A queued command was refused: EXEC answers EXECABORT.
    dirty: bool,
}

impl Session {
    /// A parsed command after the MULTI bookkeeping, or the reply to send instead (a command
    /// refused while a transaction is open makes EXEC answer EXECABORT).
    pub(super) fn prepare(&mut self, args: Vec<Bytes>) -> Result<Command, Reply> {
        if self.in_subscribed_mode()
            && let Some(refusal) = self.subscribed_mode_refusal(&args)
        {
            return Err(refusal);
        }
        match crate::command::parse(args) {
            Ok(command) => self.transaction_step(command),
            Err(reply) => {
                if let Some(multi) = &mut self.multi {
                    multi.dirty = true;
                }
                Err(reply)
            }
        }
    }

    /// MULTI/EXEC/DISCARD bookkeeping: queues commands while a transaction is open and turns
    /// EXEC into one [`Command::Transaction`]. `Err` is the reply to send instead of running.
    fn transaction_step(&mut self, command: Command) -> Result<Command, Reply> {
        let Some(multi) = &mut self.multi else {
            return match command {
                Command::Exec => Err(Reply::error("ERR EXEC without MULTI")),
                Command::Discard => Err(Reply::error("ERR DISCARD without MULTI")),
                Command::Multi if self.authenticated => {
                    self.multi = Some(Transaction::default());
                    Err(Reply::ok())
                }
                Command::Unwatch if self.authenticated => {
                    self.clear_watched();
                    Err(Reply::ok())
                }
                other => Ok(other),
            };
        };
        match command {
            Command::Exec => {
                let transaction = self.multi.take().unwrap_or_default();
                let watched = self.clear_watched();
                if transaction.dirty {
                    return Err(Reply::error(
                        "EXECABORT Transaction discarded because of previous errors.",
                    ));
                }
                self.exec_local = transaction.local;
                Ok(Command::Transaction {
                    commands: transaction.queued,
                    watched,
                })
            }
            Command::Discard => {
                self.multi = None;
                self.clear_watched();
                Err(Reply::ok())
            }
            Command::Multi => Err(Reply::error("ERR MULTI calls can not be nested")),
            Command::Watch(_) => Err(Reply::error("ERR WATCH inside MULTI is not allowed")),
            command @ (Command::Quit | Command::Reset) => {
                self.multi = None;
                Ok(command)
            }
            Command::Keyspace { args, .. } => {
                multi.queued.push(args);
                Err(Reply::simple("QUEUED"))
            }
            command => {
                let position = multi.queued.len() + multi.local.len();
                multi.local.push((position, command));
                Err(Reply::simple("QUEUED"))
            }
        }
    }

    /// Answers the non-keyspace commands an EXEC queued and splices their replies in at their
    /// places once the keyspace part has applied. They run when EXEC is dispatched (they touch
    /// no key, so no other client can tell); an EXEC aborted by WATCH (nil) or refused (error)
    /// drops their replies. Any other outcome passes through.
    pub(super) fn with_local_replies(&mut self, outcome: Outcome) -> Outcome {
        let local = std::mem::take(&mut self.exec_local);
        if local.is_empty() {
            return outcome;
        }
        let transaction = match outcome {
            Outcome::Ready(reply) | Outcome::Close(reply) => futures::future::ready(reply).boxed(),
            Outcome::Pending(future) => future,
        };
        let local: Vec<(usize, BoxFuture<'static, Reply>)> = local
            .into_iter()
            .map(|(position, command)| {
                let reply = match self.dispatch(command) {
                    Outcome::Ready(reply) | Outcome::Close(reply) => {
                        futures::future::ready(reply).boxed()
                    }
                    Outcome::Pending(future) => future,
                };
                (position, reply)
            })
            .collect();
        let protocol = self.protocol;
        Outcome::Pending(
            async move {
                let reply = transaction.await;
                let mut answered = Vec::with_capacity(local.len());
                for (position, local_reply) in local {
                    answered.push((position, local_reply.await));
                }
                splice_replies(reply, answered, protocol)
            }
            .boxed(),
        )
    }

    pub(super) fn clear_watched(&mut self) -> Vec<(Bytes, u64)> {
        std::mem::take(&mut *self.watched.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// EXEC's reply with the replies of its non-keyspace commands inserted at their positions
/// (ascending). `transaction` is the keyspace part's array, typed or already encoded by the
/// leader; anything else (nil after WATCH, an error) is returned unchanged.
fn splice_replies(transaction: Reply, local: Vec<(usize, Reply)>, protocol: Protocol) -> Reply {
    match transaction {
        Reply::Array(mut replies) => {
            for (position, reply) in local {
                replies.insert(position.min(replies.len()), reply);
            }
            Reply::Array(replies)
        }
        Reply::Raw(raw) => match split_encoded_array(&raw) {
            Some(mut items) => {
                let mut encoded: Vec<Bytes> = Vec::with_capacity(items.len() + local.len());
                encoded.append(&mut items);
                for (position, reply) in local {
                    let mut one = BytesMut::new();
                    reply.encode(protocol, &mut one);
                    encoded.insert(position.min(encoded.len()), one.freeze());
                }
                let mut out = BytesMut::new();
                out.extend_from_slice(format!("*{}\r\n", encoded.len()).as_bytes());
                encoded.iter().for_each(|item| out.extend_from_slice(item));
                Reply::Raw(out.freeze())
            }
            None => Reply::Raw(raw),
        },
        other => other,
    }
}

/// The encoded elements of an encoded RESP array (`*n` then n replies), or `None` when `raw`
/// is not a complete array.
fn split_encoded_array(raw: &Bytes) -> Option<Vec<Bytes>> {
    let header_end = raw.windows(2).position(|w| w == b"\r\n")?;
    let count: usize = std::str::from_utf8(raw.get(1..header_end)?)
        .ok()?
        .parse()
        .ok()
        .filter(|_| raw.first() == Some(&b'*'))?;
    let mut offset = header_end + 2;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let used = crate::resp::scan::reply_len(raw.get(offset..)?)?;
        items.push(raw.slice(offset..offset + used));
        offset += used;
    }
    (offset == raw.len()).then_some(items)
}
