//! The log writer: each formatted line goes through a bounded channel to one thread that writes
//! whatever has queued up in one buffered write, so a request never waits on stdout (a slow
//! pipe or terminal) and lines logged together share one `write` instead of one each.

use std::{
    io::{self, BufWriter, Write},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    time::Duration,
};

use chrono::{Datelike, Timelike};
use tracing_subscriber::fmt::{MakeWriter, format::Writer, time::FormatTime};

/// Most lines waiting to be written. Past it a line is dropped rather than making the request
/// that logged it wait; the writer then says how many it dropped. At roughly 200 bytes a line
/// this is about 13 MB at most.
pub const MAX_QUEUED_LINES: usize = 65_536;

/// Bytes gathered before a write when lines arrive faster than they are written.
const WRITE_BUFFER: usize = 64 * 1024;

/// How long the writer lets lines gather after the first before writing them all: how late a
/// line can appear, and the least time between two writes.
const GATHER: Duration = Duration::from_millis(5);

/// How long dropping the [`FlushGuard`] waits for the queued lines to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

enum Msg {
    Line(Vec<u8>),
    /// Everything sent before it is written; answered once flushed.
    Flush(SyncSender<()>),
}

/// A `MakeWriter` for `tracing_subscriber::fmt` that never blocks the caller.
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

/// Flushes the queued lines when dropped (keep it until the process exits).
pub struct FlushGuard {
    tx: SyncSender<Msg>,
}

impl LogWriter {
    /// A writer to `out` (the process's stdout in production) on a thread of its own.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<(LogWriter, FlushGuard)> {
        let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new().name("log-writer".into()).spawn(move || write_lines(rx, out, &counter))?;
        Ok((LogWriter { tx: tx.clone(), dropped }, FlushGuard { tx }))
    }
}

fn write_lines<W: Write>(rx: Receiver<Msg>, out: W, dropped: &AtomicU64) {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
    let mut acks = Vec::new();
    // A failed write (stdout closed) cannot be reported anywhere better; the lines are lost.
    while let Ok(first) = rx.recv() {
        // Lines logged meanwhile are written with this one, so under load the thread wakes
        // (and writes) a few hundred times a second instead of once per line, and a sender
        // seldom finds it waiting: a wake-up is a futex call and a context switch, a write
        // another system call, which cost a busy server as much as formatting the line.
        std::thread::sleep(GATHER);
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(out, "log writer: {lost} line(s) dropped (more than {MAX_QUEUED_LINES} were waiting)");
        }
        let _ = out.flush();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(FLUSH_WAIT);
        }
    }
}

/// One formatted line, handed to the writer thread when dropped (the fmt layer writes each
/// event with a single `write_all`).
pub struct Line<'a> {
    buf: Vec<u8>,
    writer: &'a LogWriter,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        if let Err(TrySendError::Full(_)) = self.writer.tx.try_send(Msg::Line(line)) {
            self.writer.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        // Room for a typical line (an access line is about 150 bytes) without regrowing.
        Line { buf: Vec::with_capacity(256), writer: self }
    }
}

/// Each line's timestamp as tracing-subscriber's default writes it (`2026-12-03T10:04:09.343081Z`,
/// UTC, microseconds), with the digits written directly: its `fmt`-based formatting was about
/// 2,000 instructions of every access line.
pub struct UtcMicros;

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = chrono::Utc::now();
        let mut buf = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: std::ops::Range<usize>, mut n: u32| {
            for d in buf[at].iter_mut().rev() {
                // Below 10: a digit.
                *d = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        // Years past 9999 lose their leading digits; this clock does not reach them.
        put(0..4, u32::try_from(now.year()).unwrap_or(0));
        put(5..7, now.month());
        put(8..10, now.day());
        put(11..13, now.hour());
        put(14..16, now.minute());
        // A leap second shows as :59.999999 rather than :60.
        put(17..19, now.second());
        put(20..26, (now.nanosecond() / 1000).min(999_999));
        w.write_str(std::str::from_utf8(&buf).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn timestamps_look_like_the_default_ones() {
        let mut text = String::new();
        UtcMicros.format_time(&mut Writer::new(&mut text)).unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
        assert_eq!(text.len(), "2026-12-03T10:04:09.343081Z".len(), "{text}");
        assert!(text.ends_with('Z'));
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(age >= chrono::Duration::zero() && age < chrono::Duration::seconds(5), "{text}");
    }

    #[test]
    fn lines_arrive_in_order_and_the_guard_flushes_them() {
        let sink = Sink::default();
        let (writer, guard) = LogWriter::spawn(sink.clone()).unwrap();
        for i in 0..1000 {
            writeln!(writer.make_writer(), "line {i}").unwrap();
        }
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000, "{text}");
        assert!(lines.iter().enumerate().all(|(i, l)| *l == format!("line {i}")));
    }
}
