//! HyperLogLog: PFADD, PFCOUNT and PFMERGE over string values in Redis 7.0's own format, byte
//! for byte: the `HYLL` header with its cached cardinality, the sparse encoding (ZERO, XZERO
//! and VAL opcodes, merged as Redis merges them, promoted to dense past `hll-sparse-max-bytes`
//! (3000) or a register above 32) and the dense one (16384 six-bit registers), MurmurHash64A
//! with Redis's seed, and Ertl's estimator as Redis computes it. So a value moves between
//! redraft and Redis with GET and SET, and a damaged one is refused as Redis refuses it.
//!
//! PFCOUNT of one key stores the count it computed in the value's cache, as Redis does, so it
//! goes through the log like a write. PFDEBUG (GETREG, DECODE, ENCODING, TODENSE) and
//! PFSELFTEST answer as far as Redis's own tests use them.

use bytes::Bytes;

use super::ReplySize::Small;
use super::{KeyspaceCommand, command, typed_record};
use crate::resp::Reply;
use crate::store::keyspace::{Keyspace, Kind, StoreResult};
use crate::store::notify::STRING;

/// The HyperLogLog commands: one line each (see [`KeyspaceCommand`]).
pub const COMMANDS: &[KeyspaceCommand] = &[
    command("pfadd", pfadd, Small),
    command("pfcount", pfcount, Small).logged(),
    command("pfmerge", pfmerge, Small),
    command("pfdebug", pfdebug, Small),
    command("pfselftest", pfselftest, Small),
];

const P: u32 = 14;
const Q: u32 = 64 - P;
const REGISTERS: usize = 1 << P;
const REGISTER_MAX: u8 = 63;
const HEADER: usize = 16;
const DENSE_SIZE: usize = HEADER + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const SPARSE_MAX_BYTES: usize = 3000;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

fn wrong_kind() -> Reply {
    Reply::error("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

fn corrupted() -> Reply {
    Reply::error("INVALIDOBJ Corrupted HLL object detected")
}

/// Redis's MurmurHash64A (endian-neutral), as its HyperLogLog hashes elements.
fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u64::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element goes to and its run of zeros plus one (`hllPatLen`).
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, 0xadc8_3b19);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

fn dense_get(registers: &[u8], index: usize) -> u8 {
    let byte = index * 6 / 8;
    let first_bit = (index * 6) & 7;
    let b0 = u16::from(registers[byte]);
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> first_bit) | (b1 << (8 - first_bit))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_set(registers: &mut [u8], index: usize, value: u8) {
    let byte = index * 6 / 8;
    let first_bit = (index * 6) & 7;
    let value = u16::from(value);
    let low = &mut registers[byte];
    *low &= !((u16::from(REGISTER_MAX) << first_bit) as u8);
    *low |= (value << first_bit) as u8;
    if byte + 1 < registers.len() {
        let high = &mut registers[byte + 1];
        *high &= !((u16::from(REGISTER_MAX) >> (8 - first_bit)) as u8);
        *high |= (value >> (8 - first_bit)) as u8;
    }
}

/// One sparse opcode: a run of zeros or of one value.
#[derive(Clone, Copy)]
enum Opcode {
    Zero(usize),
    XZero(usize),
    Val(u8, usize),
}

impl Opcode {
    fn at(bytes: &[u8], at: usize) -> Option<Opcode> {
        let b = *bytes.get(at)?;
        Some(if b & 0x80 != 0 {
            Opcode::Val(((b >> 2) & 0x1f) + 1, usize::from(b & 0x3) + 1)
        } else if b & 0xc0 == 0x40 {
            let next = *bytes.get(at + 1)?;
            Opcode::XZero(((usize::from(b & 0x3f) << 8) | usize::from(next)) + 1)
        } else {
            Opcode::Zero(usize::from(b & 0x3f) + 1)
        })
    }

    fn size(self) -> usize {
        match self {
            Opcode::XZero(_) => 2,
            _ => 1,
        }
    }

    fn span(self) -> usize {
        match self {
            Opcode::Zero(len) | Opcode::XZero(len) | Opcode::Val(_, len) => len,
        }
    }
}

fn val_byte(value: u8, len: usize) -> u8 {
    ((value - 1) << 2 | (len as u8 - 1)) | 0x80
}

/// A run of `len` zeros as Redis writes it (ZERO up to 64, XZERO beyond).
fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        let l = len - 1;
        out.push((l >> 8) as u8 | 0x40);
        out.push((l & 0xff) as u8);
    } else {
        out.push(len as u8 - 1);
    }
}

/// An empty HyperLogLog: sparse, one XZERO of every register, a valid cached count of 0.
fn empty() -> Vec<u8> {
    let mut out = b"HYLL".to_vec();
    out.push(SPARSE);
    out.extend_from_slice(&[0; 11]);
    push_zeros(&mut out, XZERO_MAX_LEN);
    out
}

/// Whether `value` is a HyperLogLog Redis would accept (`isHLLObjectOrReply`).
fn is_hll(value: &[u8]) -> bool {
    value.len() >= HEADER
        && &value[..4] == b"HYLL"
        && value[4] <= SPARSE
        && (value[4] != DENSE || value.len() == DENSE_SIZE)
}

fn invalidate_cache(value: &mut [u8]) {
    value[15] |= 1 << 7;
}

/// The registers of a sparse HyperLogLog, or `None` when its opcodes do not cover exactly
/// every register.
fn sparse_registers(value: &[u8]) -> Option<Vec<u8>> {
    let mut registers = vec![0u8; REGISTERS];
    let (mut at, mut index) = (HEADER, 0);
    while at < value.len() {
        let op = Opcode::at(value, at)?;
        if let Opcode::Val(v, len) = op {
            if index + len > REGISTERS {
                return None;
            }
            registers[index..index + len].fill(v);
        }
        index += op.span();
        at += op.size();
    }
    (index == REGISTERS).then_some(registers)
}

/// Every register's value, whatever the encoding; `None` for a damaged sparse value.
fn registers(value: &[u8]) -> Option<Vec<u8>> {
    if value[4] == DENSE {
        Some(
            (0..REGISTERS)
                .map(|i| dense_get(&value[HEADER..], i))
                .collect(),
        )
    } else {
        sparse_registers(value)
    }
}

/// The dense form of a sparse value (`hllSparseToDense`): the header kept, the registers
/// set; `None` when the sparse value is damaged.
fn to_dense(value: &[u8]) -> Option<Vec<u8>> {
    if value[4] == DENSE {
        return Some(value.to_vec());
    }
    let registers = sparse_registers(value)?;
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HEADER].copy_from_slice(&value[..HEADER]);
    dense[4] = DENSE;
    for (i, &v) in registers.iter().enumerate() {
        if v != 0 {
            dense_set(&mut dense[HEADER..], i, v);
        }
    }
    Some(dense)
}

/// Raises register `index` to `count` (`hllSparseSet` / `hllDenseSet`): `Some(true)` when it
/// changed, `None` when the value is damaged. A sparse value may become dense.
fn set_register(value: &mut Vec<u8>, index: usize, count: u8) -> Option<bool> {
    if value[4] == DENSE {
        if dense_get(&value[HEADER..], index) >= count {
            return Some(false);
        }
        dense_set(&mut value[HEADER..], index, count);
        return Some(true);
    }
    if count > VAL_MAX_VALUE {
        return promote(value, index, count);
    }
    // The opcode covering `index`, the one before it, and the first register it covers.
    let (mut at, mut first, mut prev) = (HEADER, 0usize, None);
    let op = loop {
        let op = Opcode::at(value, at)?;
        if index < first + op.span() {
            break op;
        }
        prev = Some(at);
        at += op.size();
        first += op.span();
        if at >= value.len() {
            return None;
        }
    };
    let span = op.span();
    match op {
        Opcode::Val(old, _) if old >= count => return Some(false),
        Opcode::Val(_, 1) | Opcode::Zero(1) => value[at] = val_byte(count, 1),
        _ => {
            let last = first + span - 1;
            let mut seq = Vec::with_capacity(5);
            match op {
                Opcode::Val(current, _) => {
                    if index != first {
                        seq.push(val_byte(current, index - first));
                    }
                    seq.push(val_byte(count, 1));
                    if index != last {
                        seq.push(val_byte(current, last - index));
                    }
                }
                _ => {
                    if index != first {
                        push_zeros(&mut seq, index - first);
                    }
                    seq.push(val_byte(count, 1));
                    if index != last {
                        push_zeros(&mut seq, last - index);
                    }
                }
            }
            let grows =
                seq.len() > op.size() && value.len() + seq.len() - op.size() > SPARSE_MAX_BYTES;
            if grows {
                return promote(value, index, count);
            }
            value.splice(at..at + op.size(), seq);
        }
    }
    // Merge adjacent VAL opcodes of one value, scanning up to five opcodes from the one
    // before the change (Redis's step 4).
    let mut p = prev.unwrap_or(HEADER);
    let mut scan = 5;
    while p < value.len() && scan > 0 {
        scan -= 1;
        let op = Opcode::at(value, p)?;
        let Opcode::Val(v1, len1) = op else {
            p += op.size();
            continue;
        };
        if let Some(Opcode::Val(v2, len2)) = (p + 1 < value.len())
            .then(|| Opcode::at(value, p + 1))
            .flatten()
            && v1 == v2
            && len1 + len2 <= VAL_MAX_LEN
        {
            value[p + 1] = val_byte(v1, len1 + len2);
            value.remove(p);
            continue;
        }
        p += 1;
    }
    invalidate_cache(value);
    Some(true)
}

/// Turns a sparse value dense, then sets the register there.
fn promote(value: &mut Vec<u8>, index: usize, count: u8) -> Option<bool> {
    *value = to_dense(value)?;
    dense_set(&mut value[HEADER..], index, count);
    Some(true)
}

/// Ertl's estimator as Redis computes it (`hllCount`) from the register histogram.
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - f64::from(histogram[Q as usize + 1])) / m);
    for j in (1..=Q as usize).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

fn count_registers(registers: &[u8]) -> u64 {
    let mut histogram = [0u32; 64];
    for &r in registers {
        histogram[usize::from(r)] += 1;
    }
    estimate(&histogram)
}

/// The HyperLogLog at `key` (`None` when missing), or the reply refusing it.
fn hll_at<K: Keyspace + ?Sized>(
    ks: &mut K,
    key: &[u8],
) -> StoreResult<super::bitmaps::StringValue> {
    Ok(match typed_record(ks, key, Kind::String)? {
        Err(reply) => Err(reply),
        Ok(None) => Ok(None),
        Ok(Some(record)) if is_hll(&record.payload) => {
            Ok(Some((record.payload, record.expire_at_ms)))
        }
        Ok(Some(_)) => Err(wrong_kind()),
    })
}

fn pfadd(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[1];
    let (mut value, expire, mut updated) = match hll_at(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => (empty(), None, true),
        Ok(Some((value, expire))) => (value.to_vec(), expire, false),
    };
    let mut outcome = Reply::Nil;
    for element in &args[2..] {
        let (index, count) = pattern(element);
        match set_register(&mut value, index, count) {
            Some(changed) => updated |= changed,
            None => {
                outcome = corrupted();
                break;
            }
        }
    }
    if updated {
        invalidate_cache(&mut value);
        ks.put_string(key, &value, expire)?;
        ks.notify(STRING, "pfadd", key);
    }
    Ok(match outcome {
        Reply::Nil => Reply::Integer(i64::from(updated)),
        error => error,
    })
}

fn pfcount(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    if args.len() > 2 {
        let mut max = vec![0u8; REGISTERS];
        if let Err(reply) = merge_registers(ks, &args[1..], &mut max)? {
            return Ok(reply);
        }
        return Ok(Reply::Integer(count_registers(&max) as i64));
    }
    let key = &args[1];
    let (value, expire) = match hll_at(ks, key)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::Integer(0)),
        Ok(Some(found)) => found,
    };
    if value[15] & 0x80 == 0 {
        let cached = u64::from_le_bytes(value[8..16].try_into().expect("8 bytes"));
        return Ok(Reply::Integer(cached as i64));
    }
    let Some(registers) = registers(&value) else {
        return Ok(corrupted());
    };
    let count = count_registers(&registers);
    let mut value = value.to_vec();
    value[8..16].copy_from_slice(&count.to_le_bytes());
    ks.put_string(key, &value, expire)?;
    Ok(Reply::Integer(count as i64))
}

fn pfmerge(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let mut max = vec![0u8; REGISTERS];
    // The destination is merged too, as the first source.
    let merged = match merge_registers(ks, &args[1..], &mut max)? {
        Ok(merged) => merged,
        Err(reply) => return Ok(reply),
    };
    let (mut value, expire) = match merged.first {
        None => (empty(), None),
        Some((value, expire)) => (value.to_vec(), expire),
    };
    if merged.any_dense {
        match to_dense(&value) {
            Some(converted) => value = converted,
            None => return Ok(corrupted()),
        }
    }
    for (index, &m) in max.iter().enumerate() {
        if m != 0 && set_register(&mut value, index, m).is_none() {
            return Ok(corrupted());
        }
    }
    invalidate_cache(&mut value);
    ks.put_string(&args[1], &value, expire)?;
    ks.notify(STRING, "pfadd", &args[1]);
    Ok(Reply::ok())
}

/// What [`merge_registers`] found besides the registers.
struct Merged {
    /// The first key's value and deadline, if it exists.
    first: Option<(Bytes, Option<i64>)>,
    /// Whether any value was dense.
    any_dense: bool,
}

/// Raises `max` to every register of the HyperLogLogs at `keys` (a missing key is empty, as
/// Redis's `hllMerge` takes it), or the reply refusing one of them.
fn merge_registers<K: Keyspace + ?Sized>(
    ks: &mut K,
    keys: &[Bytes],
    max: &mut [u8],
) -> StoreResult<Result<Merged, Reply>> {
    let mut merged = Merged {
        first: None,
        any_dense: false,
    };
    for (i, key) in keys.iter().enumerate() {
        let (value, expire) = match hll_at(ks, key)? {
            Err(reply) => return Ok(Err(reply)),
            Ok(None) => continue,
            Ok(Some(found)) => found,
        };
        merged.any_dense |= value[4] == DENSE;
        let Some(registers) = registers(&value) else {
            return Ok(Err(corrupted()));
        };
        for (m, r) in max.iter_mut().zip(registers) {
            *m = (*m).max(r);
        }
        if i == 0 {
            merged.first = Some((value, expire));
        }
    }
    Ok(Ok(merged))
}

/// PFDEBUG GETREG, DECODE, ENCODING and TODENSE, as Redis's tests use them (GETREG and
/// TODENSE leave a sparse value dense, as in Redis).
fn pfdebug(ks: &mut dyn Keyspace, args: &[Bytes]) -> StoreResult<Reply> {
    let key = &args[2];
    let (mut value, expire) = match typed_record(ks, key, Kind::String)? {
        Err(reply) => return Ok(reply),
        Ok(None) => return Ok(Reply::error("ERR The specified key does not exist")),
        Ok(Some(record)) if is_hll(&record.payload) => {
            (record.payload.to_vec(), record.expire_at_ms)
        }
        Ok(Some(_)) => return Ok(wrong_kind()),
    };
    let subcommand = args[1].to_ascii_lowercase();
    match subcommand.as_slice() {
        b"getreg" | b"todense" => {
            let converted = value[4] == SPARSE;
            if converted {
                let Some(dense) = to_dense(&value) else {
                    return Ok(corrupted());
                };
                value = dense;
                ks.put_string(key, &value, expire)?;
            }
            if subcommand == b"todense" {
                return Ok(Reply::Integer(i64::from(converted)));
            }
            Ok(Reply::Array(
                (0..REGISTERS)
                    .map(|i| Reply::Integer(i64::from(dense_get(&value[HEADER..], i))))
                    .collect(),
            ))
        }
        b"decode" => {
            if value[4] != SPARSE {
                return Ok(Reply::error("ERR HLL encoding is not sparse"));
            }
            let mut words = Vec::new();
            let mut at = HEADER;
            while let Some(op) = Opcode::at(&value, at) {
                words.push(match op {
                    Opcode::Zero(len) => format!("z:{len}"),
                    Opcode::XZero(len) => format!("Z:{len}"),
                    Opcode::Val(v, len) => format!("v:{v},{len}"),
                });
                at += op.size();
            }
            Ok(Reply::Bulk(Bytes::from(words.join(" "))))
        }
        b"encoding" => Ok(Reply::simple(if value[4] == DENSE {
            "dense"
        } else {
            "sparse"
        })),
        _ => Ok(Reply::error(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(&args[1])
        ))),
    }
}

/// PFSELFTEST: checks the register codec and the sparse/dense agreement, then answers OK.
fn pfselftest(_ks: &mut dyn Keyspace, _args: &[Bytes]) -> StoreResult<Reply> {
    let mut sparse = empty();
    for i in 0..2000u32 {
        let (index, count) = pattern(&i.to_le_bytes());
        if set_register(&mut sparse, index, count).is_none() {
            return Ok(Reply::error("ERR TESTFAILED sparse set failed"));
        }
    }
    let (Some(from_sparse), Some(dense)) = (registers(&sparse), to_dense(&sparse)) else {
        return Ok(Reply::error("ERR TESTFAILED sparse value damaged"));
    };
    if registers(&dense).as_ref() != Some(&from_sparse) {
        return Ok(Reply::error(
            "ERR TESTFAILED sparse and dense registers differ",
        ));
    }
    Ok(Reply::ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_registers_read_back_what_was_set() {
        let mut registers = vec![0u8; DENSE_SIZE - HEADER];
        for i in [0, 1, 2, 3, 4, 100, REGISTERS - 1] {
            dense_set(&mut registers, i, (i % 63 + 1) as u8);
        }
        for i in [0, 1, 2, 3, 4, 100, REGISTERS - 1] {
            assert_eq!(dense_get(&registers, i), (i % 63 + 1) as u8, "register {i}");
        }
        assert_eq!(dense_get(&registers, 5), 0);
    }

    #[test]
    fn the_self_test_passes() {
        let db = crate::store::keyspace::testing::TestStore::new();
        let reply = db.write(1, 1, |view| pfselftest(view, &[]).unwrap());
        assert_eq!(reply, Reply::ok());
    }

    #[test]
    fn an_empty_value_counts_zero_and_is_eighteen_bytes() {
        let value = empty();
        assert_eq!(value.len(), 18);
        assert!(is_hll(&value));
        assert_eq!(count_registers(&sparse_registers(&value).unwrap()), 0);
    }
}
