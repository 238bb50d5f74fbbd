//! The one logging facade: nwtrace's own messages and libbpf's go through
//! the `log` crate to a writer chosen here, stderr by default. A
//! full-screen UI points it elsewhere (a file, or its own panel), so that
//! no stray write lands on its screen.
//!
//! Messages are written as they are given, one per line: the human text on
//! stderr (the `Tracing` line, the run summary) keeps its exact form.
//! Write errors are ignored: a closed stderr (`2>&1 | head`) must never
//! stop or crash a capture.

use std::io::Write;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

type Sink = Box<dyn Write + Send>;

struct Logger {
    sink: Mutex<Option<Sink>>,
}

static LOGGER: Logger = Logger {
    sink: Mutex::new(None),
};

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let line = if record.target() == "libbpf" {
            // libbpf's messages end in their own newline.
            format!("libbpf: {}", record.args())
        } else {
            format!("{}\n", record.args())
        };
        let _ = match sink.as_mut() {
            Some(w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
            None => std::io::stderr().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// Installs the logger, writing to stderr. `verbose` 0 shows nwtrace's
/// messages, 1 adds libbpf's warnings, 2 and more libbpf's debug log (the
/// verifier's output among it).
pub fn init(verbose: u8) {
    // A second call (tests) keeps the first logger, which is the same one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if verbose >= 2 {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    let libbpf_level = match verbose {
        0 => None,
        1 => Some(libbpf_rs::PrintLevel::Warn),
        _ => Some(libbpf_rs::PrintLevel::Debug),
    };
    libbpf_rs::set_print(libbpf_level.map(|level| {
        let print: fn(libbpf_rs::PrintLevel, String) = |level, msg| {
            let level = match level {
                libbpf_rs::PrintLevel::Warn => Level::Warn,
                libbpf_rs::PrintLevel::Info => Level::Info,
                libbpf_rs::PrintLevel::Debug => Level::Debug,
            };
            log::log!(target: "libbpf", level, "{msg}");
        };
        (level, print)
    }));
}

/// Sends every later message to `sink` instead of stderr; `None` restores
/// stderr.
pub fn redirect(sink: Option<Sink>) {
    *LOGGER.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
}
