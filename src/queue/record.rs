//! The fields of a task's MessagePack record (`meta`, written by the
//! scripts with Lua's `cmsgpack`) that a lease needs. `dequeue` returns the
//! record as stored and the worker reads it here: unpacking it in Lua cost
//! Redis, the queue's one shared core, more per task than every command of
//! the dequeue together.

/// What a lease needs from the record as it was before the lease.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct LeaseFields {
    /// Attempts charged so far (the lease's own attempt is this + 1).
    pub attempt: u32,
    pub priority: i64,
    pub max_retries: u32,
    /// Milliseconds; 0 or absent: the queue's default.
    pub timeout_ms: i64,
    pub traceparent: Option<String>,
    /// Sent back with the ack, which releases it (if this task still holds it).
    pub unique: Option<String>,
}

/// Nesting deeper than this is not a record the scripts wrote.
const MAX_DEPTH: usize = 8;

/// Reads `meta`: a map with string keys. Unknown keys are skipped, so a
/// record with more fields than this version knows still leases.
pub(super) fn lease_fields(meta: &[u8]) -> Result<LeaseFields, String> {
    let mut r = Reader { buf: meta, at: 0 };
    let n = r.map_len()?;
    let mut out = LeaseFields::default();
    for _ in 0..n {
        let key = match r.value(0)? {
            Item::Str(k) => k,
            other => return Err(format!("a record key is {other:?}, not a string")),
        };
        let v = r.value(0)?;
        match key {
            b"attempt" => out.attempt = v.uint(key)?,
            b"priority" => out.priority = v.int(key)?,
            b"max_retries" => out.max_retries = v.uint(key)?,
            b"timeout" => out.timeout_ms = v.int(key)?,
            b"tp" => out.traceparent = Some(v.string(key)?),
            b"unique" => out.unique = Some(v.string(key)?),
            _ => {}
        }
    }
    if r.at != meta.len() {
        return Err(format!("{} bytes after the record", meta.len() - r.at));
    }
    Ok(out)
}

#[derive(Debug)]
enum Item<'a> {
    Int(i64),
    Float(f64),
    Str(&'a [u8]),
    /// nil, booleans, binaries, arrays and maps: read past, never needed.
    Other,
}

impl Item<'_> {
    fn int(&self, key: &[u8]) -> Result<i64, String> {
        match *self {
            Item::Int(i) => Ok(i),
            // cmsgpack writes a whole number that does not fit an integer as a float.
            Item::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
            _ => Err(format!("record field {} is {self:?}, not an integer", String::from_utf8_lossy(key))),
        }
    }

    fn uint(&self, key: &[u8]) -> Result<u32, String> {
        let i = self.int(key)?;
        u32::try_from(i).map_err(|_| format!("record field {} is {i}, out of range", String::from_utf8_lossy(key)))
    }

    fn string(&self, key: &[u8]) -> Result<String, String> {
        match self {
            Item::Str(s) => String::from_utf8(s.to_vec())
                .map_err(|_| format!("record field {} is not UTF-8", String::from_utf8_lossy(key))),
            _ => Err(format!("record field {} is {self:?}, not a string", String::from_utf8_lossy(key))),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("the record is cut short")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len16(&mut self) -> Result<usize, String> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<usize, String> {
        usize::try_from(u32::from_be_bytes(self.be()?)).map_err(|e| e.to_string())
    }

    fn map_len(&mut self) -> Result<usize, String> {
        match self.byte()? {
            t @ 0x80..=0x8f => Ok(usize::from(t & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            t => Err(format!("the record starts with 0x{t:02x}, not a map")),
        }
    }

    /// One value; containers are read past (at most `MAX_DEPTH` deep).
    fn value(&mut self, depth: usize) -> Result<Item<'a>, String> {
        if depth > MAX_DEPTH {
            return Err("the record nests too deep".into());
        }
        let t = self.byte()?;
        Ok(match t {
            0x00..=0x7f => Item::Int(i64::from(t)),
            0xe0..=0xff => Item::Int(i64::from(t as i8)),
            0xa0..=0xbf => Item::Str(self.take(usize::from(t & 0x1f))?),
            0xd9 => {
                let n = usize::from(self.byte()?);
                Item::Str(self.take(n)?)
            }
            0xda => {
                let n = self.len16()?;
                Item::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.len32()?;
                Item::Str(self.take(n)?)
            }
            0xcc => Item::Int(i64::from(self.byte()?)),
            0xcd => Item::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Item::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Item::Int(i64::try_from(u64::from_be_bytes(self.be()?)).map_err(|e| e.to_string())?),
            0xd0 => Item::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Item::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Item::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Item::Int(i64::from_be_bytes(self.be()?)),
            0xca => Item::Float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Item::Float(f64::from_be_bytes(self.be()?)),
            0xc0 | 0xc2 | 0xc3 => Item::Other,
            0xc4 => {
                let n = usize::from(self.byte()?);
                self.take(n)?;
                Item::Other
            }
            0xc5 => {
                let n = self.len16()?;
                self.take(n)?;
                Item::Other
            }
            0xc6 => {
                let n = self.len32()?;
                self.take(n)?;
                Item::Other
            }
            0x90..=0x9f => self.skip(usize::from(t & 0x0f), depth)?,
            0xdc => {
                let n = self.len16()?;
                self.skip(n, depth)?
            }
            0xdd => {
                let n = self.len32()?;
                self.skip(n, depth)?
            }
            0x80..=0x8f => self.skip(2 * usize::from(t & 0x0f), depth)?,
            0xde => {
                let n = self.len16()?;
                self.skip(2 * n, depth)?
            }
            0xdf => {
                let n = self.len32()?;
                self.skip(n.saturating_mul(2), depth)?
            }
            t => return Err(format!("0x{t:02x} is not a MessagePack type the scripts write")),
        })
    }

    /// Reads past `n` values. Each takes at least a byte, so a length beyond
    /// what is left fails at once instead of looping.
    fn skip(&mut self, n: usize, depth: usize) -> Result<Item<'a>, String> {
        if n > self.buf.len() - self.at {
            return Err("the record is cut short".into());
        }
        for _ in 0..n {
            self.value(depth + 1)?;
        }
        Ok(Item::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as `cmsgpack.pack` writes it, built by hand: a fixmap of
    /// fixstr keys, with a nested history array of maps to read past.
    fn record() -> Vec<u8> {
        let mut b = vec![0x87];
        let s = |b: &mut Vec<u8>, x: &str| {
            b.push(0xa0 | u8::try_from(x.len()).unwrap());
            b.extend_from_slice(x.as_bytes());
        };
        s(&mut b, "attempt");
        b.push(2);
        s(&mut b, "priority");
        b.push(1);
        s(&mut b, "max_retries");
        b.push(5);
        s(&mut b, "timeout");
        b.extend_from_slice(&[0xcd, 0x75, 0x30]);
        s(&mut b, "created");
        b.extend_from_slice(&[0xcf, 0, 0, 1, 0x9a, 0xd9, 0x3c, 0x52, 0x00]);
        s(&mut b, "history");
        b.extend_from_slice(&[0x91, 0x81]);
        s(&mut b, "error");
        s(&mut b, "boom");
        s(&mut b, "unique");
        s(&mut b, "k1");
        b
    }

    #[test]
    fn reads_the_lease_fields_and_skips_the_rest() {
        let f = lease_fields(&record()).unwrap();
        assert_eq!(
            f,
            LeaseFields {
                attempt: 2,
                priority: 1,
                max_retries: 5,
                timeout_ms: 30_000,
                traceparent: None,
                unique: Some("k1".into())
            }
        );
    }

    #[test]
    fn a_cut_or_padded_record_is_an_error_not_a_panic() {
        let r = record();
        for n in 0..r.len() {
            assert!(lease_fields(&r[..n]).is_err(), "cut at {n}");
        }
        let mut padded = r.clone();
        padded.push(0);
        assert!(lease_fields(&padded).is_err());
        // A container claiming more members than bytes left.
        assert!(lease_fields(&[0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(lease_fields(&[0x91]).is_err());
    }
}
