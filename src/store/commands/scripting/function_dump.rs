//! The payload of `FUNCTION DUMP` and `FUNCTION RESTORE`, in Redis 7.0's format: each library's
//! code as an RDB string after the `FUNCTION2` opcode, then the RDB version (10, 2 bytes LE) and
//! a CRC-64 (Jones, as Redis computes it) of everything before, 8 bytes LE. Strings are written
//! uncompressed and read plain or LZF-compressed, so payloads move both ways with Redis.

/// `RDB_OPCODE_FUNCTION2`: a library's code follows.
const FUNCTION_OPCODE: u8 = 245;
/// The RDB version Redis 7.0 writes.
pub(crate) const RDB_VERSION: u16 = 10;

/// Redis's CRC-64 (Jones polynomial, reflected, no final xor).
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &byte in data {
        crc ^= u64::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// An RDB length.
pub(crate) fn write_length(len: usize, out: &mut Vec<u8>) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    } else if let Ok(len) = u32::try_from(len) {
        out.push(0x80);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// The payload holding `libraries`' code.
pub fn dump<'a>(libraries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in libraries {
        out.push(FUNCTION_OPCODE);
        write_length(code.len(), &mut out);
        out.extend_from_slice(code);
    }
    seal(out)
}

/// Why a payload was refused, as Redis words it.
#[derive(Debug, PartialEq, Eq)]
pub enum BadPayload {
    /// Too short, a newer RDB version, or a checksum that does not match.
    VersionOrChecksum,
    /// Not a library's code inside.
    NotAFunction,
    /// A string that cannot be read.
    Corrupt,
}

/// Appends the footer of a DUMP payload to `body`: the RDB version and the CRC-64.
pub(crate) fn seal(mut body: Vec<u8>) -> Vec<u8> {
    body.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// The body of a DUMP payload whose RDB version Redis 7.0 reads and whose checksum matches
/// (`verifyDumpPayload`).
pub(crate) fn verified_body(payload: &[u8]) -> Result<&[u8], BadPayload> {
    if payload.len() < 10 {
        return Err(BadPayload::VersionOrChecksum);
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let crc = u64::from_le_bytes(footer[2..].try_into().expect("8 bytes"));
    if version > RDB_VERSION || crc64(&payload[..payload.len() - 8]) != crc {
        return Err(BadPayload::VersionOrChecksum);
    }
    Ok(body)
}

/// The libraries' code in a payload.
pub fn restore(payload: &[u8]) -> Result<Vec<Vec<u8>>, BadPayload> {
    let body = verified_body(payload)?;
    let mut reader = Reader { data: body, at: 0 };
    let mut libraries = Vec::new();
    while reader.at < body.len() {
        match reader.byte()? {
            FUNCTION_OPCODE => libraries.push(reader.string()?),
            _ => return Err(BadPayload::NotAFunction),
        }
    }
    Ok(libraries)
}

/// Reads RDB items from a payload's body.
pub(crate) struct Reader<'a> {
    /// The body.
    pub(crate) data: &'a [u8],
    /// Where the next item starts.
    pub(crate) at: usize,
}

impl Reader<'_> {
    /// One byte.
    pub(crate) fn byte(&mut self) -> Result<u8, BadPayload> {
        let byte = *self.data.get(self.at).ok_or(BadPayload::Corrupt)?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], BadPayload> {
        let bytes = self
            .data
            .get(self.at..self.at.checked_add(n).ok_or(BadPayload::Corrupt)?)
            .ok_or(BadPayload::Corrupt)?;
        self.at += n;
        Ok(bytes)
    }

    /// A length, or `Err(encoding)` for a specially encoded string.
    fn length(&mut self) -> Result<Result<usize, u8>, BadPayload> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Ok(usize::from(first & 0x3f)),
            1 => Ok((usize::from(first & 0x3f) << 8) | usize::from(self.byte()?)),
            2 => match first {
                0x80 => {
                    let bytes: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
                    Ok(u32::from_be_bytes(bytes) as usize)
                }
                0x81 => {
                    let bytes: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
                    Ok(usize::try_from(u64::from_be_bytes(bytes))
                        .map_err(|_| BadPayload::Corrupt)?)
                }
                _ => return Err(BadPayload::Corrupt),
            },
            _ => Err(first & 0x3f),
        })
    }

    /// An RDB string: plain, an integer, or LZF-compressed.
    pub(crate) fn string(&mut self) -> Result<Vec<u8>, BadPayload> {
        match self.length()? {
            Ok(len) => Ok(self.take(len)?.to_vec()),
            Err(0) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Err(1) => {
                let bytes: [u8; 2] = self.take(2)?.try_into().expect("2 bytes");
                Ok(i16::from_le_bytes(bytes).to_string().into_bytes())
            }
            Err(2) => {
                let bytes: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
                Ok(i32::from_le_bytes(bytes).to_string().into_bytes())
            }
            Err(3) => {
                let compressed = self.length()?.map_err(|_| BadPayload::Corrupt)?;
                let original = self.length()?.map_err(|_| BadPayload::Corrupt)?;
                lzf_decompress(self.take(compressed)?, original)
            }
            Err(_) => Err(BadPayload::Corrupt),
        }
    }
}

/// liblzf's decompression, into exactly `original` bytes.
fn lzf_decompress(input: &[u8], original: usize) -> Result<Vec<u8>, BadPayload> {
    let mut out: Vec<u8> = Vec::with_capacity(original);
    let mut at = 0;
    while at < input.len() {
        let control = usize::from(input[at]);
        at += 1;
        if control < 32 {
            let literal = input.get(at..at + control + 1).ok_or(BadPayload::Corrupt)?;
            out.extend_from_slice(literal);
            at += control + 1;
        } else {
            let mut len = control >> 5;
            if len == 7 {
                len += usize::from(*input.get(at).ok_or(BadPayload::Corrupt)?);
                at += 1;
            }
            let low = usize::from(*input.get(at).ok_or(BadPayload::Corrupt)?);
            at += 1;
            let back = ((control & 0x1f) << 8) + low + 1;
            let start = out.len().checked_sub(back).ok_or(BadPayload::Corrupt)?;
            for i in 0..len + 2 {
                let byte = out[start + i];
                out.push(byte);
            }
        }
        if out.len() > original {
            return Err(BadPayload::Corrupt);
        }
    }
    if out.len() == original {
        Ok(out)
    } else {
        Err(BadPayload::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_jones() {
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn a_dump_restores_and_damage_is_refused() {
        let long = vec![b'x'; 20_000];
        let payload = dump([&b"#!lua name=a\nx"[..], &long[..]]);
        assert_eq!(
            restore(&payload),
            Ok(vec![b"#!lua name=a\nx".to_vec(), long])
        );
        let mut damaged = payload.clone();
        damaged[3] ^= 1;
        assert_eq!(restore(&damaged), Err(BadPayload::VersionOrChecksum));
        assert_eq!(restore(b"short"), Err(BadPayload::VersionOrChecksum));
    }

    #[test]
    fn lzf_back_references_copy_overlapping_runs() {
        // "abc" literally, then 6 bytes from 3 back: "abcabcabc".
        let compressed = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&compressed, 9), Ok(b"abcabcabc".to_vec()));
    }
}
