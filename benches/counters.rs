//! Load generator and physical-floor probe of `redis-compat/bench/run`.
//!
//! A bench target without the test harness: the script builds it (`cargo build [--release]
//! --bench counters`) and runs the executable in one of these modes, each printing one JSON
//! object on stdout:
//!
//! - `incr`: `--clients` clients increment counters chosen at random among `--keys` for
//!   `--seconds`: `INCR` over RESP; on etcd what its users write, a range read of the key (value
//!   and `mod_revision`) then a txn `mod_revision == seen` → put value + 1, retried on conflict.
//!   Every counter is then read back and their sum compared with the acknowledged increments.
//! - `put`: the same clients writing random keys (`SET`, or etcd's put) for `--seconds`.
//! - `load`: writes exactly `--keys` keys, `<prefix>0000000000` upwards, pipelined.
//! - `floor`: the median loopback TCP round trip between two threads (as the scheduler places
//!   them, and pinned to two CPUs and to one) and the median 4 KiB write + fdatasync, the
//!   physical floor of a replicated durable write.
//!
//! Latencies are per acknowledged operation, retries included. RESP clients share one
//! single-threaded tokio runtime (as redis-benchmark runs on one thread); etcd clients are one
//! thread each with a blocking HTTP client on its v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/kv/put`, base64 keys and values), so no gRPC code generation is needed.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed request, so an unavailable server is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Keys per MGET or etcd range page when counters are read back.
const READBACK_PAGE: usize = 2_000;

#[derive(Parser)]
#[command(about = "Load generator of redis-compat/bench/run; prints one JSON object")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Concurrent counter increments for a fixed time, then the final-sum check.
    Incr(Workload),
    /// Concurrent writes of random keys for a fixed time.
    Put(Workload),
    /// Writes exactly `--keys` distinct keys, pipelined, over RESP.
    Load(Load),
    /// Loopback TCP round trip and 4 KiB write + fdatasync latency.
    Floor(Floor),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// A Redis-protocol server (redraft, redis-server).
    Resp,
    /// etcd through its v3 JSON gateway.
    Etcd,
}

#[derive(Args, Clone)]
struct Workload {
    /// Protocol of the server under test.
    #[arg(long, value_enum)]
    target: Target,
    /// `host:port` of the server; several (comma separated) spread the clients round robin.
    #[arg(long, value_delimiter = ',', required = true)]
    addr: Vec<String>,
    /// Concurrent clients, each with its own connection and one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Number of distinct keys the clients choose from at random.
    #[arg(long, default_value_t = 4)]
    keys: u64,
    /// How long the clients start new operations.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Key prefix; the default is unique to this run, so earlier counters do not count.
    #[arg(long)]
    prefix: Option<String>,
    /// Bytes per value written by `put`.
    #[arg(long, default_value_t = 3)]
    value_size: usize,
}

#[derive(Args)]
struct Load {
    /// `host:port` of the RESP server.
    #[arg(long)]
    addr: String,
    /// Number of keys to write: `<prefix>0000000000` to `<prefix>{keys - 1}`.
    #[arg(long)]
    keys: u64,
    /// Key prefix.
    #[arg(long, default_value = "key:")]
    prefix: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Connections writing disjoint ranges of keys at once.
    #[arg(long, default_value_t = 4)]
    connections: u64,
    /// SETs per pipelined batch on one connection.
    #[arg(long, default_value_t = 1_000)]
    pipeline: u64,
}

#[derive(Args)]
struct Floor {
    /// Directory for the fsync probe file (the run's data directory's filesystem).
    #[arg(long)]
    dir: PathBuf,
    /// Round trips measured.
    #[arg(long, default_value_t = 20_000)]
    rtt_samples: usize,
    /// Write + fdatasync pairs measured, for each of overwrite and append.
    #[arg(long, default_value_t = 2_000)]
    fsync_samples: usize,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    acked: u64,
    latencies_ns: Vec<u64>,
    conflicts: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, started: Instant) {
        self.acked += 1;
        self.latencies_ns.push(started.elapsed().as_nanos() as u64);
    }

    fn error(&mut self, err: String) {
        self.errors += 1;
        self.first_error.get_or_insert(err);
    }

    fn merge(&mut self, other: Tally) {
        self.acked += other.acked;
        self.latencies_ns.extend(other.latencies_ns);
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A small deterministic generator (splitmix64): key choice needs speed, not quality.
struct KeyChooser(u64);

impl KeyChooser {
    fn new(client: usize) -> KeyChooser {
        KeyChooser(0x9e37_79b9_7f4a_7c15 ^ (client as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9))
    }

    fn next(&mut self, keys: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % keys
    }
}

fn key_name(prefix: &str, index: u64) -> String {
    format!("{prefix}{index}")
}

fn percentile_ms(sorted_ns: &[u64], fraction: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = ((sorted_ns.len() - 1) as f64 * fraction).round() as usize;
    Some(sorted_ns[rank] as f64 / 1e6)
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Incr(workload) => run_workload(workload, Op::Incr),
        Mode::Put(workload) => run_workload(workload, Op::Put),
        Mode::Load(load) => run_load(&load),
        Mode::Floor(floor) => run_floor(&floor),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(err) => {
            eprintln!("counters: {err}");
            std::process::exit(1);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Incr,
    Put,
}

fn run_workload(mut workload: Workload, op: Op) -> Result<Value, String> {
    if workload.clients == 0 || workload.keys == 0 {
        return Err("--clients and --keys must be at least 1".into());
    }
    let prefix = workload.prefix.take().unwrap_or_else(|| {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("bench:{millis}:{}:", std::process::id())
    });
    let duration = Duration::from_secs_f64(workload.seconds);
    let (tally, elapsed, readback) = match workload.target {
        Target::Resp => resp::run(&workload, op, &prefix, duration)?,
        Target::Etcd => etcd::run(&workload, op, &prefix, duration)?,
    };
    let mut latencies = tally.latencies_ns;
    latencies.sort_unstable();
    let mut report = json!({
        "mode": if op == Op::Incr { "incr" } else { "put" },
        "protocol": if workload.target == Target::Resp { "resp" } else { "etcd" },
        "clients": workload.clients,
        "keys": workload.keys,
        "prefix": prefix,
        "seconds": elapsed.as_secs_f64(),
        "acked": tally.acked,
        "ops_per_sec": tally.acked as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile_ms(&latencies, 0.50),
        "p99_ms": percentile_ms(&latencies, 0.99),
        "errors": tally.errors,
        "first_error": tally.first_error,
    });
    if workload.target == Target::Etcd {
        report["conflicts"] = json!(tally.conflicts);
        report["conflicts_per_increment"] =
            json!(tally.conflicts as f64 / tally.acked.max(1) as f64);
    }
    if let Some(sum) = readback {
        report["final_sum"] = json!(sum);
        report["sum_matches"] = json!(sum == tally.acked);
    }
    Ok(report)
}

/// RESP clients on one single-threaded runtime, through the `redis` crate.
mod resp {
    use super::*;
    use redis::AsyncConnectionConfig;
    use redis::aio::MultiplexedConnection;

    pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))
    }

    pub async fn connect(addr: &str) -> Result<MultiplexedConnection, String> {
        let client = redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| format!("redis://{addr}: {e}"))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REQUEST_TIMEOUT))
            .set_response_timeout(Some(REQUEST_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))
    }

    /// Runs the workload; for increments also reads every counter back and returns their sum.
    pub fn run(
        workload: &Workload,
        op: Op,
        prefix: &str,
        duration: Duration,
    ) -> Result<(Tally, Duration, Option<u64>), String> {
        runtime()?.block_on(async {
            let mut connections = Vec::with_capacity(workload.clients);
            for client in 0..workload.clients {
                connections.push(connect(&workload.addr[client % workload.addr.len()]).await?);
            }
            let value = "x".repeat(workload.value_size);
            let started = Instant::now();
            let deadline = started + duration;
            let mut clients = tokio::task::JoinSet::new();
            for (client, connection) in connections.into_iter().enumerate() {
                let prefix = prefix.to_string();
                let value = value.clone();
                let keys = workload.keys;
                clients.spawn(async move {
                    one_client(connection, client, op, keys, prefix, value, deadline).await
                });
            }
            let mut tally = Tally::default();
            while let Some(done) = clients.join_next().await {
                tally.merge(done.map_err(|e| format!("client task: {e}"))?);
            }
            let elapsed = started.elapsed();
            let readback = if op == Op::Incr {
                let mut connection = connect(&workload.addr[0]).await?;
                Some(sum_counters(&mut connection, prefix, workload.keys).await?)
            } else {
                None
            };
            Ok((tally, elapsed, readback))
        })
    }

    async fn one_client(
        mut connection: MultiplexedConnection,
        client: usize,
        op: Op,
        keys: u64,
        prefix: String,
        value: String,
        deadline: Instant,
    ) -> Tally {
        let mut tally = Tally::default();
        let mut chooser = KeyChooser::new(client);
        while Instant::now() < deadline {
            let key = key_name(&prefix, chooser.next(keys));
            let started = Instant::now();
            let outcome = match op {
                Op::Incr => redis::cmd("INCR")
                    .arg(&key)
                    .query_async::<i64>(&mut connection)
                    .await
                    .map(drop),
                Op::Put => {
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .query_async::<()>(&mut connection)
                        .await
                }
            };
            match outcome {
                Ok(()) => tally.record(started),
                Err(err) => {
                    tally.error(err.to_string());
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
        tally
    }

    async fn sum_counters(
        connection: &mut MultiplexedConnection,
        prefix: &str,
        keys: u64,
    ) -> Result<u64, String> {
        let mut sum = 0u64;
        let names: Vec<String> = (0..keys).map(|i| key_name(prefix, i)).collect();
        for page in names.chunks(READBACK_PAGE) {
            let values: Vec<Option<i64>> = redis::cmd("MGET")
                .arg(page)
                .query_async(connection)
                .await
                .map_err(|e| format!("reading the counters back: {e}"))?;
            sum += values.into_iter().flatten().map(|v| v as u64).sum::<u64>();
        }
        Ok(sum)
    }
}

/// etcd clients, one thread each, on the v3 JSON gateway.
mod etcd {
    use super::*;

    /// One HTTP/1.1 client with a kept-alive connection to one member.
    pub struct Client {
        agent: ureq::Agent,
        base: String,
    }

    /// What a compare-and-swap increment saw.
    enum Cas {
        Done,
        Conflict,
    }

    impl Client {
        pub fn new(addr: &str) -> Client {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(REQUEST_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into();
            Client {
                agent,
                base: format!("http://{addr}"),
            }
        }

        fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
            let mut response = self
                .agent
                .post(format!("{}{path}", self.base))
                .header("Content-Type", "application/json")
                .send(body.to_string())
                .map_err(|e| format!("{path}: {e}"))?;
            let status = response.status();
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| format!("{path}: reading the reply: {e}"))?;
            if !status.is_success() {
                return Err(format!("{path}: HTTP {status}: {text}"));
            }
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}: {text}"))
        }

        /// The counter's value (0 when absent) and its `mod_revision` (0 when absent).
        fn read_counter(&self, key: &str) -> Result<(i64, i64), String> {
            let reply = self.call("/v3/kv/range", &json!({ "key": BASE64.encode(key) }))?;
            let Some(kv) = reply["kvs"].get(0) else {
                return Ok((0, 0));
            };
            Ok((decode_number(&kv["value"])?, int64(&kv["mod_revision"])))
        }

        fn increment_once(&self, key: &str, seen: i64, mod_revision: i64) -> Result<Cas, String> {
            let key = BASE64.encode(key);
            let request = json!({
                "compare": [{
                    "key": key,
                    "result": "EQUAL",
                    "target": "MOD",
                    "mod_revision": mod_revision.to_string(),
                }],
                "success": [{
                    "request_put": { "key": key, "value": BASE64.encode((seen + 1).to_string()) }
                }],
            });
            let reply = self.call("/v3/kv/txn", &request)?;
            // proto3 JSON leaves out a false `succeeded`.
            Ok(if reply["succeeded"].as_bool() == Some(true) {
                Cas::Done
            } else {
                Cas::Conflict
            })
        }

        fn put(&self, key: &str, value: &str) -> Result<(), String> {
            self.call(
                "/v3/kv/put",
                &json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) }),
            )
            .map(drop)
        }

        /// The sum of every counter under `prefix`, read in pages.
        pub fn sum_counters(&self, prefix: &str) -> Result<u64, String> {
            let mut range_end = prefix.as_bytes().to_vec();
            if let Some(last) = range_end.last_mut() {
                *last += 1;
            }
            let range_end = BASE64.encode(range_end);
            let mut from = BASE64.encode(prefix);
            let mut sum = 0u64;
            loop {
                let reply = self.call(
                    "/v3/kv/range",
                    &json!({ "key": from, "range_end": range_end, "limit": READBACK_PAGE }),
                )?;
                let kvs = reply["kvs"].as_array().cloned().unwrap_or_default();
                for kv in &kvs {
                    sum += decode_number(&kv["value"])? as u64;
                }
                if reply["more"].as_bool() != Some(true) || kvs.is_empty() {
                    return Ok(sum);
                }
                // The next page starts just after the last key seen.
                let mut next = BASE64
                    .decode(kvs[kvs.len() - 1]["key"].as_str().unwrap_or_default())
                    .map_err(|e| format!("range key: {e}"))?;
                next.push(0);
                from = BASE64.encode(next);
            }
        }
    }

    /// etcd's JSON gives int64 fields as strings and leaves zeros out.
    fn int64(field: &Value) -> i64 {
        match field {
            Value::String(s) => s.parse().unwrap_or(0),
            other => other.as_i64().unwrap_or(0),
        }
    }

    fn decode_number(field: &Value) -> Result<i64, String> {
        let bytes = BASE64
            .decode(field.as_str().unwrap_or_default())
            .map_err(|e| format!("value: {e}"))?;
        let text = String::from_utf8_lossy(&bytes);
        text.parse()
            .map_err(|_| format!("counter value is not a number: {text:?}"))
    }

    pub fn run(
        workload: &Workload,
        op: Op,
        prefix: &str,
        duration: Duration,
    ) -> Result<(Tally, Duration, Option<u64>), String> {
        let value = "x".repeat(workload.value_size);
        let clients: Vec<Client> = (0..workload.clients)
            .map(|c| Client::new(&workload.addr[c % workload.addr.len()]))
            .collect();
        let started = Instant::now();
        let deadline = started + duration;
        let tallies = std::thread::scope(|scope| {
            let threads: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(index, client)| {
                    let value = &value;
                    scope.spawn(move || {
                        one_client(client, index, op, workload.keys, prefix, value, deadline)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().map_err(|_| "client thread panicked".to_string()))
                .collect::<Result<Vec<Tally>, String>>()
        })?;
        let elapsed = started.elapsed();
        let mut tally = Tally::default();
        for one in tallies {
            tally.merge(one);
        }
        let readback = if op == Op::Incr {
            Some(Client::new(&workload.addr[0]).sum_counters(prefix)?)
        } else {
            None
        };
        Ok((tally, elapsed, readback))
    }

    fn one_client(
        client: &Client,
        index: usize,
        op: Op,
        keys: u64,
        prefix: &str,
        value: &str,
        deadline: Instant,
    ) -> Tally {
        let mut tally = Tally::default();
        let mut chooser = KeyChooser::new(index);
        while Instant::now() < deadline {
            let key = key_name(prefix, chooser.next(keys));
            let started = Instant::now();
            let outcome = match op {
                Op::Put => client.put(&key, value),
                Op::Incr => increment(client, &key, &mut tally),
            };
            match outcome {
                Ok(()) => tally.record(started),
                Err(err) => {
                    tally.error(err);
                    std::thread::sleep(ERROR_BACKOFF);
                }
            }
        }
        tally
    }

    /// Read, then compare-and-swap, until the swap wins; each lost swap is a conflict.
    fn increment(client: &Client, key: &str, tally: &mut Tally) -> Result<(), String> {
        loop {
            let (seen, mod_revision) = client.read_counter(key)?;
            match client.increment_once(key, seen, mod_revision)? {
                Cas::Done => return Ok(()),
                Cas::Conflict => tally.conflicts += 1,
            }
        }
    }
}

/// Writes keys `<prefix>0000000000`.. exactly once each: `connections` connections take
/// disjoint contiguous ranges and send them in pipelined batches.
fn run_load(load: &Load) -> Result<Value, String> {
    let connections = load.connections.clamp(1, load.keys.max(1));
    let per_connection = load.keys.div_ceil(connections);
    let value = "v".repeat(load.value_size);
    let started = Instant::now();
    resp::runtime()?.block_on(async {
        let mut writers = tokio::task::JoinSet::new();
        for part in 0..connections {
            let range = part * per_connection..((part + 1) * per_connection).min(load.keys);
            let mut connection = resp::connect(&load.addr).await?;
            let prefix = load.prefix.clone();
            let value = value.clone();
            let pipeline = load.pipeline.max(1);
            writers.spawn(async move {
                let mut next = range.start;
                while next < range.end {
                    let batch_end = (next + pipeline).min(range.end);
                    let mut batch = redis::pipe();
                    for index in next..batch_end {
                        batch
                            .cmd("SET")
                            .arg(format!("{prefix}{index:010}"))
                            .arg(&value)
                            .ignore();
                    }
                    batch
                        .query_async::<()>(&mut connection)
                        .await
                        .map_err(|e| format!("loading keys {next}..{batch_end}: {e}"))?;
                    next = batch_end;
                }
                Ok::<(), String>(())
            });
        }
        while let Some(done) = writers.join_next().await {
            done.map_err(|e| format!("loader task: {e}"))??;
        }
        Ok::<(), String>(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "load",
        "keys": load.keys,
        "last_key": format!("{}{:010}", load.prefix, load.keys.saturating_sub(1)),
        "key_bytes": load.prefix.len() + 10,
        "value_bytes": load.value_size,
        "seconds": seconds,
        "keys_per_sec": load.keys as f64 / seconds,
    }))
}

/// Medians of the two physical costs of a replicated durable write: a loopback round trip
/// (two threads of this process, `TCP_NODELAY`, 16-byte messages) and a 4 KiB write followed by
/// fdatasync, both overwriting one block and appending to a growing file. The round trip is
/// measured as the scheduler places the threads (the figure the floor uses), and where the
/// process may run on two CPUs also pinned to two different CPUs and to one CPU.
fn run_floor(floor: &Floor) -> Result<Value, String> {
    let samples = floor.rtt_samples.max(1);
    let median_us = |mut v: Vec<u64>| {
        v.sort_unstable();
        percentile_ms(&v, 0.5).unwrap_or(0.0) * 1e3
    };
    let rtt = median_us(loopback_round_trips(samples, None)?);
    let (cross_cpu, same_cpu) = match allowed_cpus().as_slice() {
        [first, second, ..] => (
            Some(median_us(loopback_round_trips(
                samples,
                Some((*first, *second)),
            )?)),
            Some(median_us(loopback_round_trips(
                samples,
                Some((*first, *first)),
            )?)),
        ),
        _ => (None, None),
    };
    let overwrite = fsync_latencies(&floor.dir, floor.fsync_samples.max(1), false)?;
    let append = fsync_latencies(&floor.dir, floor.fsync_samples.max(1), true)?;
    Ok(json!({
        "mode": "floor",
        "measured_by": "Rust bench binary (two threads over 127.0.0.1; write_at + File::sync_data)",
        "rtt_samples": floor.rtt_samples,
        "fsync_samples": floor.fsync_samples,
        "rtt_us_p50": rtt,
        "rtt_cross_cpu_us_p50": cross_cpu,
        "rtt_same_cpu_us_p50": same_cpu,
        "fsync_overwrite_us_p50": median_us(overwrite),
        "fsync_append_us_p50": median_us(append),
    }))
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    use rustix::thread::{CpuSet, sched_getaffinity};
    sched_getaffinity(None).map_or_else(
        |_| Vec::new(),
        |set| {
            (0..CpuSet::MAX_CPU)
                .filter(|&cpu| set.is_set(cpu))
                .collect()
        },
    )
}

/// Pins the calling thread to one CPU.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(std::io::Error::from)
}

/// Round-trip times of 16-byte messages between an echo thread and a client thread, the two
/// pinned to the CPUs in `pin` (client, echo) when given.
fn loopback_round_trips(samples: usize, pin: Option<(usize, usize)>) -> Result<Vec<u64>, String> {
    const MESSAGE: usize = 16;
    const WARMUP: usize = 200;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        if let Some((_, cpu)) = pin {
            pin_to(cpu)?;
        }
        let (mut peer, _) = listener.accept()?;
        peer.set_nodelay(true)?;
        let mut buffer = [0u8; MESSAGE];
        // Echoes until the client closes its end.
        while peer.read_exact(&mut buffer).is_ok() {
            peer.write_all(&buffer)?;
        }
        Ok(())
    });
    let client = std::thread::spawn(move || -> std::io::Result<Vec<u64>> {
        if let Some((cpu, _)) = pin {
            pin_to(cpu)?;
        }
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let mut buffer = [7u8; MESSAGE];
        let mut times = Vec::with_capacity(samples);
        for round in 0..WARMUP + samples {
            let started = Instant::now();
            stream.write_all(&buffer)?;
            stream.read_exact(&mut buffer)?;
            if round >= WARMUP {
                times.push(started.elapsed().as_nanos() as u64);
            }
        }
        Ok(times)
    });
    // On an error the echo thread may still wait in accept; it ends with the process.
    let times = client
        .join()
        .map_err(|_| "round-trip client thread panicked".to_string())?
        .map_err(|e| format!("round trip: {e}"))?;
    echo.join()
        .map_err(|_| "echo thread panicked".to_string())?
        .map_err(|e| format!("echo: {e}"))?;
    Ok(times)
}

fn fsync_latencies(
    dir: &std::path::Path,
    samples: usize,
    append: bool,
) -> Result<Vec<u64>, String> {
    const BLOCK: usize = 4096;
    const WARMUP: usize = 20;
    let path = dir.join(if append {
        "fsync-append.probe"
    } else {
        "fsync-overwrite.probe"
    });
    let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = [0x5au8; BLOCK];
    let mut times = Vec::with_capacity(samples);
    let outcome = (0..WARMUP + samples).try_for_each(|round| {
        let offset = if append { (round * BLOCK) as u64 } else { 0 };
        let started = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        if round >= WARMUP {
            times.push(started.elapsed().as_nanos() as u64);
        }
        Ok::<(), std::io::Error>(())
    });
    drop(file);
    let _ = std::fs::remove_file(&path);
    outcome.map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(times)
}
