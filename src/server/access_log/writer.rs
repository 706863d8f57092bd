//! The log's handle and its writer thread.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use super::entry::Entry;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`--access-log -`).
    Stdout,
    /// A file, created if missing and appended to; [reopened](AccessLog::reopen) by path.
    File(PathBuf),
}

impl Target {
    /// `-` is standard output; anything else a file path.
    pub fn from_arg(arg: impl Into<PathBuf>) -> Self {
        let path = arg.into();
        if path.as_os_str() == "-" {
            Self::Stdout
        } else {
            Self::File(path)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.pad("standard output"),
            Self::File(path) => fmt::Display::fmt(&path.display(), f),
        }
    }
}

/// How a line is written. See the [module docs](super) for both, with real lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line (JSON Lines).
    #[default]
    Json,
    /// Apache's combined log format, then `backend=… ttfb=… total=… retries=…`.
    Combined,
}

impl Format {
    /// `"json"` or `"combined"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Combined => "combined",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "combined" => Ok(Self::Combined),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// A log format other than `json` and `combined`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown access log format {:?}: use json or combined",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

/// The access log: a handle that hands lines to a writer thread. See the
/// [module docs](super).
///
/// Clones share the thread; it flushes and ends when the last clone is dropped.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
}

struct Shared {
    sender: SyncSender<Entry>,
    target: Target,
    format: Format,
    dropped: AtomicU64,
    reopen: AtomicBool,
}

impl AccessLog {
    /// Lines waiting for the writer at most; past that, lines are dropped and
    /// [counted](Self::dropped).
    pub const CAPACITY: usize = 16 * 1024;

    /// How often the writer looks for a [reopen](Self::reopen) request when no line comes.
    const IDLE: Duration = Duration::from_millis(100);

    /// Opens `target` (a file is created if missing, and appended to) and starts the writer
    /// thread. The error names the file.
    pub fn open(target: Target, format: Format) -> io::Result<Self> {
        let out = Output::open(&target)?;
        let (sender, receiver) = sync_channel(Self::CAPACITY);
        let shared = Arc::new(Shared {
            sender,
            target,
            format,
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        });
        let writer = Writer {
            receiver,
            out: BufWriter::with_capacity(64 * 1024, out),
            shared: Arc::downgrade(&shared),
            format,
            target: shared.target.clone(),
        };
        std::thread::Builder::new()
            .name("tower-lb-access-log".to_owned())
            .spawn(move || writer.run())?;
        Ok(Self { shared })
    }

    /// Where the lines go.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// Their format.
    pub fn format(&self) -> Format {
        self.shared.format
    }

    /// Asks the writer to close the file and open its path again — after a rotation has
    /// renamed it, the next lines go to a new file (what SIGUSR1 does to the balancer, as for
    /// nginx). Lines already handed over are written to the old file first. Nothing to do for
    /// standard output. Returns at once.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
    }

    /// Lines dropped because the writer was behind by [`CAPACITY`](Self::CAPACITY) lines.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// Hands a line to the writer, or drops it (and counts it) if the writer is behind:
    /// never blocks.
    pub(crate) fn log(&self, entry: Entry) {
        match self.shared.sender.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.shared.dropped.fetch_add(1, Relaxed) == 0 {
                    tracing::warn!(
                        target = %self.shared.target,
                        "access log writer is behind: dropping lines (counted)"
                    );
                }
            }
            // The writer stopped after an error it logged.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("target", &self.shared.target)
            .field("format", &self.shared.format)
            .field("dropped", &self.dropped())
            .finish()
    }
}

enum Output {
    Stdout(io::Stdout),
    File(File),
}

impl Output {
    fn open(target: &Target) -> io::Result<Self> {
        match target {
            Target::Stdout => Ok(Self::Stdout(io::stdout())),
            Target::File(path) => open_file(path).map(Self::File),
        }
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open the access log {}: {e}", path.display()),
            )
        })
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::File(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::File(out) => out.flush(),
        }
    }
}

/// The thread that formats and writes the lines.
struct Writer {
    receiver: Receiver<Entry>,
    out: BufWriter<Output>,
    /// Weak, so that the thread ends when the last handle is dropped.
    shared: std::sync::Weak<Shared>,
    format: Format,
    target: Target,
}

impl Writer {
    fn run(mut self) {
        loop {
            match self.receiver.recv_timeout(AccessLog::IDLE) {
                Ok(entry) => {
                    self.write(&entry);
                    // Everything waiting, then one flush.
                    while let Ok(entry) = self.receiver.try_recv() {
                        self.write(&entry);
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            }
            let reopen = self
                .shared
                .upgrade()
                .is_some_and(|shared| shared.reopen.swap(false, Relaxed));
            if reopen {
                self.reopen();
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        if let Err(error) = entry.write(self.format, &mut self.out) {
            tracing::warn!(target = %self.target, %error, "cannot write the access log");
        }
    }

    fn flush(&mut self) {
        if let Err(error) = self.out.flush() {
            tracing::warn!(target = %self.target, %error, "cannot write the access log");
        }
    }

    fn reopen(&mut self) {
        let Target::File(path) = self.target.clone() else {
            return;
        };
        self.flush();
        match open_file(&path) {
            Ok(file) => {
                self.out = BufWriter::with_capacity(64 * 1024, Output::File(file));
                tracing::info!(path = %path.display(), "access log reopened");
            }
            // Keep writing to the file already open.
            Err(error) => tracing::warn!(%error, "access log not reopened"),
        }
    }
}
