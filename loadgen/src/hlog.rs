//! HdrHistogram interval logs (`.hlog`): one histogram per operation per second of the
//! run, in the format HdrHistogram's own tools read (`HistogramLogProcessor`,
//! HdrHistogram's plotters, the Python `hdrh` package), each interval tagged with its
//! operation (`Tag=shake`). Values are microseconds; the max column is in milliseconds
//! (max value divisor 1000). With the Java tools pass `-outputValueUnitRatio 1000` to
//! read milliseconds.
//!
//! The log writer borrows its file and serializer for its whole life, so it lives on a
//! thread of its own that owns both and takes intervals from a channel; the run's loop
//! never waits for the disk.

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HlogError {
    #[error("cannot write the interval log {path}: {message}")]
    Write { path: String, message: String },
}

struct Interval {
    tag: &'static str,
    start: Duration,
    length: Duration,
    histogram: Histogram<u64>,
}

/// Writes intervals to one `.hlog` file from a thread of its own.
pub struct HlogWriter {
    tx: Option<mpsc::Sender<Interval>>,
    thread: Option<std::thread::JoinHandle<Result<(), HlogError>>>,
    path: PathBuf,
}

impl HlogWriter {
    /// Creates `path` and writes the log's header; interval start times count from
    /// `start` (the run's start).
    pub fn create(path: &Path, start: SystemTime, comment: &str) -> Result<HlogWriter, HlogError> {
        let shown = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| HlogError::Write {
            path: shown.clone(),
            message: e.to_string(),
        };
        let file = std::fs::File::create(path).map_err(|e| err(&e))?;
        let (tx, rx) = mpsc::channel::<Interval>();
        let comment = comment.to_string();
        let thread_path = shown.clone();
        let thread = std::thread::Builder::new()
            .name("hlog".into())
            .spawn(move || {
                let err = |e: &dyn std::fmt::Display| HlogError::Write {
                    path: thread_path.clone(),
                    message: e.to_string(),
                };
                let mut out = std::io::BufWriter::new(file);
                let mut serializer = V2DeflateSerializer::new();
                {
                    let mut log = IntervalLogWriterBuilder::new()
                        .add_comment(&comment)
                        .add_comment("values in microseconds; max column in milliseconds")
                        .with_start_time(start)
                        .with_base_time(start)
                        .with_max_value_divisor(1000.0)
                        .begin_log_with(&mut out, &mut serializer)
                        .map_err(|e| err(&e))?;
                    for i in rx {
                        log.write_histogram(&i.histogram, i.start, i.length, Tag::new(i.tag))
                            .map_err(|e| err(&e))?;
                    }
                }
                out.flush().map_err(|e| err(&e))
            })
            .map_err(|e| err(&e))?;
        Ok(HlogWriter {
            tx: Some(tx),
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Queues one interval: `histogram` holds what `tag` measured from `start` (since
    /// the run's start) for `length`. Empty intervals are skipped.
    pub fn interval(
        &self,
        tag: &'static str,
        start: Duration,
        length: Duration,
        histogram: Histogram<u64>,
    ) {
        if histogram.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Interval {
                tag,
                start,
                length,
                histogram,
            });
        }
    }

    /// Writes what is queued and closes the file.
    pub fn finish(mut self) -> Result<PathBuf, HlogError> {
        self.tx.take();
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result.map(|_| self.path.clone()),
            Some(Err(_)) | None => Err(HlogError::Write {
                path: self.path.display().to_string(),
                message: "the writer thread panicked".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    #[test]
    fn intervals_read_back_with_their_tags_times_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.hlog");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let w = HlogWriter::create(&path, start, "test run").unwrap();
        let mut shake = new_histogram();
        for us in [100, 200, 300, 40_000] {
            shake.record(us).unwrap();
        }
        let mut open = new_histogram();
        open.record(900).unwrap();
        w.interval(
            "shake",
            Duration::from_secs(1),
            Duration::from_secs(1),
            shake,
        );
        w.interval("open", Duration::from_secs(1), Duration::from_secs(1), open);
        w.interval(
            "hello",
            Duration::from_secs(2),
            Duration::from_secs(1),
            new_histogram(),
        );
        w.finish().unwrap();

        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("#[StartTime: 1700000000"), "{text}");
        let mut seen = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(i) = entry.unwrap() {
                let decoded = base64_decode(i.encoded_histogram());
                let h: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut std::io::Cursor::new(decoded))
                    .unwrap();
                seen.push((
                    i.tag().map(|t| t.as_str().to_string()),
                    i.start_timestamp(),
                    h.len(),
                    i.max(),
                ));
            }
        }
        assert_eq!(seen.len(), 2, "the empty interval is skipped");
        assert_eq!(seen[0].0.as_deref(), Some("shake"));
        assert_eq!(seen[0].1, Duration::from_secs(1));
        assert_eq!(seen[0].2, 4);
        assert!((seen[0].3 - 40.0).abs() < 0.1, "max in ms: {}", seen[0].3);
        assert_eq!(seen[1].0.as_deref(), Some("open"));
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }
}
