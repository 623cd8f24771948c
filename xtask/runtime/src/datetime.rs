//! `date-time` values written the way chrono's `Serialize` writes them
//! (RFC 3339, `Z`, the fraction in 0, 3, 6 or 9 digits as needed), without
//! going through `fmt`: chrono formats each timestamp field by field with
//! `write!`, several thousand instructions per value, and a response with a
//! few timestamps paid more for them than for the rest of its JSON. Years
//! outside 0000–9999 and leap seconds take chrono's own path, so the output
//! is always exactly chrono's. Generated models use these as
//! `serialize_with` on their `date-time` fields.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// The longest fast-path value: `2026-12-03T10:04:09.123456789Z`.
const MAX_LEN: usize = 30;

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        // Only ASCII digits and separators are written.
        Some(n) => match std::str::from_utf8(&buf[..n]) {
            Ok(text) => s.serialize_str(text),
            Err(_) => t.serialize(s),
        },
        None => t.serialize(s),
    }
}

pub fn serialize_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// The text into `buf`, or `None` where chrono's formatting differs from
/// the plain form (years outside 0–9999, a leap second).
fn write(t: &DateTime<Utc>, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut buf[0..4], year);
    digits(&mut buf[5..7], t.month());
    digits(&mut buf[8..10], t.day());
    digits(&mut buf[11..13], t.hour());
    digits(&mut buf[14..16], t.minute());
    digits(&mut buf[17..19], t.second());
    let fraction: usize = match nanos {
        0 => return Some(close(buf, 19)),
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    };
    // `fraction` is 3, 6 or 9: the power fits.
    digits(&mut buf[20..20 + fraction], nanos / 10u32.pow(9 - fraction as u32));
    Some(close(buf, 20 + fraction))
}

/// `n` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut n: u32) {
    for d in out.iter_mut().rev() {
        // Below 10: a digit.
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Ends the text with `Z` at `at`; its length.
fn close(buf: &mut [u8; MAX_LEN], at: usize) -> usize {
    buf[at] = b'Z';
    at + 1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    #[derive(Serialize)]
    struct Fast(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn same_as_chrono(t: DateTime<Utc>) {
        assert_eq!(serde_json::to_string(&Fast(t)).unwrap(), serde_json::to_string(&t).unwrap(), "{t:?}");
    }

    #[test]
    fn writes_what_chrono_writes() {
        let base = Utc.with_ymd_and_hms(2026, 12, 3, 10, 4, 9).unwrap();
        for nanos in [0, 1, 9, 10, 999, 1_000, 123_000, 999_000, 1_000_000, 120_000_000, 999_999_999, 500_000_001] {
            same_as_chrono(base + chrono::Duration::nanoseconds(nanos));
        }
        for (y, m, d) in [(0, 1, 1), (1, 1, 1), (999, 12, 31), (1970, 1, 1), (2000, 2, 29), (9999, 12, 31)] {
            let t = NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_nano_opt(23, 59, 58, 7_000).unwrap();
            same_as_chrono(t.and_utc());
        }
        // chrono's own path: years it writes with a sign, and a leap second.
        for y in [-1, -2024, 10_000, 262_142] {
            same_as_chrono(NaiveDate::from_ymd_opt(y, 6, 15).unwrap().and_hms_opt(1, 2, 3).unwrap().and_utc());
        }
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31).unwrap().and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        same_as_chrono(leap.and_utc());
        // A spread of instants across the fast path's range.
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x.rem_euclid(253_402_300_799);
            let nanos = u32::try_from((x >> 3).rem_euclid(1_000_000_000)).unwrap();
            let nanos = [nanos, nanos / 1000 * 1000, nanos / 1_000_000 * 1_000_000, 0][usize::try_from(x & 3).unwrap()];
            same_as_chrono(DateTime::from_timestamp(secs, nanos).unwrap());
        }
    }

    #[test]
    fn options_are_null_or_the_value() {
        #[derive(Serialize)]
        struct O(#[serde(serialize_with = "serialize_opt")] Option<DateTime<Utc>>);
        assert_eq!(serde_json::to_string(&O(None)).unwrap(), "null");
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(serde_json::to_string(&O(Some(t))).unwrap(), "\"2026-01-02T03:04:05Z\"");
    }
}
