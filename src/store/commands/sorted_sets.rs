//! Sorted-set commands: ZADD (NX, XX, GT, LT, CH, INCR), ZINCRBY, ZSCORE, ZMSCORE, ZCARD,
//! ZCOUNT, ZLEXCOUNT, ZRANGE (BYSCORE, BYLEX, REV, LIMIT, WITHSCORES), ZRANGESTORE, ZREVRANGE,
//! ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX, ZRANK, ZREVRANK, ZREM,
//! ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX, ZPOPMIN, ZPOPMAX, ZMPOP, ZUNION, ZINTER,
//! ZDIFF and their STORE forms (WEIGHTS, AGGREGATE), ZINTERCARD, ZRANDMEMBER and ZSCAN, with
//! Redis 7.0's replies (scores as `%.17g`, `inf`, RESP3 doubles and pairs) and errors.
//!
//! # Storage
//! Two rows per member: in `zset_scores` under its hash and its bytes (as a set's member, so
//! ZSCORE touches one row and ZSCAN and ZRANDMEMBER walk as SSCAN and SRANDMEMBER do), and in
//! `zset_order` under its score (sign-flipped big-endian bits, -0 as 0, so rows sort by score)
//! and its bytes, both holding the exact score. A ZADD, ZINCRBY or ZREM writes those rows and
//! the record whatever the set's size; ranges by score or from either end read only the rows
//! they answer. The record keeps the member count and whether the set ever outgrew a listpack
//! (more than `zset-max-listpack-entries` members, or one longer than
//! `zset-max-listpack-value` bytes: replicated parameters, see [`config`]), which ZADD never
//! undoes.
//!
//! # Costs unlike Redis's
//! There is no rank index: ZRANK, ranges starting at a rank and ZCOUNT walk the rows before
//! their answer (from the nearer end where that is known), where Redis's skiplist takes
//! O(log n). Lexicographic ranges walk from the end they start at, as Redis does over a
//! listpack.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;

use super::ReplySize::{Data, Small};
use super::sets::{member_key, pick_hashed, scan_hashed};
use super::{
    CountedRecord, KeyspaceCommand, SplitMix, c_str, command, config, int_arg, mpop_args,
    parse_cursor, parse_timeout, random_count, scan_options, scan_reply, store_collection,
    syntax_error, typed_meta,
};
use crate::redis::double::{parse_lenient, parse_strict};
use crate::redis::glob::glob_match;
use crate::resp::reply::format_double;
use crate::resp::{Reply, string2ll};
use crate::store::keyspace::{Keyspace, Kind, Record, Rows, StoreResult, prefix_end};
use crate::store::notify::{GENERIC, ZSET};

/// The largest sorted set Redis keeps as a listpack, as configured when a command runs.
#[derive(Clone, Copy)]
struct Listpack {
    /// `zset-max-listpack-entries`.
    entries: u64,
    /// `zset-max-listpack-value`.
    value: u64,
}

impl Listpack {
    fn configured<K: Keyspace + ?Sized>(ks: &mut K) -> StoreResult<Listpack> {
        Ok(Listpack {
            entries: config::limit(ks, config::ZSET_MAX_LISTPACK_ENTRIES)?,
            value: config::limit(ks, config::ZSET_MAX_LISTPACK_VALUE)?,
        })
    }

    /// Whether `len` members, the longest `longest` bytes, outgrow it.
    fn outgrown_by(self, len: u64, longest: usize) -> bool {
        len > self.entries || longest as u64 > self.value
    }
}

/// The sorted-set commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("zadd", |ks, args| zadd(ks, args, false), Small),
    command("zincrby", |ks, args| zadd(ks, args, true), Small),
    command("zscore", zscore, Small),
    command("zmscore", zmscore, Small),
    command("zcard", zcard, Small),
    command("zcount", |ks, args| zcount(ks, args, false), Small),
    command("zlexcount", |ks, args| zcount(ks, args, true), Small),
    command(
        "zrange",
        |ks, args| zrange(ks, args, RangeCommand::ZRANGE),
        Data,
    ),
    command(
        "zrangestore",
        |ks, args| zrange(ks, args, RangeCommand::ZRANGESTORE),
        Small,
    ),
    command(
        "zrevrange",
        |ks, args| zrange(ks, args, RangeCommand::ZREVRANGE),
        Data,
    ),
    command(
        "zrangebyscore",
        |ks, args| zrange(ks, args, RangeCommand::ZRANGEBYSCORE),
        Data,
    ),
    command(
        "zrevrangebyscore",
        |ks, args| zrange(ks, args, RangeCommand::ZREVRANGEBYSCORE),
        Data,
    ),
    command(
        "zrangebylex",
        |ks, args| zrange(ks, args, RangeCommand::ZRANGEBYLEX),
        Data,
    ),
    command(
        "zrevrangebylex",
        |ks, args| zrange(ks, args, RangeCommand::ZREVRANGEBYLEX),
        Data,
    ),
    command("zrank", |ks, args| zrank(ks, args, false), Small),
    command("zrevrank", |ks, args| zrank(ks, args, true), Small),
    command("zrem", zrem, Small),
    command(
        "zremrangebyrank",
        |ks, args| zremrange(ks, args, RangeBy::Rank),
        Small,
    ),
    command(
        "zremrangebyscore",
        |ks, args| zremrange(ks, args, RangeBy::Score),
        Small,
    ),
    command(
        "zremrangebylex",
        |ks, args| zremrange(ks, args, RangeBy::Lex),
        Small,
    ),
    command("zpopmin", |ks, args| zpop(ks, args, false), Data),
    command("zpopmax", |ks, args| zpop(ks, args, true), Data),
    command("zmpop", zmpop, Data),
    command(
        "zunion",
        |ks, args| combine(ks, args, Op::Union, false),
        Data,
    ),
    command(
        "zinter",
        |ks, args| combine(ks, args, Op::Inter, false),
        Data,
    ),
    command("zdiff", |ks, args| combine(ks, args, Op::Diff, false), Data),
    command(
        "zunionstore",
        |ks, args| combine(ks, args, Op::Union, true),
        Small,
    ),
    command(
        "zinterstore",
        |ks, args| combine(ks, args, Op::Inter, true),
        Small,
    ),
    command(
        "zdiffstore",
        |ks, args| combine(ks, args, Op::Diff, true),
        Small,
    ),
    command("zintercard", zintercard, Small),
    command("zrandmember", zrandmember, Data),
    command("zscan", zscan, Data),
    command("bzpopmin", |ks, args| blocking_zpop(ks, args, false), Data),
    command("bzpopmax", |ks, args| blocking_zpop(ks, args, true), Data),
    command("bzmpop", bzmpop, Data),
];

/// A sorted set's record: its member count, whether it ever outgrew a listpack (it is then,
/// as Redis would hold it, a skiplist), and where its walks may start.
///
/// # Why the bounds
/// Popped members stay in the applied layer as deletions until it is flushed (about a
/// second), and a walk from an end steps over every one of them: ZPOPMIN after ZPOPMIN, or a
/// poller's `ZRANGEBYSCORE key -inf now LIMIT 0 1`, would cost more at each call. So the record
/// keeps a lower bound of its order keys (where ZPOPMIN stopped) and an upper one (where
/// ZPOPMAX stopped), moved by every insert beyond them, and walks start there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ZsetMeta {
    len: u64,
    outgrown: bool,
    /// Every order key is at or above this one.
    low: Bound32,
    /// Every order key is below the first key after everything that starts with this one.
    high: Bound32,
}

/// An order key cut to at most 32 bytes (a cut key bounds the key from below, and the keys
/// starting with it from above); empty: no bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bound32 {
    len: u8,
    bytes: [u8; 32],
}

impl Bound32 {
    const NONE: Bound32 = Bound32 {
        len: 0,
        bytes: [0; 32],
    };

    fn of(key: &[u8]) -> Bound32 {
        let len = key.len().min(32);
        let mut bytes = [0; 32];
        bytes[..len].copy_from_slice(&key[..len]);
        Bound32 {
            len: len as u8,
            bytes,
        }
    }

    fn get(&self) -> Option<&[u8]> {
        (self.len > 0).then(|| &self.bytes[..self.len as usize])
    }

    fn decode(raw: &[u8]) -> Bound32 {
        match raw.split_first() {
            Some((&len, rest)) if (1..=32).contains(&len) && rest.len() >= len as usize => {
                Bound32::of(&rest[..len as usize])
            }
            _ => Bound32::NONE,
        }
    }

    fn encode(&self, out: &mut [u8]) {
        out[0] = self.len;
        out[1..33].copy_from_slice(&self.bytes);
    }
}

impl ZsetMeta {
    const EMPTY: ZsetMeta = ZsetMeta {
        len: 0,
        outgrown: false,
        low: Bound32::NONE,
        high: Bound32::NONE,
    };

    fn of(record: &Record) -> ZsetMeta {
        let counted = CountedRecord::of(record);
        let payload = &record.payload;
        ZsetMeta {
            len: counted.len,
            outgrown: counted.outgrown,
            low: payload.get(9..42).map_or(Bound32::NONE, Bound32::decode),
            high: payload.get(42..75).map_or(Bound32::NONE, Bound32::decode),
        }
    }

    fn encode(self) -> [u8; 75] {
        let mut out = [0; 75];
        out[..9].copy_from_slice(
            &CountedRecord {
                len: self.len,
                outgrown: self.outgrown,
            }
            .encode(),
        );
        self.low.encode(&mut out[9..42]);
        self.high.encode(&mut out[42..75]);
        out
    }

    /// Keeps the bounds true of a key now in the set.
    fn admit(&mut self, key: &[u8]) {
        if self.low.get().is_some_and(|low| key < low) {
            self.low = Bound32::of(key);
        }
        if let Some(high) = self.high.get()
            && prefix_end(high).is_some_and(|end| key >= end.as_slice())
        {
            self.high = Bound32::of(key);
        }
    }

    /// `start..end` narrowed to the bounds.
    fn narrow(&self, start: Bound<&[u8]>, end: Bound<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let start = match (start, self.low.get()) {
            (Bound::Unbounded, Some(low)) => Bound::Included(low.to_vec()),
            (Bound::Included(s) | Bound::Excluded(s), Some(low)) if s < low => {
                Bound::Included(low.to_vec())
            }
            (other, _) => other.map(<[u8]>::to_vec),
        };
        let end = match (end, self.high.get().and_then(prefix_end)) {
            (Bound::Unbounded, Some(high)) => Bound::Excluded(high),
            (Bound::Included(e) | Bound::Excluded(e), Some(high)) if e >= high.as_slice() => {
                Bound::Excluded(high)
            }
            (other, _) => other.map(<[u8]>::to_vec),
        };
        (start, end)
    }
}

/// What OBJECT ENCODING answers for a sorted set.
pub fn encoding(record: &Record) -> &'static str {
    if ZsetMeta::of(record).outgrown {
        "skiplist"
    } else {
        "listpack"
    }
}

/// A score's place in `zset_order`: its bits made to sort as numbers do (-0 as 0).
fn score_order(score: f64) -> u64 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn order_key(score: f64, member: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + member.len());
    out.extend_from_slice(&score_order(score).to_be_bytes());
    out.extend_from_slice(member);
    out
}

fn decode_score(value: &[u8]) -> f64 {
    value.get(..8).map_or(0.0, |b| {
        f64::from_bits(u64::from_be_bytes(b.try_into().expect("8")))
    })
}

/// A live sorted set's record, `None` when the key is missing, WRONGTYPE for another type.
fn zset<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<Result<Option<ZsetMeta>, Reply>> {
    typed_meta(ks, key, Kind::ZSet, ZsetMeta::of)
}

/// Writes a sorted set's record, or deletes the key when it is empty.
fn store<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], meta: ZsetMeta) -> StoreResult<()> {
    store_collection(ks, key, Kind::ZSet, &meta.encode())
}

fn score_of<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    member: &[u8],
) -> StoreResult<Option<f64>> {
    Ok(ks
        .element(Rows::ZsetScores, key, &member_key(member))?
        .map(|value| decode_score(&value)))
}

/// Sets `member`'s score (`old` is its current one, if any). The caller writes the record.
fn put<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ZsetMeta,
    member: &[u8],
    score: f64,
    old: Option<f64>,
    listpack: Listpack,
) -> StoreResult<()> {
    if let Some(old) = old {
        ks.remove_element(Rows::ZsetOrder, key, &order_key(old, member))?;
    } else {
        meta.len += 1;
        if listpack.outgrown_by(meta.len, member.len()) {
            meta.outgrown = true;
        }
    }
    // A listpack keeps a score as text, where -0 reads back as the integer 0.
    let score = if !meta.outgrown && score == 0.0 {
        0.0
    } else {
        score
    };
    let bits = score.to_bits().to_be_bytes();
    let order = order_key(score, member);
    meta.admit(&order);
    ks.put_element(Rows::ZsetScores, key, &member_key(member), &bits)?;
    ks.put_element(Rows::ZsetOrder, key, &order, &bits)?;
    Ok(())
}

/// Removes `member` (whose score is `score`). The caller writes the record.
fn remove<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ZsetMeta,
    member: &[u8],
    score: f64,
) -> StoreResult<()> {
    ks.remove_element(Rows::ZsetScores, key, &member_key(member))?;
    ks.remove_element(Rows::ZsetOrder, key, &order_key(score, member))?;
    meta.len -= 1;
    Ok(())
}

/// Calls `visit` with members and scores in score order (or from the highest, `reverse`)
/// between two `zset_order` sub-key bounds (narrowed to the record's), while it returns true.
fn visit_order<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &ZsetMeta,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    reverse: bool,
    visit: &mut dyn FnMut(Bytes, f64) -> bool,
) -> StoreResult<()> {
    let (start, end) = meta.narrow(start, end);
    let (start, end) = (
        start.as_ref().map(Vec::as_slice),
        end.as_ref().map(Vec::as_slice),
    );
    ks.visit_elements(
        Rows::ZsetOrder,
        key,
        start,
        end,
        reverse,
        &mut |sub, value| visit(Bytes::copy_from_slice(&sub[8..]), decode_score(value)),
    )
}

/// A score interval as `zslParseRange` reads it.
#[derive(Clone, Copy, Debug)]
struct ScoreRange {
    min: f64,
    min_exclusive: bool,
    max: f64,
    max_exclusive: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        let bound = |arg: &[u8]| match arg.first() {
            Some(b'(') => parse_lenient(&arg[1..]).map(|v| (v, true)),
            _ => parse_lenient(arg).map(|v| (v, false)),
        };
        let (min, min_exclusive) = bound(min)?;
        let (max, max_exclusive) = bound(max)?;
        Some(ScoreRange {
            min,
            min_exclusive,
            max,
            max_exclusive,
        })
    }

    /// Its bounds over `zset_order` sub-keys.
    fn bounds(self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let key = |order: u64| order.to_be_bytes().to_vec();
        let start = if self.min_exclusive {
            match score_order(self.min).checked_add(1) {
                Some(next) => Bound::Included(key(next)),
                None => Bound::Excluded(vec![0xff; 9]),
            }
        } else {
            Bound::Included(key(score_order(self.min)))
        };
        let end = if self.max_exclusive {
            Bound::Excluded(key(score_order(self.max)))
        } else {
            match score_order(self.max).checked_add(1) {
                Some(next) => Bound::Excluded(key(next)),
                None => Bound::Unbounded,
            }
        };
        (start, end)
    }
}

/// One end of a lexicographic range.
#[derive(Clone, Debug)]
enum LexBound {
    /// `-`
    Min,
    /// `+`
    Max,
    /// `[member` (inclusive) or `(member` (exclusive).
    Member(Bytes, bool),
}

impl LexBound {
    fn parse(arg: &Bytes) -> Option<LexBound> {
        match arg.first() {
            Some(b'+') if c_str(arg).len() == 1 => Some(LexBound::Max),
            Some(b'-') if c_str(arg).len() == 1 => Some(LexBound::Min),
            Some(b'[') => Some(LexBound::Member(arg.slice(1..), false)),
            Some(b'(') => Some(LexBound::Member(arg.slice(1..), true)),
            _ => None,
        }
    }

    /// Whether `member` is at or above this bound taken as a minimum.
    fn below(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Member(bound, exclusive) => {
                if *exclusive {
                    member > bound.as_ref()
                } else {
                    member >= bound.as_ref()
                }
            }
        }
    }

    /// Whether `member` is at or below this bound taken as a maximum.
    fn above(&self, member: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Member(bound, exclusive) => {
                if *exclusive {
                    member < bound.as_ref()
                } else {
                    member <= bound.as_ref()
                }
            }
        }
    }
}

/// Which members a range command selects.
#[derive(Clone, Debug)]
enum Selection {
    /// By rank, as given (negative from the end).
    Rank(i64, i64),
    /// By score.
    Score(ScoreRange),
    /// By member, between two lexicographic bounds.
    Lex(LexBound, LexBound),
}

/// The members `selection` picks in `key`'s set, in score order or (`reverse`) from the
/// highest; after `offset` of them, at most `limit` (negative: all).
fn select<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: ZsetMeta,
    selection: &Selection,
    reverse: bool,
    offset: i64,
    limit: i64,
) -> StoreResult<Vec<(Bytes, f64)>> {
    let mut out = Vec::new();
    if offset < 0 || limit == 0 {
        return Ok(out);
    }
    match selection {
        Selection::Rank(start, stop) => {
            let Some((first, last)) = clamp_ranks(*start, *stop, meta.len) else {
                return Ok(out);
            };
            // Ranks from the end in reverse order are ranks from the start the other way.
            let (first, last) = if reverse {
                (meta.len - 1 - last, meta.len - 1 - first)
            } else {
                (first, last)
            };
            let wanted = (last - first + 1) as usize;
            let from_end = first > meta.len - 1 - last;
            let mut skip = if from_end { meta.len - 1 - last } else { first };
            visit_order(
                ks,
                key,
                &meta,
                Bound::Unbounded,
                Bound::Unbounded,
                from_end,
                &mut |member, score| {
                    if skip > 0 {
                        skip -= 1;
                        return true;
                    }
                    out.push((member, score));
                    out.len() < wanted
                },
            )?;
            if from_end != reverse {
                out.reverse();
            }
        }
        Selection::Score(range) => {
            let (start, end) = range.bounds();
            let mut skip = offset;
            visit_order(
                ks,
                key,
                &meta,
                start.as_ref().map(Vec::as_slice),
                end.as_ref().map(Vec::as_slice),
                reverse,
                &mut |member, score| {
                    if skip > 0 {
                        skip -= 1;
                        return true;
                    }
                    out.push((member, score));
                    limit < 0 || (out.len() as i64) < limit
                },
            )?;
        }
        Selection::Lex(min, max) => {
            if !lex_range_possible(ks, key, &meta, min, max)? {
                return Ok(out);
            }
            // As Redis walks a listpack: to the first member past the near bound (stopping
            // there if it is past the far one too), `offset` more unchecked, then members
            // while they stay within the far bound.
            let mut skip = offset;
            let mut started = false;
            visit_order(
                ks,
                key,
                &meta,
                Bound::Unbounded,
                Bound::Unbounded,
                reverse,
                &mut |member, score| {
                    let (entered, inside) = if reverse {
                        (max.above(&member), min.below(&member))
                    } else {
                        (min.below(&member), max.above(&member))
                    };
                    if !started {
                        if !entered {
                            return true;
                        }
                        if !inside {
                            return false;
                        }
                        started = true;
                    }
                    if skip > 0 {
                        skip -= 1;
                        return true;
                    }
                    if !inside {
                        return false;
                    }
                    out.push((member, score));
                    limit < 0 || (out.len() as i64) < limit
                },
            )?;
        }
    }
    Ok(out)
}

/// Redis's `zzlIsInLexRange`: false when the bounds can select nothing (min above max, or
/// equal with either exclusive; `-` and `+` count as exclusive) or the set's last member is
/// below `min` or its first above `max`.
fn lex_range_possible<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &ZsetMeta,
    min: &LexBound,
    max: &LexBound,
) -> StoreResult<bool> {
    use std::cmp::Ordering;
    let order = match (min, max) {
        (LexBound::Min, LexBound::Min) | (LexBound::Max, LexBound::Max) => Ordering::Equal,
        (LexBound::Min, _) | (_, LexBound::Max) => Ordering::Less,
        (LexBound::Max, _) | (_, LexBound::Min) => Ordering::Greater,
        (LexBound::Member(a, _), LexBound::Member(b, _)) => a.cmp(b),
    };
    let exclusive = |bound: &LexBound| !matches!(bound, LexBound::Member(_, false));
    if order == Ordering::Greater
        || (order == Ordering::Equal && (exclusive(min) || exclusive(max)))
    {
        return Ok(false);
    }
    let mut ends = [None, None];
    for (end, reverse) in ends.iter_mut().zip([false, true]) {
        visit_order(
            ks,
            key,
            meta,
            Bound::Unbounded,
            Bound::Unbounded,
            reverse,
            &mut |member, _| {
                *end = Some(member);
                false
            },
        )?;
    }
    let [Some(first), Some(last)] = ends else {
        return Ok(false);
    };
    Ok(min.below(&last) && max.above(&first))
}

/// Redis's rank clamping: the inclusive rank range within `len` members, `None` when empty.
fn clamp_ranks(start: i64, stop: i64, len: u64) -> Option<(u64, u64)> {
    let len = len as i64;
    let start = if start < 0 { start + len } else { start }.max(0);
    let stop = if stop < 0 { stop + len } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as u64, stop.min(len - 1) as u64))
}

/// Members alone, or members and scores (RESP3 pairs).
fn members_reply(found: Vec<(Bytes, f64)>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            found
                .into_iter()
                .map(|(member, score)| (Reply::Bulk(member), Reply::Double(score)))
                .collect(),
        )
    } else {
        Reply::Array(found.into_iter().map(|(m, _)| Reply::Bulk(m)).collect())
    }
}

/// Replaces whatever `destination` holds with a sorted set of `members` (deleting it when
/// there are none), notifying `event` (or `del`); the new size.
fn store_members<K: Keyspace + ?Sized>(
    ks: &mut K,
    destination: &[u8],
    members: &[(Bytes, f64)],
    event: &'static str,
) -> StoreResult<i64> {
    let existed = ks.delete(destination)?;
    let listpack = Listpack::configured(ks)?;
    let mut meta = ZsetMeta::EMPTY;
    for (member, score) in members {
        put(ks, destination, &mut meta, member, *score, None, listpack)?;
    }
    // A stored result is a listpack when it is small enough, whatever built it.
    let longest = members.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    meta.outgrown = listpack.outgrown_by(meta.len, longest);
    store(ks, destination, meta)?;
    if meta.len > 0 {
        ks.notify(ZSET, event, destination);
    } else if existed {
        ks.notify(GENERIC, "del", destination);
    }
    Ok(meta.len as i64)
}

fn zadd(ks: &mut dyn Keyspace, args: &[Bytes], zincrby: bool) -> StoreResult<Reply> {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, zincrby);
    let mut at = 2;
    if !zincrby {
        while let Some(arg) = args.get(at) {
            let arg = c_str(arg);
            if arg.eq_ignore_ascii_case(b"nx") {
                nx = true;
            } else if arg.eq_ignore_ascii_case(b"xx") {
                xx = true;
            } else if arg.eq_ignore_ascii_case(b"gt") {
                gt = true;
            } else if arg.eq_ignore_ascii_case(b"lt") {
                lt = true;
            } else if arg.eq_ignore_ascii_case(b"ch") {
                ch = true;
            } else if arg.eq_ignore_ascii_case(b"incr") {
                incr = true;
            } else {
                break;
            }
            at += 1;
        }
    }
    let pairs = &args[at..];
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Ok(syntax_error());
    }
    if incr && pairs.len() > 2 {
        return Ok(Reply::error(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    if nx && xx {
        return Ok(Reply::error(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if ((gt || lt) && nx) || (gt && lt) {
        return Ok(Reply::error(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        match parse_strict(&pair[0]) {
            Some(score) => scores.push(score),
            None => return Ok(Reply::error("ERR value is not a valid float")),
        }
    }
    let key = &args[1];
    let existing = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta,
    };
    let created = existing.is_none();
    if created && xx {
        return Ok(if incr { Reply::Nil } else { Reply::Integer(0) });
    }
    let mut meta = existing.unwrap_or(ZsetMeta::EMPTY);
    // Redis sizes (and may convert) the set for the whole command before adding: a new one by
    // its members' count and longest member, an existing one by the count.
    let listpack = Listpack::configured(ks)?;
    let longest = match created {
        true => pairs.chunks_exact(2).map(|pair| pair[1].len()).max(),
        false => None,
    };
    if listpack.outgrown_by(pairs.len() as u64 / 2, longest.unwrap_or(0)) {
        meta.outgrown = true;
    }
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut last_score = 0.0;
    for (pair, &score) in pairs.chunks_exact(2).zip(&scores) {
        let member = &pair[1];
        let current = score_of(ks, key, member)?;
        match current {
            Some(current) => {
                if nx {
                    continue;
                }
                let new_score = if incr { current + score } else { score };
                if new_score.is_nan() {
                    store(ks, key, meta)?;
                    return Ok(Reply::error("ERR resulting score is not a number (NaN)"));
                }
                if (lt && new_score >= current) || (gt && new_score <= current) {
                    continue;
                }
                last_score = new_score;
                processed += 1;
                if new_score != current {
                    put(
                        ks,
                        key,
                        &mut meta,
                        member,
                        new_score,
                        Some(current),
                        listpack,
                    )?;
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                put(ks, key, &mut meta, member, score, None, listpack)?;
                last_score = score;
                added += 1;
                processed += 1;
            }
        }
    }
    if !created || meta.len > 0 {
        store(ks, key, meta)?;
    }
    if added + updated > 0 {
        ks.notify(ZSET, if incr { "zincr" } else { "zadd" }, key);
    }
    Ok(if incr {
        if processed > 0 {
            Reply::Double(last_score)
        } else {
            Reply::Nil
        }
    } else {
        Reply::Integer(if ch { added + updated } else { added })
    })
}

fn zscore(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    Ok(match zset(ks, key)? {
        Err(reply) => reply,
        Ok(None) => Reply::Nil,
        Ok(Some(_)) => score_of(ks, key, &args[2])?.map_or(Reply::Nil, Reply::Double),
    })
}

fn zmscore(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let exists = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta.is_some(),
    };
    let mut out = Vec::with_capacity(args.len() - 2);
    for member in &args[2..] {
        let score = if exists {
            score_of(ks, key, member)?
        } else {
            None
        };
        out.push(score.map_or(Reply::Nil, Reply::Double));
    }
    Ok(Reply::Array(out))
}

fn zcard(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    Ok(match zset(ks, &args[1])? {
        Err(reply) => reply,
        Ok(meta) => Reply::Integer(meta.map_or(0, |m| m.len as i64)),
    })
}

/// Parses a score or lexicographic range's two bounds, with Redis's error.
fn parse_selection(lex: bool, min: &Bytes, max: &Bytes) -> Result<Selection, Reply> {
    if lex {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(Selection::Lex(min, max)),
            _ => Err(Reply::error("ERR min or max not valid string range item")),
        }
    } else {
        ScoreRange::parse(min, max)
            .map(Selection::Score)
            .ok_or_else(|| Reply::error("ERR min or max is not a float"))
    }
}

fn zcount(ks: &mut dyn Keyspace, args: &[Bytes], lex: bool) -> StoreResult<Reply> {
    let selection = match parse_selection(lex, &args[2], &args[3]) {
        Ok(selection) => selection,
        Err(reply) => return Ok(reply),
    };
    let key = &args[1];
    let meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let found = select(ks, key, meta, &selection, false, 0, -1)?;
    Ok(Reply::Integer(found.len() as i64))
}

/// How a range command reads its arguments.
#[derive(Clone, Copy)]
struct RangeCommand {
    /// ZRANGESTORE: a destination first, no WITHSCORES.
    store: bool,
    /// The range kind the command fixes (`None`: chosen by BYSCORE/BYLEX, ranks otherwise).
    fixed: Option<RangeBy>,
    /// Whether the command itself reads backwards (ZREV…).
    reverse: bool,
}

/// What a range selects by: ranks, scores or members.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeBy {
    Rank,
    Score,
    Lex,
}

impl RangeCommand {
    const fn new(store: bool, fixed: Option<RangeBy>, reverse: bool) -> RangeCommand {
        RangeCommand {
            store,
            fixed,
            reverse,
        }
    }

    const ZRANGE: RangeCommand = RangeCommand::new(false, None, false);
    const ZRANGESTORE: RangeCommand = RangeCommand::new(true, None, false);
    const ZREVRANGE: RangeCommand = RangeCommand::new(false, Some(RangeBy::Rank), true);
    const ZRANGEBYSCORE: RangeCommand = RangeCommand::new(false, Some(RangeBy::Score), false);
    const ZREVRANGEBYSCORE: RangeCommand = RangeCommand::new(false, Some(RangeBy::Score), true);
    const ZRANGEBYLEX: RangeCommand = RangeCommand::new(false, Some(RangeBy::Lex), false);
    const ZREVRANGEBYLEX: RangeCommand = RangeCommand::new(false, Some(RangeBy::Lex), true);
}

/// Redis's `zrangeGenericCommand`: every range read, and ZRANGESTORE.
fn zrange(ks: &mut dyn Keyspace, args: &[Bytes], how: RangeCommand) -> StoreResult<Reply> {
    let first = if how.store { 2 } else { 1 };
    let key = &args[first];
    let mut with_scores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut limited = false;
    let mut reverse = how.reverse.then_some(true);
    let mut kind = how.fixed;
    let mut at = first + 3;
    while at < args.len() {
        let option = c_str(&args[at]);
        let left = args.len() - at - 1;
        if !how.store && option.eq_ignore_ascii_case(b"withscores") {
            with_scores = true;
        } else if option.eq_ignore_ascii_case(b"limit") && left >= 2 {
            match (int_arg(&args[at + 1]), int_arg(&args[at + 2])) {
                (Ok(o), Ok(l)) => (offset, limit) = (o, l),
                (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
            }
            // Redis takes a limit of -1 as no LIMIT at all.
            limited = limit != -1;
            at += 2;
        } else if reverse.is_none() && option.eq_ignore_ascii_case(b"rev") {
            reverse = Some(true);
        } else if kind.is_none() && option.eq_ignore_ascii_case(b"bylex") {
            kind = Some(RangeBy::Lex);
        } else if kind.is_none() && option.eq_ignore_ascii_case(b"byscore") {
            kind = Some(RangeBy::Score);
        } else {
            return Ok(syntax_error());
        }
        at += 1;
    }
    let reverse = reverse.unwrap_or(false);
    let kind = kind.unwrap_or(RangeBy::Rank);
    if limited && kind == RangeBy::Rank {
        return Ok(Reply::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or \
             BYLEX",
        ));
    }
    if with_scores && kind == RangeBy::Lex {
        return Ok(Reply::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (&args[first + 1], &args[first + 2]);
    if reverse && kind != RangeBy::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let selection = match kind {
        RangeBy::Rank => match (int_arg(min), int_arg(max)) {
            (Ok(start), Ok(stop)) => Selection::Rank(start, stop),
            (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
        },
        RangeBy::Score => match parse_selection(false, min, max) {
            Ok(selection) => selection,
            Err(reply) => return Ok(reply),
        },
        RangeBy::Lex => match parse_selection(true, min, max) {
            Ok(selection) => selection,
            Err(reply) => return Ok(reply),
        },
    };
    let meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(meta) => meta,
    };
    // A rank range takes no LIMIT; Redis lets `LIMIT <any> -1` through and ignores it.
    if kind == RangeBy::Rank {
        offset = 0;
    }
    let found = match meta {
        None => Vec::new(),
        Some(meta) => select(ks, key, meta, &selection, reverse, offset, limit)?,
    };
    if how.store {
        let stored = store_members(ks, &args[1], &found, "zrangestore")?;
        return Ok(Reply::Integer(stored));
    }
    Ok(members_reply(found, with_scores))
}

/// The rank of the member whose `zset_order` sub-key is `target`: how many come before it.
fn rank_of<K: Keyspace + ?Sized>(ks: &mut K, key: &[u8], target: &[u8]) -> StoreResult<u64> {
    let mut rank = 0u64;
    ks.visit_elements(
        Rows::ZsetOrder,
        key,
        Bound::Unbounded,
        Bound::Excluded(target),
        false,
        &mut |_, _| {
            rank += 1;
            true
        },
    )?;
    Ok(rank)
}

fn zrank(ks: &mut dyn Keyspace, args: &[Bytes], reverse: bool) -> StoreResult<Reply> {
    let key = &args[1];
    let meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Nil),
        Ok(Some(meta)) => meta,
    };
    let Some(score) = score_of(ks, key, &args[2])? else {
        return Ok(Reply::Nil);
    };
    let rank = rank_of(ks, key, &order_key(score, &args[2]))?;
    Ok(Reply::Integer(if reverse {
        (meta.len - 1 - rank) as i64
    } else {
        rank as i64
    }))
}

fn zrem(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let mut meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let mut removed = 0;
    for member in &args[2..] {
        if let Some(score) = score_of(ks, key, member)? {
            remove(ks, key, &mut meta, member, score)?;
            removed += 1;
        }
    }
    if removed > 0 {
        store(ks, key, meta)?;
        ks.notify(ZSET, "zrem", key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(Reply::Integer(removed))
}

fn zremrange(ks: &mut dyn Keyspace, args: &[Bytes], kind: RangeBy) -> StoreResult<Reply> {
    let selection = match kind {
        RangeBy::Rank => match (int_arg(&args[2]), int_arg(&args[3])) {
            (Ok(start), Ok(stop)) => Selection::Rank(start, stop),
            (Err(reply), _) | (_, Err(reply)) => return Ok(reply),
        },
        _ => match parse_selection(kind == RangeBy::Lex, &args[2], &args[3]) {
            Ok(selection) => selection,
            Err(reply) => return Ok(reply),
        },
    };
    let key = &args[1];
    let mut meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(meta)) => meta,
    };
    let doomed = select(ks, key, meta, &selection, false, 0, -1)?;
    for (member, score) in &doomed {
        remove(ks, key, &mut meta, member, *score)?;
    }
    if !doomed.is_empty() {
        store(ks, key, meta)?;
        let event = match kind {
            RangeBy::Rank => "zremrangebyrank",
            RangeBy::Score => "zremrangebyscore",
            RangeBy::Lex => "zremrangebylex",
        };
        ks.notify(ZSET, event, key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(Reply::Integer(doomed.len() as i64))
}

/// Pops up to `count` members from the lowest (or `highest`) scores of `key`'s set.
fn pop_members<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    meta: &mut ZsetMeta,
    highest: bool,
    count: u64,
) -> StoreResult<Vec<(Bytes, f64)>> {
    let mut popped = Vec::new();
    if count > 0 {
        visit_order(
            ks,
            key,
            meta,
            Bound::Unbounded,
            Bound::Unbounded,
            highest,
            &mut |member, score| {
                popped.push((member, score));
                (popped.len() as u64) < count
            },
        )?;
    }
    for (member, score) in &popped {
        remove(ks, key, meta, member, *score)?;
    }
    // The members left are all beyond the last one popped: later walks start there.
    if let Some((member, score)) = popped.last() {
        let bound = Bound32::of(&order_key(*score, member));
        if highest {
            meta.high = bound;
        } else {
            meta.low = bound;
        }
    }
    store(ks, key, *meta)?;
    if !popped.is_empty() {
        ks.notify(ZSET, if highest { "zpopmax" } else { "zpopmin" }, key);
        if meta.len == 0 {
            ks.notify(GENERIC, "del", key);
        }
    }
    Ok(popped)
}

fn zpop(ks: &mut dyn Keyspace, args: &[Bytes], highest: bool) -> StoreResult<Reply> {
    if args.len() > 3 {
        return Ok(syntax_error());
    }
    let count = match args.get(2) {
        None => None,
        Some(arg) => match string2ll(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Ok(Reply::error("ERR value is out of range, must be positive")),
        },
    };
    let key = &args[1];
    let mut meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Array(Vec::new())),
        Ok(Some(meta)) => meta,
    };
    if count == Some(0) {
        return Ok(Reply::Array(Vec::new()));
    }
    let popped = pop_members(ks, key, &mut meta, highest, count.unwrap_or(1))?;
    Ok(match count {
        // With a count: pairs in RESP3; a single pop is a flat pair in both.
        Some(_) => members_reply(popped, true),
        None => Reply::Array(
            popped
                .into_iter()
                .flat_map(|(member, score)| [Reply::Bulk(member), Reply::Double(score)])
                .collect(),
        ),
    })
}

fn zmpop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let lowest_or_highest = |word: &[u8]| {
        if word.eq_ignore_ascii_case(b"min") {
            Some(false)
        } else if word.eq_ignore_ascii_case(b"max") {
            Some(true)
        } else {
            None
        }
    };
    let (keys, highest, count) = match mpop_args(args, lowest_or_highest) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(reply),
    };
    for key in keys {
        let mut meta = match zset(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(None) => continue,
            Ok(Some(meta)) => meta,
        };
        let popped = pop_members(ks, key, &mut meta, highest, count)?;
        return Ok(Reply::Array(vec![
            Reply::Bulk(key.clone()),
            Reply::Array(
                popped
                    .into_iter()
                    .map(|(member, score)| {
                        Reply::Array(vec![Reply::Bulk(member), Reply::Double(score)])
                    })
                    .collect(),
            ),
        ]));
    }
    Ok(Reply::NilArray)
}

/// BZPOPMIN and BZPOPMAX, not blocking (see `lists`): the first non-empty set's lowest
/// (highest) member as `[key, member, score]`, nil when every set is empty.
fn blocking_zpop(ks: &mut dyn Keyspace, args: &[Bytes], highest: bool) -> StoreResult<Reply> {
    let (keys, timeout) = args[1..].split_at(args.len() - 2);
    if let Err(reply) = parse_timeout(&timeout[0], ks.now_ms()) {
        return Ok(reply);
    }
    for key in keys {
        let mut meta = match zset(ks, key)? {
            Err(reply) => return Ok(reply),
            Ok(None) => continue,
            Ok(Some(meta)) => meta,
        };
        if let Some((member, score)) = pop_members(ks, key, &mut meta, highest, 1)?.pop() {
            return Ok(Reply::Array(vec![
                Reply::Bulk(key.clone()),
                Reply::Bulk(member),
                Reply::Double(score),
            ]));
        }
    }
    Ok(Reply::NilArray)
}

/// BZMPOP: its timeout, then ZMPOP's arguments.
fn bzmpop(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if let Err(reply) = parse_timeout(&args[1], ks.now_ms()) {
        return Ok(reply);
    }
    zmpop(ks, &args[1..])
}

/// ZUNION, ZINTER and ZDIFF.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

/// How ZUNION and ZINTER combine a member's scores.
#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, total: f64, value: f64) -> f64 {
        match self {
            Aggregate::Sum => {
                let sum = total + value;
                // inf + -inf: Redis keeps 0.
                if sum.is_nan() { 0.0 } else { sum }
            }
            Aggregate::Min => total.min(value),
            Aggregate::Max => total.max(value),
        }
    }
}

/// An input of ZUNION, ZINTER, ZDIFF or ZINTERCARD: a sorted set, or a set (every score 1).
enum Source {
    Missing,
    Zset(ZsetMeta),
    Set(u64),
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Missing => 0,
            Source::Zset(meta) => meta.len,
            Source::Set(len) => *len,
        }
    }
}

/// The inputs at `keys`, or WRONGTYPE for one that is neither a sorted set nor a set.
fn sources<K: Keyspace + ?Sized>(
    ks: &mut K,
    keys: &[Bytes],
) -> StoreResult<Result<Vec<Source>, Reply>> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push(match ks.record(key)? {
            None => Source::Missing,
            Some(record) if record.kind == Kind::ZSet => Source::Zset(ZsetMeta::of(&record)),
            Some(record) if record.kind == Kind::Set => Source::Set(record.element_count()),
            Some(_) => return Ok(Err(super::wrong_type())),
        });
    }
    Ok(Ok(out))
}

/// Every member of an input with its score.
fn source_members<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    source: &Source,
) -> StoreResult<Vec<(Bytes, f64)>> {
    let mut out = Vec::new();
    match source {
        Source::Missing => {}
        Source::Zset(meta) => visit_order(
            ks,
            key,
            meta,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            &mut |member, score| {
                out.push((member, score));
                true
            },
        )?,
        Source::Set(_) => ks.visit_elements(
            Rows::SetMembers,
            key,
            Bound::Unbounded,
            Bound::Unbounded,
            false,
            &mut |sub, _| {
                out.push((Bytes::copy_from_slice(&sub[8..]), 1.0));
                true
            },
        )?,
    }
    Ok(out)
}

/// An input's score for `member`, if it has it.
fn source_score<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
    source: &Source,
    member: &[u8],
) -> StoreResult<Option<f64>> {
    Ok(match source {
        Source::Missing => None,
        Source::Zset(_) => score_of(ks, key, member)?,
        Source::Set(_) => ks
            .element(Rows::SetMembers, key, &member_key(member))?
            .map(|_| 1.0),
    })
}

/// A weighted score: Redis takes inf × 0 as 0.
fn weighted(score: f64, weight: f64) -> f64 {
    let value = score * weight;
    if value.is_nan() { 0.0 } else { value }
}

/// Computes a union, intersection or difference (in score order, then member order).
fn compute<K: Keyspace + ?Sized>(
    ks: &mut K,
    op: Op,
    keys: &[Bytes],
    sources: &[Source],
    weights: &[f64],
    aggregate: Aggregate,
    limit: u64,
) -> StoreResult<Vec<(Bytes, f64)>> {
    let mut result: Vec<(Bytes, f64)> = Vec::new();
    match op {
        Op::Union => {
            let mut totals: HashMap<Bytes, f64> = HashMap::new();
            for ((key, source), &weight) in keys.iter().zip(sources).zip(weights) {
                for (member, score) in source_members(ks, key, source)? {
                    let value = weighted(score, weight);
                    totals
                        .entry(member)
                        .and_modify(|total| *total = aggregate.apply(*total, value))
                        .or_insert(value);
                }
            }
            result.extend(totals);
        }
        Op::Inter => {
            if sources.iter().any(|s| s.len() == 0) {
                return Ok(result);
            }
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| sources[i].len());
            let first = order[0];
            'members: for (member, score) in source_members(ks, &keys[first], &sources[first])? {
                let mut total = weighted(score, weights[first]);
                for &other in &order[1..] {
                    match source_score(ks, &keys[other], &sources[other], &member)? {
                        Some(score) => {
                            total = aggregate.apply(total, weighted(score, weights[other]));
                        }
                        None => continue 'members,
                    }
                }
                result.push((member, total));
                if limit != 0 && result.len() as u64 >= limit {
                    break;
                }
            }
        }
        Op::Diff => {
            'members: for (member, score) in source_members(ks, &keys[0], &sources[0])? {
                for (key, source) in keys[1..].iter().zip(&sources[1..]) {
                    if source_score(ks, key, source, &member)?.is_some() {
                        continue 'members;
                    }
                }
                result.push((member, score));
            }
        }
    }
    result.sort_by(|(m1, s1), (m2, s2)| {
        s1.partial_cmp(s2)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| m1.cmp(m2))
    });
    Ok(result)
}

/// ZUNION, ZINTER, ZDIFF (`numkeys key… [WEIGHTS w…] [AGGREGATE …] [WITHSCORES]`) and their
/// STORE forms (`destination numkeys key…`).
fn combine(ks: &mut dyn Keyspace, args: &[Bytes], op: Op, store: bool) -> StoreResult<Reply> {
    let numkeys_at = if store { 2 } else { 1 };
    let numkeys = match int_arg(&args[numkeys_at]) {
        Ok(n) => n,
        Err(reply) => return Ok(reply),
    };
    if numkeys < 1 {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        return Ok(Reply::error(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    if numkeys as u64 > (args.len() - numkeys_at - 1) as u64 {
        return Ok(syntax_error());
    }
    let keys_end = numkeys_at + 1 + numkeys as usize;
    let keys = &args[numkeys_at + 1..keys_end];
    let sources = match sources(ks, keys)? {
        Err(reply) => return Ok(reply),
        Ok(sources) => sources,
    };
    let mut weights = vec![1.0; keys.len()];
    let mut aggregate = Aggregate::Sum;
    let mut with_scores = false;
    let mut at = keys_end;
    while at < args.len() {
        let option = c_str(&args[at]);
        let left = args.len() - at - 1;
        if op != Op::Diff && left >= keys.len() && option.eq_ignore_ascii_case(b"weights") {
            for (i, weight) in weights.iter_mut().enumerate() {
                *weight = match parse_strict(&args[at + 1 + i]) {
                    Some(w) => w,
                    None => return Ok(Reply::error("ERR weight value is not a float")),
                };
            }
            at += keys.len();
        } else if op != Op::Diff && left >= 1 && option.eq_ignore_ascii_case(b"aggregate") {
            let how = c_str(&args[at + 1]);
            aggregate = if how.eq_ignore_ascii_case(b"sum") {
                Aggregate::Sum
            } else if how.eq_ignore_ascii_case(b"min") {
                Aggregate::Min
            } else if how.eq_ignore_ascii_case(b"max") {
                Aggregate::Max
            } else {
                return Ok(syntax_error());
            };
            at += 1;
        } else if !store && option.eq_ignore_ascii_case(b"withscores") {
            with_scores = true;
        } else {
            return Ok(syntax_error());
        }
        at += 1;
    }
    let result = compute(ks, op, keys, &sources, &weights, aggregate, 0)?;
    if store {
        let event = match op {
            Op::Union => "zunionstore",
            Op::Inter => "zinterstore",
            Op::Diff => "zdiffstore",
        };
        return Ok(Reply::Integer(store_members(ks, &args[1], &result, event)?));
    }
    Ok(members_reply(result, with_scores))
}

fn zintercard(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let numkeys = match int_arg(&args[1]) {
        Ok(n) if n > 0 => n as u64,
        Ok(_) => {
            return Ok(Reply::error(
                "ERR at least 1 input key is needed for 'zintercard' command",
            ));
        }
        Err(reply) => return Ok(reply),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Ok(syntax_error());
    }
    let keys_end = 2 + numkeys as usize;
    let keys = &args[2..keys_end];
    let sources = match sources(ks, keys)? {
        Err(reply) => return Ok(reply),
        Ok(sources) => sources,
    };
    let mut limit = 0;
    let mut at = keys_end;
    while at < args.len() {
        if c_str(&args[at]).eq_ignore_ascii_case(b"limit") && at + 1 < args.len() {
            limit = match string2ll(&args[at + 1]) {
                Some(n) if n >= 0 => n as u64,
                _ => return Ok(Reply::error("ERR LIMIT can't be negative")),
            };
            at += 2;
        } else {
            return Ok(syntax_error());
        }
    }
    let weights = vec![1.0; keys.len()];
    let found = compute(
        ks,
        Op::Inter,
        keys,
        &sources,
        &weights,
        Aggregate::Sum,
        limit,
    )?;
    Ok(Reply::Integer(found.len() as i64))
}

fn zrandmember(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let Some(_) = args.get(2) else {
        return Ok(match zset(ks, key)? {
            Err(reply) => reply,
            Ok(None) => Reply::Nil,
            Ok(Some(_)) => {
                let mut rng = SplitMix(ks.random_seed());
                Reply::Bulk(pick_hashed(ks, Rows::ZsetScores, key, &mut rng)?.0)
            }
        });
    };
    let (count, with_scores) = match random_count(args, Some("withscores")) {
        Ok(parsed) => parsed,
        Err(reply) => return Ok(reply),
    };
    let meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Array(Vec::new())),
        Ok(Some(meta)) => meta,
    };
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let wanted = count.unsigned_abs();
    let mut rng = SplitMix(ks.random_seed());
    let mut picked: Vec<(Bytes, f64)> = Vec::new();
    if count < 0 {
        if wanted > super::hashes::MAX_RANDOM_REPEATS {
            return Ok(Reply::error(format!(
                "ERR ZRANDMEMBER with a negative count answers at most {} members",
                super::hashes::MAX_RANDOM_REPEATS
            )));
        }
        for _ in 0..wanted {
            let (member, value) = pick_hashed(ks, Rows::ZsetScores, key, &mut rng)?;
            picked.push((member, decode_score(&value)));
        }
    } else if wanted >= meta.len {
        // The whole set, highest score first: Redis walks it from its tail.
        picked = select(ks, key, meta, &Selection::Rank(0, -1), true, 0, -1)?;
    } else {
        let mut seen = BTreeMap::new();
        while (seen.len() as u64) < wanted {
            let (member, value) = pick_hashed(ks, Rows::ZsetScores, key, &mut rng)?;
            if !seen.contains_key(&member) {
                seen.insert(member.clone(), ());
                picked.push((member, decode_score(&value)));
            }
        }
    }
    Ok(members_reply(picked, with_scores))
}

fn zscan(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let Some(cursor) = parse_cursor(&args[2]) else {
        return Ok(Reply::error("ERR invalid cursor"));
    };
    let meta = match zset(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(scan_reply(0, Vec::new())),
        Ok(Some(meta)) => meta,
    };
    let (count, pattern) = match scan_options(&args[3..]) {
        Ok(options) => options,
        Err(reply) => return Ok(reply),
    };
    let mut items = Vec::new();
    let mut push = |member: Bytes, score: f64| {
        if pattern.is_none_or(|p| glob_match(p, &member, false)) {
            items.push(Reply::Bulk(member));
            items.push(Reply::bulk(format_double(score)));
        }
    };
    if !meta.outgrown {
        // Redis answers a small (listpack) sorted set whole, in score order.
        for (member, score) in select(ks, key, meta, &Selection::Rank(0, -1), false, 0, -1)? {
            push(member, score);
        }
        return Ok(scan_reply(0, items));
    }
    let next = scan_hashed(
        ks,
        Rows::ZsetScores,
        key,
        cursor,
        count,
        &mut |member, value| {
            push(member, decode_score(value));
        },
    )?;
    Ok(scan_reply(next, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commands::test_support::{exec, strings};
    use crate::store::keyspace::testing::TestStore;

    /// A model (member → score) beside the store: random ZADD, ZINCRBY, ZREM and ZPOPMIN keep
    /// both equal, read by rank from both ends, by score and by rank of each member.
    #[test]
    fn sorted_sets_follow_a_model() {
        let db = TestStore::new();
        let mut model: BTreeMap<String, i64> = BTreeMap::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for index in 1..1_500u64 {
            let member = format!("m{}", next(40));
            let score = next(20) as i64 - 10;
            let mut ordered: Vec<(i64, String)> =
                model.iter().map(|(m, s)| (*s, m.clone())).collect();
            ordered.sort();
            let line = match next(6) {
                0 | 1 => {
                    model.insert(member.clone(), score);
                    format!("ZADD z {score} {member}")
                }
                2 => {
                    *model.entry(member.clone()).or_insert(0) += score;
                    format!("ZINCRBY z {score} {member}")
                }
                3 => {
                    model.remove(&member);
                    format!("ZREM z {member}")
                }
                // Pops move the record's walk bounds; inserts beyond them must move them back.
                4 => {
                    for (_, popped) in ordered.iter().take(2) {
                        model.remove(popped);
                    }
                    "ZPOPMIN z 2".to_string()
                }
                _ => {
                    for (_, popped) in ordered.iter().rev().take(2) {
                        model.remove(popped);
                    }
                    "ZPOPMAX z 2".to_string()
                }
            };
            exec(&db, index, &line);
            let mut ordered: Vec<(i64, String)> =
                model.iter().map(|(m, s)| (*s, m.clone())).collect();
            ordered.sort();
            let expected: Vec<String> = ordered.iter().map(|(_, m)| m.clone()).collect();
            assert_eq!(
                strings(exec(&db, index, "ZRANGE z 0 -1")),
                expected,
                "{line}"
            );
            let mut reversed = expected.clone();
            reversed.reverse();
            assert_eq!(strings(exec(&db, index, "ZRANGE z 0 -1 REV")), reversed);
            if expected.len() > 4 {
                assert_eq!(
                    strings(exec(&db, index, "ZRANGE z -3 -2")),
                    expected[expected.len() - 3..expected.len() - 1]
                );
                let (rank, member) = (2, &expected[2]);
                assert_eq!(
                    exec(&db, index, &format!("ZRANK z {member}")),
                    Reply::Integer(rank)
                );
            }
            let in_range: Vec<String> = ordered
                .iter()
                .filter(|(s, _)| (-3..5).contains(s))
                .map(|(_, m)| m.clone())
                .collect();
            assert_eq!(strings(exec(&db, index, "ZRANGEBYSCORE z -3 (5")), in_range);
        }
    }

    #[test]
    fn large_sorted_sets_are_skiplists_and_scan_every_member() {
        let db = TestStore::new();
        let pairs: Vec<String> = (0..300).map(|i| format!("{i} member:{i}")).collect();
        exec(&db, 1, &format!("ZADD z {}", pairs.join(" ")));
        assert_eq!(
            exec(&db, 2, "OBJECT ENCODING z"),
            Reply::bulk_str("skiplist")
        );
        let mut cursor = "0".to_string();
        let mut seen = 0;
        loop {
            let Reply::Array(parts) = exec(&db, 3, &format!("ZSCAN z {cursor} COUNT 50")) else {
                panic!("ZSCAN answers an array");
            };
            let (Reply::Bulk(next), Reply::Array(items)) = (&parts[0], &parts[1]) else {
                panic!("cursor and items");
            };
            seen += items.len() / 2;
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen, 300);
        assert_eq!(exec(&db, 4, "ZRANK z member:299"), Reply::Integer(299));
        assert_eq!(exec(&db, 5, "ZREVRANK z member:299"), Reply::Integer(0));
    }
}
