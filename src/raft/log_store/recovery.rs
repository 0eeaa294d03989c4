//! Reading the log back at start: segment headers, checksummed groups, a torn last write
//! repaired, damage refused (see the module doc of `crate::raft::log_store`); and creating a
//! new segment.

use super::*;

pub(super) fn encode_header(seq: u64, size: u64) -> [u8; HEADER_BYTES as usize] {
    let mut header = [0; HEADER_BYTES as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&size.to_le_bytes());
    let crc = crc32fast::hash(&header[..32]);
    header[32..36].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment's header against its name and length.
pub(super) fn check_header(bytes: &[u8], seq: u64) -> Result<(), String> {
    if bytes.len() < HEADER_BYTES as usize {
        return Err(format!(
            "segment {seq} is cut short ({} bytes)",
            bytes.len()
        ));
    }
    let header = &bytes[..HEADER_BYTES as usize];
    let field = |range: std::ops::Range<usize>| {
        u64::from_le_bytes(header[range].try_into().expect("8 bytes"))
    };
    if &header[..8] != MAGIC || crc32fast::hash(&header[..32]).to_le_bytes() != header[32..36] {
        return Err(format!("segment {seq} has a damaged header"));
    }
    let version = u32_at(header, 8).expect("a whole header");
    if version != FORMAT_VERSION {
        return Err(format!(
            "segment {seq} has unknown format version {version}"
        ));
    }
    if field(16..24) != seq {
        return Err(format!(
            "segment {seq} says it is segment {}",
            field(16..24)
        ));
    }
    if field(24..32) != bytes.len() as u64 {
        return Err(format!(
            "segment {seq} is {} bytes long where its header says {}",
            bytes.len(),
            field(24..32)
        ));
    }
    Ok(())
}

/// The group starting at `pos`, if it is whole and passes its checksum: its records' bytes,
/// and where the next group starts.
pub(super) fn valid_group(bytes: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let len = u32_at(bytes, pos)? as usize;
    let crc = u32_at(bytes, pos + 4)?;
    if len == 0 {
        return None;
    }
    let body = bytes.get(pos + GROUP_HEADER_BYTES..(pos + GROUP_HEADER_BYTES).checked_add(len)?)?;
    let records = body.strip_suffix(GROUP_TRAILER)?;
    (crc32fast::hash(body) == crc).then_some((records, pos + GROUP_HEADER_BYTES + len))
}

/// Whether the bytes from `pos` on look like a group whose write was torn by a crash: some
/// sector it covers was never written (all zeros; segments are zero-filled and every group
/// starts with its length and ends with a trailer), and no valid group follows.
pub(super) fn torn_tail(bytes: &[u8], pos: usize) -> bool {
    let header_len = u32_at(bytes, pos).unwrap_or(0) as usize;
    let extent_end = if header_len == 0 {
        // The sector holding the header was not written: the whole rest is the torn write.
        bytes.len()
    } else {
        match (pos + GROUP_HEADER_BYTES).checked_add(header_len) {
            Some(end) if end <= bytes.len() => end,
            _ => return false,
        }
    };
    let first_sector = pos / SECTOR_BYTES * SECTOR_BYTES;
    let unwritten_sector = (first_sector..extent_end).step_by(SECTOR_BYTES).any(|at| {
        bytes[at..(at + SECTOR_BYTES).min(bytes.len())]
            .iter()
            .all(|&b| b == 0)
    });
    unwritten_sector && !valid_group_after(bytes, pos)
}

/// Whether a valid group starts anywhere after `pos`.
pub(super) fn valid_group_after(bytes: &[u8], pos: usize) -> bool {
    (pos + 1..bytes.len().saturating_sub(GROUP_HEADER_BYTES))
        .any(|at| valid_group(bytes, at).is_some())
}

/// What start-up read back from the segments.
pub(super) struct Recovered {
    pub(super) meta: LogMeta,
    pub(super) index: DurableIndex,
    /// Every segment's sequence number and the highest entry index ever written to it.
    pub(super) segments: Vec<(u64, Option<u64>)>,
    /// Where the next group goes in the newest segment.
    pub(super) write_offset: u64,
    pub(super) segment_size: u64,
}

/// Reads every segment back, checks it (see the module doc) and repairs a torn last group.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
    let mut seqs = Vec::new();
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".log.tmp") {
            // A segment whose creation did not finish: it holds nothing acknowledged.
            fs::remove_file(&path)?;
        } else if let Some(seq) = name
            .strip_suffix(".log")
            .and_then(|s| s.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    if seqs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no segments"));
    }
    let damaged = |detail: String| damaged_log(dir, detail);
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(damaged(format!(
                "segments {} to {} are missing",
                pair[0] + 1,
                pair[1] - 1
            )));
        }
    }
    let mut meta = LogMeta::default();
    let mut index = DurableIndex::default();
    let mut segments = Vec::with_capacity(seqs.len());
    let mut write_offset = 0;
    let mut segment_size = 0;
    let newest = *seqs.last().expect("one segment");
    for &seq in &seqs {
        let path = dir.join(segment_name(seq));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = fs::read(&path)?;
        check_header(&bytes, seq).map_err(&damaged)?;
        let mut max_entry = None;
        let mut pos = HEADER_BYTES as usize;
        let mut first_group = true;
        while let Some((body, next_group)) = valid_group(&bytes, pos) {
            let body_start = pos + GROUP_HEADER_BYTES;
            let mut at = 0;
            while at < body.len() {
                let len = u32_at(body, at)
                    .map(|len| len as usize)
                    .ok_or_else(|| damaged(format!("segment {seq}: a record is cut short")))?;
                let payload = body
                    .get(at + 4..at + 4 + len)
                    .ok_or_else(|| damaged(format!("segment {seq}: a record is cut short")))?;
                let record: Record<Entry> = postcard::from_bytes(payload)
                    .map_err(|_| damaged(format!("segment {seq}: a record does not decode")))?;
                let location = Location {
                    seq,
                    offset: (body_start + at + 4) as u64,
                    len: len as u32,
                };
                at += 4 + len;
                match record {
                    Record::State {
                        vote,
                        committed,
                        last_purged,
                    } => {
                        if first_group && seq == seqs[0] {
                            meta = LogMeta {
                                vote,
                                committed,
                                last_purged,
                            };
                        }
                    }
                    Record::Entry(entry) => {
                        let i = entry.log_id.index;
                        if let Some(last) = index.last()
                            && i > last + 1
                        {
                            return Err(damaged(format!(
                                "entries {} to {} are missing",
                                last + 1,
                                i - 1
                            )));
                        }
                        // An entry rewritten at an index it already had replaces it, as the
                        // writer did.
                        index.truncate_from(i);
                        if meta.last_purged.is_none_or(|p| i > p.index) {
                            index.push(i, location);
                        }
                        max_entry = Some(max_entry.map_or(i, |m: u64| m.max(i)));
                    }
                    Record::Vote(vote) => meta.vote = Some(vote),
                    Record::Committed(committed) => meta.committed = committed,
                    Record::TruncateAfter { first_removed } => index.truncate_from(first_removed),
                    Record::Purged(upto) => {
                        index.purge_upto(upto.index);
                        meta.last_purged = Some(upto);
                    }
                }
            }
            first_group = false;
            pos = next_group;
        }
        // `pos` is where this segment's groups end: zeros from there on, or a torn last group.
        if bytes[pos..].iter().any(|&b| b != 0) {
            if seq != newest || !torn_tail(&bytes, pos) {
                return Err(damaged(format!(
                    "segment {seq} has a damaged group at byte {pos}"
                )));
            }
            let end = bytes.iter().rposition(|&b| b != 0).expect("a nonzero byte") + 1;
            tracing::warn!(
                segment = seq,
                at = pos,
                bytes = end - pos,
                "the raft log ends in a write torn by a crash (never acknowledged); clearing it"
            );
            bytes[pos..end].fill(0);
            file.write_all_at(&bytes[pos..end], pos as u64)?;
            file.sync_data()?;
        }
        if seq == newest {
            write_offset = pos as u64;
            segment_size = bytes.len() as u64;
        }
        index.files.insert(seq, Arc::new(file));
        segments.push((seq, max_entry));
    }
    if let Some(last_purged) = meta.last_purged {
        index.purge_upto(last_purged.index);
        if let Some(first) = index.last().map(|_| index.first)
            && first != last_purged.index + 1
        {
            return Err(damaged(format!(
                "entries {} to {} are missing",
                last_purged.index + 1,
                first - 1
            )));
        }
    }
    if let Some(committed) = meta.committed {
        let last = index.last().or(meta.last_purged.map(|p| p.index));
        if last.is_none_or(|last| last < committed.index) {
            return Err(damaged(format!(
                "the log ends at {} below its commit index {}: its tail is missing",
                last.map_or("the start".to_string(), |l| l.to_string()),
                committed.index
            )));
        }
    }
    Ok(Recovered {
        meta,
        index,
        segments,
        write_offset,
        segment_size,
    })
}

/// Creates segment `seq` of `size` bytes, zero-filled, starting with a group that states
/// `meta`; durable and in place when this returns. Returns the file and where the next group
/// goes.
pub(super) fn create_segment(
    dir: &Path,
    seq: u64,
    size: u64,
    meta: &LogMeta,
) -> io::Result<(File, u64)> {
    let tmp = dir.join(format!("{}.tmp", segment_name(seq)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], written)?;
        written += n as u64;
    }
    file.write_all_at(&encode_header(seq, size), 0)?;
    let mut group = vec![0; GROUP_HEADER_BYTES];
    push_record(
        &mut group,
        &Record::State {
            vote: meta.vote,
            committed: meta.committed,
            last_purged: meta.last_purged,
        },
    )?;
    seal_group(&mut group)?;
    file.write_all_at(&group, HEADER_BYTES)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(segment_name(seq)))?;
    fsync_dir(dir)?;
    Ok((file, HEADER_BYTES + group.len() as u64))
}
