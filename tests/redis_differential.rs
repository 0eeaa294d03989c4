//! Randomized differential test against a real Redis.
//!
//! Goal: over long random command sequences on a small key space (so commands collide on the
//! same keys and types), redraft answers exactly what Debian's `redis-server` 7.0 answers.
//! Method: a seeded generator produces commands from the families redraft supports; each one
//! goes to both servers (pipelined in chunks) and the raw replies are compared. The run is
//! bounded: `REDRAFT_DIFF_COMMANDS` commands (default 100,000), seed `REDRAFT_DIFF_SEED`
//! (default fixed, so a failure replays). Commands whose replies legitimately differ (random
//! picks, relative TTLs, hash field order) are left out and listed in `redis-compat/README.md`.

mod common;

use common::{RawConnection, TestServer, resp_command};

/// A small deterministic PRNG (xorshift64*), so a seed replays the same run anywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &["k0", "k1", "k2", "k3", "{t}a"];
const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "10",
    "42",
    "007",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "abc",
    "",
    " 1",
    "hello world",
    "\u{1}\u{2}",
    "3.0e2",
];
const FIELDS: &[&str] = &["f0", "f1", "f2", ""];
const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "5",
    "-7",
    "100",
    "9223372036854775807",
    "x",
    "1.5",
];

/// List indexes, counts and ranks: in and out of range, negative, and not numbers.
const INDEXES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "3",
    "-5",
    "10",
    "-100",
    "x",
    "9223372036854775807",
    "-9223372036854775808",
];

/// Scores as ZADD and ZINCRBY read them, valid or not.
const SCORES: &[&str] = &[
    "0", "1", "-1", "1.5", "inf", "-inf", "2.5e3", "x", "nan", "-0", "1e400", "0x10", "3",
];
/// Score range bounds, open and closed, valid or not.
const SCORE_BOUNDS: &[&str] = &[
    "-inf", "+inf", "0", "(0", "1", "(1.5", "x", "(", "", "2", "(inf", " 1",
];
/// Lexicographic range bounds, valid or not.
const LEX_BOUNDS: &[&str] = &[
    "-",
    "+",
    "[a",
    "(a",
    "[hello world",
    "(",
    "[",
    "x",
    "[c",
    "(b",
];

/// One random command.
fn command(rng: &mut Rng) -> Vec<String> {
    let k = |rng: &mut Rng| rng.pick(KEYS).to_string();
    let v = |rng: &mut Rng| rng.pick(VALUES).to_string();
    let i = |rng: &mut Rng| rng.pick(INTS).to_string();
    let f = |rng: &mut Rng| rng.pick(FIELDS).to_string();
    let index = |rng: &mut Rng| rng.pick(INDEXES).to_string();
    let end = |rng: &mut Rng| rng.pick(&["LEFT", "RIGHT", "left", "middle"]).to_string();
    let sets = |rng: &mut Rng, c: &mut Vec<String>| {
        for _ in 0..=rng.below(3) {
            c.push(k(rng));
        }
    };
    let score = |rng: &mut Rng| rng.pick(SCORES).to_string();
    let bound = |rng: &mut Rng| rng.pick(SCORE_BOUNDS).to_string();
    let lex = |rng: &mut Rng| rng.pick(LEX_BOUNDS).to_string();
    let member = |rng: &mut Rng| {
        rng.pick(&["a", "b", "c", "hello world", "1", ""])
            .to_string()
    };
    let bit_offset = |rng: &mut Rng| {
        rng.pick(&["0", "1", "7", "8", "13", "31", "40", "-1", "x", "#1", "#3"])
            .to_string()
    };
    let bit_type = |rng: &mut Rng| {
        rng.pick(&[
            "u8", "i8", "u1", "i1", "u4", "i5", "u16", "i64", "u63", "u64", "x",
        ])
        .to_string()
    };
    let range_end = |rng: &mut Rng| {
        rng.pick(&["0", "1", "-1", "-2", "5", "30", "x"])
            .to_string()
    };
    let element = |rng: &mut Rng| format!("el{}", rng.below(400));
    match rng.below(137) {
        133 | 134 => {
            let mut c = vec!["PFADD".into(), k(rng)];
            for _ in 0..rng.below(40) {
                c.push(element(rng));
            }
            c
        }
        135 => {
            let mut c = vec!["PFCOUNT".into(), k(rng)];
            if rng.below(3) == 0 {
                c.push(k(rng));
            }
            c
        }
        136 => vec!["PFMERGE".into(), k(rng), k(rng), k(rng)],
        125 => vec![
            "SETBIT".into(),
            k(rng),
            bit_offset(rng),
            rng.pick(&["0", "1", "1", "2"]).into(),
        ],
        126 => vec!["GETBIT".into(), k(rng), bit_offset(rng)],
        127 => {
            let mut c = vec!["BITCOUNT".into(), k(rng)];
            if rng.below(3) > 0 {
                c.push(range_end(rng));
                c.push(range_end(rng));
                if rng.below(2) == 0 {
                    c.push(rng.pick(&["BIT", "BYTE", "bit"]).into());
                }
            }
            c
        }
        128 => {
            let mut c = vec![
                "BITPOS".into(),
                k(rng),
                rng.pick(&["0", "1", "1", "2"]).into(),
            ];
            for _ in 0..rng.below(4) {
                c.push(range_end(rng));
            }
            if c.len() == 6 {
                c[5] = rng.pick(&["BIT", "BYTE"]).into();
            }
            c
        }
        129 => {
            let mut c = vec![
                "BITOP".into(),
                rng.pick(&["AND", "OR", "XOR", "NOT", "and"]).into(),
                k(rng),
                k(rng),
            ];
            if rng.below(2) == 0 {
                c.push(k(rng));
            }
            c
        }
        130..=132 => {
            let mut c = vec![
                rng.pick(&["BITFIELD", "BITFIELD", "BITFIELD_RO"]).into(),
                k(rng),
            ];
            for _ in 0..=rng.below(3) {
                match rng.below(5) {
                    0 => {
                        c.push("OVERFLOW".into());
                        c.push(rng.pick(&["WRAP", "SAT", "FAIL"]).into());
                    }
                    1 | 2 => c.extend(["GET".into(), bit_type(rng), bit_offset(rng)]),
                    3 => c.extend(["SET".into(), bit_type(rng), bit_offset(rng), i(rng)]),
                    _ => c.extend(["INCRBY".into(), bit_type(rng), bit_offset(rng), i(rng)]),
                }
            }
            c
        }
        0 => vec!["GET".into(), k(rng)],
        1 => {
            let mut c = vec!["SET".into(), k(rng), v(rng)];
            match rng.below(6) {
                0 => c.push("NX".into()),
                1 => c.push("XX".into()),
                2 => c.push("GET".into()),
                3 => {
                    c.push("KEEPTTL".into());
                }
                4 => {
                    c.push("EX".into());
                    c.push(rng.pick(&["100", "0", "-5", "x", "999999"]).into());
                }
                _ => {}
            }
            c
        }
        2 => vec!["INCR".into(), k(rng)],
        3 => vec!["DECR".into(), k(rng)],
        4 => vec!["INCRBY".into(), k(rng), i(rng)],
        5 => vec!["DECRBY".into(), k(rng), i(rng)],
        6 => vec!["MGET".into(), k(rng), k(rng), k(rng)],
        7 => vec!["MSET".into(), k(rng), v(rng), k(rng), v(rng)],
        8 => vec!["DEL".into(), k(rng), k(rng)],
        9 => vec!["EXISTS".into(), k(rng), k(rng), k(rng)],
        10 => vec!["TYPE".into(), k(rng)],
        11 => vec!["UNLINK".into(), k(rng)],
        12 => vec!["DBSIZE".into()],
        13 => vec!["HSET".into(), k(rng), f(rng), v(rng), f(rng), v(rng)],
        14 => vec!["HGET".into(), k(rng), f(rng)],
        15 => vec!["HDEL".into(), k(rng), f(rng), f(rng)],
        16 => vec!["HLEN".into(), k(rng)],
        17 => vec!["HEXISTS".into(), k(rng), f(rng)],
        18 => vec!["HINCRBY".into(), k(rng), f(rng), i(rng)],
        19 => vec!["HSETNX".into(), k(rng), f(rng), v(rng)],
        20 => vec!["HMGET".into(), k(rng), f(rng), f(rng)],
        21 => vec!["HSTRLEN".into(), k(rng), f(rng)],
        23 => vec!["APPEND".into(), k(rng), v(rng)],
        24 => vec!["STRLEN".into(), k(rng)],
        25 => vec!["GETSET".into(), k(rng), v(rng)],
        26 => vec!["GETDEL".into(), k(rng)],
        27 => vec!["SETNX".into(), k(rng), v(rng)],
        28 => vec![
            "INCRBYFLOAT".into(),
            k(rng),
            rng.pick(&["0.1", "1.5", "-2", "1e3", "x", "3", "-0.0"])
                .into(),
        ],
        29 => vec![
            "GETRANGE".into(),
            k(rng),
            rng.pick(&["0", "-1", "2", "-100"]).into(),
            rng.pick(&["0", "-1", "3", "100"]).into(),
        ],
        30 => vec!["MSETNX".into(), k(rng), v(rng), k(rng), v(rng)],
        // GT and LT compare deadlines: relative ones tie or not depending on whether the
        // clock ticked between two calls, so those compare absolute deadlines.
        31 => match rng.below(2) {
            0 => vec![
                "EXPIRE".into(),
                k(rng),
                rng.pick(&["1000", "0", "-1", "x", "5000"]).into(),
                rng.pick(&["NX", "XX", "NX"]).into(),
            ],
            _ => vec![
                "PEXPIREAT".into(),
                k(rng),
                rng.pick(&["4102444800000", "4102444801000", "1", "x"])
                    .into(),
                rng.pick(&["GT", "LT", "NX", "XX"]).into(),
            ],
        },
        32 => vec!["TTL".into(), k(rng)],
        33 => vec!["PERSIST".into(), k(rng)],
        34 => vec!["RENAME".into(), k(rng), k(rng)],
        35 => vec!["RENAMENX".into(), k(rng), k(rng)],
        36 => vec!["COPY".into(), k(rng), k(rng), "REPLACE".into()],
        37 => vec!["TOUCH".into(), k(rng), k(rng)],
        38 => script(
            "EVAL",
            "return redis.call('INCRBY', KEYS[1], ARGV[1])",
            k(rng),
            i(rng),
        ),
        39 => script(
            "EVAL",
            "return redis.pcall('INCR', KEYS[1])",
            k(rng),
            v(rng),
        ),
        // redis-py's Lock.release.
        40 => script(
            "EVAL",
            "local token = redis.call('get', KEYS[1])\n\
             if not token or token ~= ARGV[1] then return 0 end\n\
             redis.call('del', KEYS[1])\nreturn 1",
            k(rng),
            v(rng),
        ),
        41 => script(
            "EVAL",
            "return {redis.call('EXISTS', KEYS[1]), redis.call('TYPE', KEYS[1]), ARGV[1], false, 2.9}",
            k(rng),
            v(rng),
        ),
        42 => script(
            "EVAL_RO",
            "return {redis.pcall('GET', KEYS[1]), redis.call('HMGET', KEYS[1], 'f1', 'f0')}",
            k(rng),
            v(rng),
        ),
        43 => script(
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1])\nreturn redis.call('HLEN', KEYS[1])",
            k(rng),
            v(rng),
        ),
        // Numbers passed as arguments become strings as Lua prints them (%.14g).
        44 => script(
            "EVAL",
            "local n = tonumber(ARGV[1]) or 7\n\
             redis.call('SET', KEYS[1], n / 3)\n\
             return {redis.call('GET', KEYS[1]), n * 1e20, n / 1e9}",
            k(rng),
            i(rng),
        ),
        45 => vec![
            "SCRIPT".into(),
            "LOAD".into(),
            rng.pick(CACHED_SCRIPTS).into(),
        ],
        46 => {
            let sha = sha1_hex(rng.pick(CACHED_SCRIPTS));
            let sha = match rng.below(4) {
                0 => sha.to_ascii_uppercase(),
                1 => sha[..39].to_string(),
                _ => sha,
            };
            let command = rng.pick(&["EVALSHA", "EVALSHA", "EVALSHA_RO"]);
            vec![command.into(), sha, "1".into(), k(rng), v(rng)]
        }
        47 => {
            let mut args = vec!["SCRIPT".into(), "EXISTS".into()];
            for _ in 0..=rng.below(3) {
                args.push(sha1_hex(rng.pick(CACHED_SCRIPTS)));
            }
            args
        }
        // RESP3 conversions inside the script (the reply is then sent as the client speaks).
        48 => script(
            rng.pick(&["EVAL", "EVAL_RO"]),
            "redis.setresp(3)
             local v = redis.pcall('GET', KEYS[1])
             return {v == nil, type(v), {double = tonumber(ARGV[1]) or 0.5}, {map = {f = ARGV[1]}},
                     {set = {[ARGV[1]] = true}}, true, false, redis.call('EXISTS', KEYS[1])}",
            k(rng),
            v(rng),
        ),
        49 => {
            if rng.below(10) == 0 {
                vec!["SCRIPT".into(), "FLUSH".into()]
            } else {
                script(
                    "EVAL",
                    "#!lua flags=no-writes
return {redis.call('TYPE', KEYS[1]), ARGV[1]}",
                    k(rng),
                    v(rng),
                )
            }
        }
        50 => {
            let mut args = vec!["FUNCTION".into(), "LOAD".into()];
            if rng.below(2) == 0 {
                args.push("REPLACE".into());
            }
            args.push(rng.pick(LIBRARIES).into());
            args
        }
        51 => {
            let function = rng.pick(&["incr_by", "peek", "fails", "missing", "incr_by"]);
            let command = rng.pick(&["FCALL", "FCALL", "FCALL_RO"]);
            vec![command.into(), function.into(), "1".into(), k(rng), i(rng)]
        }
        52 => match rng.below(8) {
            0 => vec!["FUNCTION".into(), "FLUSH".into()],
            1 => vec![
                "FUNCTION".into(),
                "DELETE".into(),
                rng.pick(&["counters", "broken", "x"]).into(),
            ],
            2 => vec!["FUNCTION".into(), "STATS".into()],
            _ => vec![
                "FUNCTION".into(),
                "LIST".into(),
                "WITHCODE".into(),
                "LIBRARYNAME".into(),
                rng.pick(&["counters", "readers", "c*", "nothing"]).into(),
            ],
        },
        // The bit library on arguments and stored values.
        53 => script(
            "EVAL",
            "local n = tonumber(ARGV[1]) or 0\n\
             local v = tonumber(redis.call('GET', KEYS[1]) or '3') or 5\n\
             return {bit.band(n, v), bit.bor(n, 0xf0), bit.bxor(n, v), bit.bnot(n), bit.tobit(n * 1e9),\n\
                     bit.lshift(n, v % 40), bit.rshift(n, 3), bit.arshift(n, 3), bit.rol(n, 7),\n\
                     bit.ror(v, 9), bit.bswap(n), bit.tohex(n), bit.tohex(v, -5)}",
            k(rng),
            i(rng),
        ),
        // cjson both ways, with values from the keyspace.
        54 => script(
            "EVAL",
            "local doc = {key = KEYS[1], arg = ARGV[1], n = tonumber(ARGV[1]), list = {1, 'two', false},\n\
                          nested = {deep = {value = redis.call('GET', KEYS[1])}}, empty = {}}\n\
             local text = cjson.encode(doc)\n\
             local back = cjson.decode(text)\n\
             local ok, err = pcall(cjson.decode, ARGV[1])\n\
             return {text, cjson.encode(back), tostring(ok), type(err) == 'string' and err or cjson.encode(err)}",
            k(rng),
            v(rng),
        ),
        // cmsgpack both ways.
        55 => script(
            "EVAL",
            "local n = tonumber(ARGV[1])\n\
             local packed = cmsgpack.pack(ARGV[1], n, {KEYS[1], redis.call('GET', KEYS[1]) or false,\n\
                                          {n = n or 0.5}, {}}, n and n / 3)\n\
             return {packed, {cmsgpack.unpack(packed)}, {cmsgpack.unpack_one(packed, 1)}}",
            k(rng),
            v(rng),
        ),
        // struct both ways.
        56 => script(
            "EVAL",
            "local n = tonumber(ARGV[1]) or 7\n\
             local format = '>i4 h !4 B s d <I2 c3'\n\
             local packed = struct.pack(format, n, -3, 200, KEYS[1], n / 4, 513, 'abcdef')\n\
             return {packed, {struct.unpack(format, packed)}, struct.size('>i4 h d')}",
            k(rng),
            i(rng),
        ),
        57 => {
            let mut c = vec![rng.pick(&["LPUSH", "RPUSH"]).into(), k(rng)];
            for _ in 0..=rng.below(3) {
                c.push(v(rng));
            }
            c
        }
        58 => vec![rng.pick(&["LPUSHX", "RPUSHX"]).into(), k(rng), v(rng)],
        59 => {
            let mut c = vec![rng.pick(&["LPOP", "RPOP"]).into(), k(rng)];
            if rng.below(2) == 0 {
                c.push(index(rng));
            }
            c
        }
        60 => vec!["LLEN".into(), k(rng)],
        61 => vec!["LRANGE".into(), k(rng), index(rng), index(rng)],
        62 => vec!["LINDEX".into(), k(rng), index(rng)],
        63 => vec!["LSET".into(), k(rng), index(rng), v(rng)],
        64 => vec![
            "LINSERT".into(),
            k(rng),
            rng.pick(&["BEFORE", "after", "beside"]).into(),
            v(rng),
            v(rng),
        ],
        65 => vec!["LREM".into(), k(rng), index(rng), v(rng)],
        66 => vec!["LTRIM".into(), k(rng), index(rng), index(rng)],
        67 => {
            let mut c = vec!["LPOS".into(), k(rng), v(rng)];
            for _ in 0..rng.below(3) {
                c.push(rng.pick(&["RANK", "COUNT", "MAXLEN", "rank"]).into());
                c.push(index(rng));
            }
            c
        }
        68 => vec!["LMOVE".into(), k(rng), k(rng), end(rng), end(rng)],
        69 => vec!["RPOPLPUSH".into(), k(rng), k(rng)],
        70 => {
            let mut c = vec!["LMPOP".into(), rng.pick(&["1", "2", "0", "x", "9"]).into()];
            c.push(k(rng));
            if rng.below(2) == 0 {
                c.push(k(rng));
            }
            c.push(end(rng));
            if rng.below(2) == 0 {
                c.push("COUNT".into());
                c.push(index(rng));
            }
            c
        }
        71 => {
            let mut c = vec!["RPUSH".into(), k(rng)];
            for _ in 0..rng.below(12) {
                c.push(rng.pick(&["a", "b", "c", "1"]).into());
            }
            c
        }
        72 => vec![
            "LREM".into(),
            k(rng),
            index(rng),
            rng.pick(&["a", "b", "c", "1"]).into(),
        ],
        73 => vec![
            "LINSERT".into(),
            k(rng),
            rng.pick(&["BEFORE", "AFTER"]).into(),
            rng.pick(&["a", "b", "c", "1"]).into(),
            v(rng),
        ],
        74 => match rng.below(3) {
            0 => vec!["COPY".into(), k(rng), k(rng)],
            1 => vec!["RENAME".into(), k(rng), k(rng)],
            // A string's encoding depends on how Redis built it (a deliberate difference,
            // see redis-compat/README.md): compared for the other types only.
            _ => script(
                "EVAL",
                "local t = redis.call('TYPE', KEYS[1]).ok\n\
                 if t == 'string' then return t end\n\
                 return redis.call('OBJECT', 'ENCODING', KEYS[1])",
                k(rng),
                v(rng),
            ),
        },
        75 | 76 => {
            let mut c = vec!["SADD".into(), k(rng)];
            for _ in 0..=rng.below(4) {
                c.push(v(rng));
            }
            c
        }
        77 => {
            let mut c = vec!["SREM".into(), k(rng)];
            for _ in 0..=rng.below(3) {
                c.push(v(rng));
            }
            c
        }
        78 => vec!["SMEMBERS".into(), k(rng)],
        79 => vec!["SISMEMBER".into(), k(rng), v(rng)],
        80 => vec!["SMISMEMBER".into(), k(rng), v(rng), v(rng)],
        81 => vec!["SCARD".into(), k(rng)],
        // Random picks compare only where the answer is the whole set or an error.
        82 => match rng.below(2) {
            0 => vec![
                "SPOP".into(),
                k(rng),
                rng.pick(&["100", "0", "-1", "x", "9223372036854775807"])
                    .into(),
            ],
            _ => vec![
                "SRANDMEMBER".into(),
                k(rng),
                rng.pick(&[
                    "100",
                    "0",
                    "x",
                    "9223372036854775807",
                    "-9223372036854775808",
                ])
                .into(),
            ],
        },
        83 => vec!["SMOVE".into(), k(rng), k(rng), v(rng)],
        84 => {
            let mut c = vec![rng.pick(&["SINTER", "SUNION", "SDIFF"]).into()];
            sets(rng, &mut c);
            c
        }
        85 => {
            let mut c = vec![
                rng.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])
                    .into(),
                k(rng),
            ];
            sets(rng, &mut c);
            c
        }
        86 => {
            let mut c = vec![
                "SINTERCARD".into(),
                rng.pick(&["1", "2", "0", "x", "5"]).into(),
            ];
            sets(rng, &mut c);
            if rng.below(2) == 0 {
                c.push(rng.pick(&["LIMIT", "limit", "BOGUS"]).into());
                c.push(rng.pick(&["0", "1", "2", "-1", "x"]).into());
            }
            c
        }
        87 => {
            // Cursors other than 0 are positions in each server's own walk.
            let mut c = vec!["SSCAN".into(), k(rng), rng.pick(&["0", "x"]).into()];
            if rng.below(2) == 0 {
                c.push("MATCH".into());
                c.push(rng.pick(&["*1*", "a*", "*"]).into());
            }
            c.push("COUNT".into());
            c.push(rng.pick(&["1000", "0", "x"]).into());
            c
        }
        88 => {
            let mut c = vec!["SADD".into(), k(rng)];
            for _ in 0..=rng.below(8) {
                c.push(rng.pick(&["1", "2", "3", "10", "-5", "99"]).into());
            }
            c
        }
        89 => vec![
            "SPOP".into(),
            k(rng),
            rng.pick(&["1", "2", "3"]).into(),
            "extra".into(),
        ],
        90 => vec![
            "SREM".into(),
            k(rng),
            rng.pick(&["1", "2", "3", "10"]).into(),
        ],
        91 => vec!["SMEMBERS".into(), k(rng)],
        92 => vec!["SUNION".into(), k(rng), k(rng)],
        93..=95 => {
            let mut c = vec!["ZADD".into(), k(rng)];
            for _ in 0..rng.below(3) {
                c.push(
                    rng.pick(&["NX", "XX", "GT", "LT", "CH", "INCR", "ch"])
                        .into(),
                );
            }
            for _ in 0..=rng.below(3) {
                c.push(score(rng));
                c.push(member(rng));
            }
            c
        }
        96 => vec!["ZINCRBY".into(), k(rng), score(rng), member(rng)],
        97 => vec!["ZSCORE".into(), k(rng), member(rng)],
        98 => vec!["ZMSCORE".into(), k(rng), member(rng), member(rng)],
        99 => vec!["ZCARD".into(), k(rng)],
        100 => vec!["ZCOUNT".into(), k(rng), bound(rng), bound(rng)],
        101 => vec!["ZLEXCOUNT".into(), k(rng), lex(rng), lex(rng)],
        102 | 103 => {
            let mut c = vec!["ZRANGE".into(), k(rng)];
            let by = rng.below(3);
            match by {
                0 => {
                    c.push(index(rng));
                    c.push(index(rng));
                }
                1 => {
                    c.push(bound(rng));
                    c.push(bound(rng));
                    c.push("BYSCORE".into());
                }
                _ => {
                    c.push(lex(rng));
                    c.push(lex(rng));
                    c.push("BYLEX".into());
                }
            }
            for _ in 0..rng.below(3) {
                match rng.below(4) {
                    0 => c.push("REV".into()),
                    1 => c.push("WITHSCORES".into()),
                    2 => {
                        c.push("LIMIT".into());
                        c.push(rng.pick(&["0", "1", "-1", "2"]).into());
                        c.push(rng.pick(&["1", "2", "-1", "0", "x"]).into());
                    }
                    _ => c.push(rng.pick(&["BYSCORE", "BYLEX", "bogus"]).into()),
                }
            }
            c
        }
        104 => {
            let mut c = vec![
                rng.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]).into(),
                k(rng),
                bound(rng),
                bound(rng),
            ];
            if rng.below(2) == 0 {
                c.push("WITHSCORES".into());
            }
            if rng.below(2) == 0 {
                c.push("LIMIT".into());
                c.push(rng.pick(&["0", "1", "-1"]).into());
                c.push(rng.pick(&["1", "2", "-1", "0"]).into());
            }
            c
        }
        105 => {
            let mut c = vec![
                rng.pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]).into(),
                k(rng),
                lex(rng),
                lex(rng),
            ];
            if rng.below(3) == 0 {
                c.push("LIMIT".into());
                c.push(rng.pick(&["0", "1"]).into());
                c.push(rng.pick(&["1", "2", "-1"]).into());
            }
            c
        }
        106 => {
            let mut c = vec!["ZREVRANGE".into(), k(rng), index(rng), index(rng)];
            if rng.below(2) == 0 {
                c.push("WITHSCORES".into());
            }
            c
        }
        107 => vec![rng.pick(&["ZRANK", "ZREVRANK"]).into(), k(rng), member(rng)],
        108 => vec!["ZREM".into(), k(rng), member(rng), member(rng)],
        109 => vec!["ZREMRANGEBYRANK".into(), k(rng), index(rng), index(rng)],
        110 => vec!["ZREMRANGEBYSCORE".into(), k(rng), bound(rng), bound(rng)],
        111 => vec!["ZREMRANGEBYLEX".into(), k(rng), lex(rng), lex(rng)],
        112 => {
            let mut c = vec![rng.pick(&["ZPOPMIN", "ZPOPMAX"]).into(), k(rng)];
            if rng.below(2) == 0 {
                c.push(index(rng));
            }
            c
        }
        113 => {
            let mut c = vec![
                "ZMPOP".into(),
                rng.pick(&["1", "2", "0", "x"]).into(),
                k(rng),
            ];
            if rng.below(2) == 0 {
                c.push(k(rng));
            }
            c.push(rng.pick(&["MIN", "max", "middle"]).into());
            if rng.below(2) == 0 {
                c.push("COUNT".into());
                c.push(index(rng));
            }
            c
        }
        114 | 115 => {
            let store = rng.below(2) == 0;
            let op = rng.pick(&["ZUNION", "ZINTER", "ZDIFF"]);
            let mut c = vec![if store {
                format!("{op}STORE")
            } else {
                op.into()
            }];
            if store {
                c.push(k(rng));
            }
            let n = 1 + rng.below(3);
            c.push(if rng.below(10) == 0 {
                "0".into()
            } else {
                n.to_string()
            });
            for _ in 0..n {
                c.push(k(rng));
            }
            if rng.below(2) == 0 {
                c.push("WEIGHTS".into());
                for _ in 0..n {
                    c.push(rng.pick(&["1", "2", "-1", "0", "inf", "x"]).into());
                }
            }
            if rng.below(2) == 0 {
                c.push("AGGREGATE".into());
                c.push(rng.pick(&["SUM", "min", "MAX", "avg"]).into());
            }
            if rng.below(2) == 0 {
                c.push("WITHSCORES".into());
            }
            c
        }
        116 => {
            let mut c = vec!["ZINTERCARD".into(), rng.pick(&["1", "2", "0", "5"]).into()];
            c.push(k(rng));
            c.push(k(rng));
            if rng.below(2) == 0 {
                c.push("LIMIT".into());
                c.push(rng.pick(&["0", "1", "-1"]).into());
            }
            c
        }
        117 => {
            let mut c = vec!["ZRANDMEMBER".into(), k(rng)];
            c.push(rng.pick(&["100", "0", "x", "-9223372036854775808"]).into());
            if rng.below(2) == 0 {
                c.push("WITHSCORES".into());
            }
            c
        }
        118 => {
            let mut c = vec!["ZSCAN".into(), k(rng), rng.pick(&["0", "x"]).into()];
            if rng.below(2) == 0 {
                c.push("MATCH".into());
                c.push(rng.pick(&["*l*", "a*", "*"]).into());
            }
            c
        }
        119 => {
            let mut c = vec![
                "ZRANGESTORE".into(),
                k(rng),
                k(rng),
                bound(rng),
                bound(rng),
                "BYSCORE".into(),
            ];
            if rng.below(2) == 0 {
                c.push("REV".into());
            }
            c
        }
        120 => vec!["ZRANGESTORE".into(), k(rng), k(rng), index(rng), index(rng)],
        121..=124 => {
            // Members of one score, for lexicographic ranges as they are meant.
            let mut c = vec!["ZADD".into(), "zl".into()];
            for _ in 0..=rng.below(3) {
                c.push("0".into());
                c.push(rng.pick(&["a", "b", "c", "d", "ab", "ba", ""]).into());
            }
            if rng.below(3) == 0 {
                return vec![
                    rng.pick(&[
                        "ZRANGEBYLEX",
                        "ZREVRANGEBYLEX",
                        "ZLEXCOUNT",
                        "ZREMRANGEBYLEX",
                    ])
                    .into(),
                    "zl".into(),
                    lex(rng),
                    lex(rng),
                ];
            }
            c
        }
        22 => vec![
            "HINCRBYFLOAT".into(),
            k(rng),
            f(rng),
            rng.pick(&["0.1", "1.5", "-2", "1e3", "x", "3"]).into(),
        ],
        _ => {
            if rng.below(20) == 0 {
                vec!["FLUSHALL".into()]
            } else {
                vec!["GET".into(), k(rng)]
            }
        }
    }
}

/// Scripts the cache cases load and call by SHA-1: redis-py's `Lock.release` and `Lock.extend`,
/// one that does not compile, one with a shebang.
const CACHED_SCRIPTS: &[&str] = &[
    "local token = redis.call('get', KEYS[1])\n\
     if not token or token ~= ARGV[1] then return 0 end\n\
     redis.call('del', KEYS[1])\nreturn 1",
    "local token = redis.call('get', KEYS[1])\n\
     if not token or token ~= ARGV[1] then return 0 end\n\
     local expiration = redis.call('pttl', KEYS[1])\n\
     if not expiration then expiration = 0 end\n\
     if expiration < 0 then return 0 end\n\
     redis.call('pexpire', KEYS[1], expiration + 1000)\nreturn 1",
    "return redis.call('INCRBY', KEYS[1], ARGV[1]",
    "#!lua flags=no-writes\nreturn redis.call('STRLEN', KEYS[1])",
];

/// Function libraries the function cases load (one function each, so FUNCTION LIST's order
/// within a library, which Redis leaves to its hash table, does not matter), one that takes a
/// name another registers, and ones that fail to load.
const LIBRARIES: &[&str] = &[
    "#!lua name=counters\n\
     redis.register_function('incr_by', function(keys, args)\n\
       return redis.call('INCRBY', keys[1], args[1])\n\
     end)",
    "#!lua name=readers\n\
     redis.register_function{function_name = 'peek', flags = {'no-writes'}, description = 'reads',\n\
       callback = function(keys, args) return {redis.pcall('GET', keys[1]), #args} end}",
    "#!lua name=broken\n\
     redis.register_function('fails', function(keys) return redis.call('HGET', keys[1]) end)",
    "#!lua name=thief\nredis.register_function('incr_by', function() return 1 end)",
    "#!lua name=nothing\nlocal x = 1",
    "#!lua name=loadtime\nredis.call('GET', 'x')",
];

fn sha1_hex(body: &str) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// A script over one key and one argument.
fn script(command: &str, body: &str, key: String, arg: String) -> Vec<String> {
    vec![command.into(), body.into(), "1".into(), key, arg]
}

/// Commands whose replies list a set's members in an order Redis leaves unspecified (its
/// hashtable order): compared with every list of plain strings in them sorted.
const UNORDERED: &[&str] = &[
    "SMEMBERS",
    "SINTER",
    "SUNION",
    "SDIFF",
    "SPOP",
    "SRANDMEMBER",
    "SSCAN",
];

/// A reply with the elements of every aggregate that holds only bulk strings sorted.
fn unordered(reply: &[u8]) -> Vec<u8> {
    /// One parsed value: its header line and, for an aggregate, its children.
    struct Value {
        header: Vec<u8>,
        body: Vec<u8>,
        children: Option<Vec<Value>>,
    }
    fn line(input: &[u8], at: &mut usize) -> Vec<u8> {
        let end = *at
            + input[*at..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("CRLF")
            + 2;
        let out = input[*at..end].to_vec();
        *at = end;
        out
    }
    fn parse(input: &[u8], at: &mut usize) -> Value {
        let header = line(input, at);
        let number = || -> i64 {
            std::str::from_utf8(&header[1..header.len() - 2])
                .expect("utf-8")
                .parse()
                .expect("length")
        };
        match header[0] {
            b'$' | b'=' | b'!' if number() >= 0 => {
                let len = number() as usize + 2;
                let body = input[*at..*at + len].to_vec();
                *at += len;
                Value {
                    header,
                    body,
                    children: None,
                }
            }
            b'*' | b'~' | b'>' if number() >= 0 => {
                let children = (0..number()).map(|_| parse(input, at)).collect();
                Value {
                    header,
                    body: Vec::new(),
                    children: Some(children),
                }
            }
            b'%' => {
                let children = (0..number() * 2).map(|_| parse(input, at)).collect();
                Value {
                    header,
                    body: Vec::new(),
                    children: Some(children),
                }
            }
            _ => Value {
                header,
                body: Vec::new(),
                children: None,
            },
        }
    }
    fn write(value: &Value, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.header);
        out.extend_from_slice(&value.body);
        if let Some(children) = &value.children {
            let mut parts: Vec<Vec<u8>> = children
                .iter()
                .map(|child| {
                    let mut part = Vec::new();
                    write(child, &mut part);
                    part
                })
                .collect();
            if children.iter().all(|child| child.header[0] == b'$') {
                parts.sort();
            }
            parts.iter().for_each(|part| out.extend_from_slice(part));
        }
    }
    let mut out = Vec::new();
    write(&parse(reply, &mut 0), &mut out);
    out
}

/// Whether two TTL replies agree up to the clock: each server counts the seconds left from
/// its own "now", so they may round one second apart.
fn same_remaining_time(command: &[String], expected: &[u8], actual: &[u8]) -> bool {
    let seconds = |reply: &[u8]| -> Option<i64> {
        std::str::from_utf8(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
            .ok()?
            .parse()
            .ok()
    };
    command[0] == "TTL"
        && matches!(
            (seconds(expected), seconds(actual)),
            (Some(a), Some(b)) if a > 0 && b > 0 && a.abs_diff(b) <= 1
        )
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn redis_differential_random_commands_match_real_redis() {
    let count = env_number("REDRAFT_DIFF_COMMANDS", 100_000) as usize;
    let seed = env_number("REDRAFT_DIFF_SEED", 0x5eed_1234_abcd_0001);
    differential(count, seed, false);
}

/// The same over RESP3 (`HELLO 3`): maps, sets, doubles, booleans and nulls as Redis sends them
/// to a RESP3 client, scripts' RESP3 conversions included.
#[test]
fn redis_differential_random_commands_match_real_redis_over_resp3() {
    let count = env_number("REDRAFT_DIFF_COMMANDS", 100_000) as usize / 2;
    let seed = env_number("REDRAFT_DIFF_SEED", 0x5eed_1234_abcd_0001) ^ 0x3;
    differential(count, seed, true);
}

fn differential(count: usize, seed: u64, resp3: bool) {
    let redis = common::real_redis::RealRedis::start();
    let redraft = TestServer::start();
    let mut expected_conn = RawConnection::connect(redis.port);
    let mut actual_conn = RawConnection::connect(redraft.port);
    for conn in [&mut expected_conn, &mut actual_conn] {
        if resp3 {
            conn.send(&resp_command(&[b"HELLO", b"3"]));
            assert!(conn.read_reply().starts_with(b"%"), "HELLO 3 answers a map");
        }
        conn.send(&resp_command(&[b"FLUSHALL"]));
        assert_eq!(conn.read_reply(), b"+OK\r\n");
        conn.send(&resp_command(&[b"SCRIPT", b"FLUSH"]));
        assert_eq!(conn.read_reply(), b"+OK\r\n");
        conn.send(&resp_command(&[b"FUNCTION", b"FLUSH"]));
        assert_eq!(conn.read_reply(), b"+OK\r\n");
    }
    let mut rng = Rng(seed | 1);
    let mut history: Vec<Vec<String>> = Vec::new();
    let chunk = 100;
    let mut done = 0;
    while done < count {
        let batch: Vec<Vec<String>> = (0..chunk.min(count - done))
            .map(|_| command(&mut rng))
            .collect();
        let mut bytes = Vec::new();
        for c in &batch {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
            bytes.extend_from_slice(&resp_command(&args));
        }
        expected_conn.send(&bytes);
        actual_conn.send(&bytes);
        for c in batch {
            history.push(c.clone());
            let recent = |history: &[Vec<String>]| {
                history[history.len().saturating_sub(15)..]
                    .iter()
                    .map(|c| format!("  {c:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let (Some(expected), Some(actual)) =
                (expected_conn.try_read_reply(), actual_conn.try_read_reply())
            else {
                let log = redraft.log.lock().unwrap().clone();
                let log_tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                panic!(
                    "seed {seed:#x}, command #{}: no reply from a server\nrecent commands:\n{}\n\
                     redraft's last log lines (newest first):\n{log_tail}",
                    history.len(),
                    recent(&history)
                );
            };
            let (expected, actual) = if UNORDERED.contains(&c[0].as_str()) {
                (unordered(&expected), unordered(&actual))
            } else {
                (expected, actual)
            };
            if expected != actual && !same_remaining_time(&c, &expected, &actual) {
                panic!(
                    "seed {seed:#x}, command #{}: {:?}\n redis:   {:?}\n redraft: {:?}\nrecent commands:\n{}",
                    history.len(),
                    c,
                    String::from_utf8_lossy(&expected),
                    String::from_utf8_lossy(&actual),
                    recent(&history)
                );
            }
        }
        done += chunk;
    }
    eprintln!("differential (RESP3: {resp3}): {count} commands, seed {seed:#x}, no difference");
}
