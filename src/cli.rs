//! Command-line interface.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::UsageError;
use crate::analysis::op_filter::{self, FilterArgs};
use crate::capture::backends::BACKENDS;
use crate::capture::load::Filters;
use crate::capture::sampling::{self, RateLimitBy, Thinning};
use crate::capture::session::CaptureOptions;
use crate::output::sink::Compression;
use crate::report::csv_out::CsvTable;
use crate::report::model::SortKey;
use crate::schema::columns::Columns;

/// `nwtrace --version`: the package version and the git commit it was
/// built from (`unknown` outside a checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NWTRACE_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "nwtrace",
    version = VERSION,
    about = "Record every TCP and UDP send and receive on this machine as CSV rows, with eBPF."
)]
pub struct Cli {
    /// More detail on stderr (libbpf's own log with -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace until Ctrl-C, SIGTERM or --duration, writing CSV rows.
    Record(Box<RecordArgs>),
    /// Say what this kernel allows: BTF, lockdown, tracefs, and which
    /// backends work (each one is loaded and attached for real, then
    /// detached). Exits 1 when none works.
    Doctor(DoctorArgs),
    /// Print one line per operation as it happens (text, CSV or JSON
    /// Lines), until Ctrl-C, --count or --duration.
    Watch(Box<WatchArgs>),
    /// Print record's effective settings and where each came from:
    /// command line, NWTRACE_* environment, config file, or default.
    Config(Box<ConfigArgs>),
    /// Write the man pages or the shell completions into DIR (packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// A live full-screen view: processes, conversations, endpoints,
    /// latency, errors and flags, with rates over 1 s, 10 s or the whole
    /// run. --replay DIR shows a recording instead; --json prints one
    /// object per second for scripts.
    Top(Box<TopArgs>),
    /// Answers from a recording: coverage, busiest processes and
    /// conversations, latency, errors, flags, plots; as text, JSON, HTML
    /// or CSV.
    Report(Box<ReportArgs>),
    /// Write nw/summary.json for recordings that lack a valid one (older
    /// recordings, killed runs), so that report reads them fast.
    Summarize(SummarizeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateWhat {
    /// nwtrace.1 and nwtrace-<subcommand>.1
    Man,
    /// nwtrace.bash, _nwtrace (zsh), nwtrace.fish
    Completions,
}

#[derive(Debug, Parser)]
pub struct GenerateArgs {
    pub what: GenerateWhat,
    pub dir: PathBuf,
}

#[derive(Debug, Parser)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,

    /// Any record option, to see how it combines with the files.
    #[command(flatten)]
    pub record: RecordArgs,
}

/// Where `record` writes when no --output-dir is given.
pub const DEFAULT_OUTPUT_DIR: &str = "./linux_trace_v3_test";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchFormat {
    /// Aligned columns for a person; colour on a terminal unless NO_COLOR.
    Text,
    /// Exactly the rows record writes, header first.
    Csv,
    /// One JSON object per operation, keyed by the CSV column names.
    Jsonl,
}

#[derive(Debug, Parser)]
pub struct WatchArgs {
    /// Line format.
    #[arg(short, long, value_enum, default_value_t = WatchFormat::Text)]
    pub format: WatchFormat,

    /// Stop after this many operations.
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop after this long, e.g. 30s, 5m.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Also record every row into this output folder, exactly as record
    /// does (rows that could not be printed are never lost then).
    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub capture: CaptureArgs,
}

#[derive(Debug, Clone, Parser)]
pub struct TopArgs {
    /// Show a recording (a folder that record wrote) instead of tracing:
    /// needs no root and no BPF.
    #[arg(long, value_name = "DIR", conflicts_with = "record")]
    pub replay: Option<PathBuf>,

    /// With --replay: the pace, as a multiple of the recorded one; 0 reads
    /// as fast as possible.
    #[arg(long, value_name = "N", default_value_t = 1.0, requires = "replay")]
    pub speed: f64,

    /// Also record every row into this output folder, exactly as record
    /// does (the same files and manifest).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Instead of the screen: one JSON object per second on stdout.
    #[arg(long)]
    pub json: bool,

    /// Start with this filter, in the syntax of the / box:
    /// "pid:123 comm:nginx port:443 proto:tcp dir:send".
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,

    /// Stop after this long, e.g. 30s, 5m.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// With --record: as record's --machine-id.
    #[arg(long, requires = "record")]
    pub machine_id: Option<String>,

    /// With --record: as record's --timestamp.
    #[arg(long, value_name = "NAME", requires = "record")]
    pub timestamp: Option<String>,

    /// With --record: as record's --rotate-size.
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub rotate_size: u64,

    /// With --record: as record's --max-files.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), requires = "record")]
    pub max_files: Option<u64>,

    /// With --record: as record's --max-size.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "record")]
    pub max_size: Option<u64>,

    #[command(flatten)]
    pub capture: CaptureArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DoctorFormat {
    /// Aligned lines for a person.
    Text,
    /// One JSON object (schema_version 1) for scripts.
    Json,
}

#[derive(Debug, Parser)]
pub struct DoctorArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = DoctorFormat::Text)]
    pub format: DoctorFormat,

    /// Also try every backend as the nwtrace service would run: a non-root
    /// user holding only the unit's AmbientCapabilities (read from the
    /// installed unit and its drop-ins), with kernel.perf_event_paranoid as
    /// it is; say per backend what is missing and how to fix it. Needs root.
    #[arg(long)]
    pub as_service: bool,

    /// With --as-service: try these capabilities instead of the unit's,
    /// e.g. "CAP_BPF CAP_PERFMON CAP_SYS_ADMIN" to see what a drop-in would
    /// change.
    #[arg(long, value_name = "CAPS", requires = "as_service")]
    pub service_caps: Option<String>,
}

/// `--backend`'s values: `auto`, then every backend of the table.
fn backend_values() -> PossibleValuesParser {
    let auto = PossibleValue::new("auto")
        .help("the cheapest backend that loads and attaches here, in the order below");
    PossibleValuesParser::new(
        std::iter::once(auto).chain(
            BACKENDS
                .iter()
                .map(|b| PossibleValue::new(b.name).help(b.sees)),
        ),
    )
}

/// What every tracing command (record, and later top and watch) takes:
/// the in-kernel filters, the backend and the ring buffer.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Only trace this process (its tgid). Repeat for several.
    #[arg(short, long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Only trace threads with this command name (exact, at most 15 bytes).
    /// Repeat for several.
    #[arg(short, long = "comm", value_name = "COMM", value_parser = op_filter::parse_comm)]
    pub comms: Vec<String>,

    /// The filters every command shares (docs/record.md, "Filters"): one
    /// parser and one meaning for record, watch, top and report.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Add optional columns after the 14, comma-separated, from
    /// tid,uid,cgroup,container,netns,cookie,srtt,cwnd,retrans,seq. They
    /// are always written in that order, with the headers TID, UID,
    /// Cgroup, Container ID, Netns, Socket Cookie, SRTT us, CWND, Retrans,
    /// TCP Seq.
    #[arg(long, value_name = "LIST", value_parser = Columns::parse)]
    pub columns: Option<Columns>,

    /// Which family of probes to use.
    #[arg(short, long, default_value = "auto", value_parser = backend_values())]
    pub backend: String,

    /// Size of the BPF ring buffer (a power of two, at least 4K).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = parse_ring_size)]
    pub ring_size: u64,

    /// Write every operation of 1 flow in N (`1/N`), decided in the kernel
    /// from the flow's two endpoints, alike on both ends of a conversation.
    /// The operations left out are counted, so the run's totals stay exact
    /// (docs/sampling.md).
    #[arg(long, value_name = "1/N", value_parser = sampling::parse_sample)]
    pub sample: Option<u32>,

    /// Write at most N operations a second per process (`N/s`; a token
    /// bucket in the kernel). The operations over it are counted, not
    /// written (docs/sampling.md).
    #[arg(long, value_name = "N/s", value_parser = sampling::parse_rate)]
    pub rate_limit: Option<u64>,

    /// What --rate-limit limits: each process, or each cgroup.
    #[arg(long, value_enum, value_name = "BY", requires = "rate_limit")]
    pub rate_limit_by: Option<RateLimitByArg>,
}

/// `--rate-limit-by`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateLimitByArg {
    /// One bucket per process (tgid): the default.
    Process,
    /// One bucket per cgroup (v2 id) of the calling thread.
    Cgroup,
}

impl CaptureArgs {
    /// The capture's options. The in-kernel `--cgroup` filter matches the
    /// cgroups' ids, so each one must exist when tracing starts: a usage
    /// error names the one that does not.
    pub fn options(&self) -> Result<CaptureOptions, UsageError> {
        let f = &self.filter;
        Ok(CaptureOptions {
            backend: self.backend.clone(),
            filters: Filters {
                pids: self.pids.clone(),
                comms: self.comms.clone(),
                ports: f.ports.clone(),
                protocol: f.protocol,
                ip_version: f.ip_version,
                direction: f.direction,
                cgroups: f
                    .cgroups
                    .iter()
                    .map(|c| cgroup_folder_now(c))
                    .collect::<Result<_, _>>()?,
                containers: f.containers.clone(),
                exclude_comms: f.exclude_comms.clone(),
            },
            columns: self.columns.unwrap_or_default(),
            ring_size: self.ring_size,
            thinning: Thinning {
                sample: self.sample.filter(|&n| n > 1),
                rate_limit: self.rate_limit,
                rate_limit_by: match self.rate_limit_by {
                    Some(RateLimitByArg::Cgroup) => RateLimitBy::Cgroup,
                    _ => RateLimitBy::Process,
                },
            },
        })
    }
}

/// The folder of a `--cgroup` value (already parsed: relative to the
/// cgroup root), which must exist now.
fn cgroup_folder_now(cgroup: &str) -> Result<String, UsageError> {
    let missing = |why: String| {
        UsageError::Message(format!(
            "--cgroup {cgroup:?}: {why} (tracing filters by the cgroup's id, so it must exist when tracing starts)"
        ))
    };
    if cgroup.starts_with("id:") {
        return Err(missing("name a cgroup by its path".into()));
    }
    let root = crate::attribution::cgroup::cgroup2_root()
        .ok_or_else(|| missing("no cgroup v2 hierarchy is mounted here".into()))?;
    cgroup_folder(&root, cgroup)
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| missing(format!("no such cgroup under {}", root.display())))
}

/// The folder of cgroup `text` under `root`, if it exists and stays in it.
pub fn cgroup_folder(root: &std::path::Path, text: &str) -> Option<PathBuf> {
    let t = text.trim();
    if t.split('/').any(|c| c == "..") {
        return None;
    }
    let path = match std::path::Path::new(t).strip_prefix(root) {
        Ok(rel) => root.join(rel),
        Err(_) => root.join(t.trim_start_matches('/')),
    };
    std::fs::symlink_metadata(&path)
        .is_ok_and(|m| m.is_dir())
        .then_some(path)
}

/// `report`'s output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Html,
    Csv,
}

#[derive(Debug, Parser)]
pub struct ReportArgs {
    /// Recordings: a nw/ folder, a run folder, a machine folder, the root
    /// of a <MACHINE_ID>/<TIMESTAMP>/nw/ tree, or nw_*.csv files.
    #[arg(value_name = "PATH", default_value = "./linux_trace_v3_test")]
    pub paths: Vec<PathBuf>,

    /// Only this process (tgid). Repeatable.
    #[arg(long = "pid", value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Only threads with this exact comm (at most 15 bytes). Repeatable.
    #[arg(long = "comm", value_name = "COMM", value_parser = op_filter::parse_comm)]
    pub comms: Vec<String>,

    /// --port, --protocol, --ip-version, --direction, --cgroup,
    /// --container, --exclude-comm: the same words as record's.
    #[command(flatten)]
    pub filter: FilterArgs,

    /// Only ops in this network namespace (its inode, as the Netns column
    /// and /proc/PID/ns/net say). Repeatable.
    #[arg(long = "netns", value_name = "INODE")]
    pub netns: Vec<u64>,

    /// Only this MACHINE_ID folder. Repeatable.
    #[arg(long = "machine", value_name = "ID")]
    pub machines: Vec<String>,

    /// Start of the window: UTC `2026-11-26 05:08:14[.ffffff]` (or with
    /// `T` and `Z`), or a duration after the first row, like `30s`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// End of the window (exclusive), like --since.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Rows per table [default: 10 in text, 50 in HTML, all in JSON/CSV].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,

    /// How tables are ranked; ties keep a stable key order.
    #[arg(long, value_enum, default_value_t = SortKey::Bytes)]
    pub sort: SortKey,

    /// Output format; repeat with --output to write several in one pass.
    /// With --output the file's extension (.txt, .json, .html, .csv)
    /// chooses, and this applies to names without one of them.
    #[arg(short, long, value_enum)]
    pub format: Vec<Format>,

    /// Write to this file instead of stdout. Repeatable.
    #[arg(short, long, value_name = "FILE")]
    pub output: Vec<PathBuf>,

    /// The table `--format csv` writes.
    #[arg(long, value_enum, default_value_t = CsvTable::Processes)]
    pub csv_table: CsvTable,

    /// Compare against this recording (same filters): the deltas of every
    /// table. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub baseline: Vec<PathBuf>,

    /// Conversations tracked exactly before the rest go to "other".
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_conversations: usize,

    /// Read every run's CSV, even where its summary.json matches its files.
    #[arg(long)]
    pub no_summaries: bool,

    /// Memory for merging summaries (a fleet): within it every ranked
    /// table is exact; past it each keeps its heaviest keys, and the
    /// report says which tables are bounded and by how much. Totals stay
    /// exact. K, M, G suffixes.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub memory: u64,
}

/// `nwtrace summarize`'s arguments.
#[derive(Debug, Parser)]
pub struct SummarizeArgs {
    /// Recordings: a nw/ folder, a run folder, a machine folder, or the
    /// root of a <MACHINE_ID>/<TIMESTAMP>/nw/ tree.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// Rewrite summaries that already match their files.
    #[arg(long)]
    pub force: bool,
}

/// Where and how the CSV files are written.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Folder that receives <MACHINE_ID>/<TIMESTAMP>/nw/nw_NNNN.csv
    /// [record's default: ./linux_trace_v3_test; watch writes no files
    /// without it].
    #[arg(short, long)]
    pub output_dir: Option<PathBuf>,

    /// Machine id folder name. Default: /etc/machine-id, else
    /// /var/lib/dbus/machine-id, else the hostname.
    #[arg(long)]
    pub machine_id: Option<String>,

    /// Run folder name instead of the start time (YYYYMMDDTHHMMSSZ), so that
    /// sibling tracers of one capture can share a run folder.
    #[arg(long, value_name = "NAME")]
    pub timestamp: Option<String>,

    /// Start a new CSV file when the current one would pass this size
    /// (bytes, or with K, M, G: powers of 1024).
    #[arg(long, value_name = "SIZE", default_value = "100M", value_parser = parse_size)]
    pub rotate_size: u64,

    /// Keep at most this many CSV files of this run: past it, the oldest
    /// are deleted at each rotation.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_files: Option<u64>,

    /// Keep at most this many bytes of CSV files of this run (K, M, G):
    /// past it, the oldest are deleted at each rotation. The file being
    /// written is never deleted.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Run this shell command for each finished CSV file (rotated, or
    /// closed at the stop), then for the manifest; the file's path is in
    /// "$1" and $NWTRACE_FILE, e.g. 'aws s3 cp "$1" s3://bucket/'. One at
    /// a time, in order, never slowing tracing.
    #[arg(long, value_name = "CMD")]
    pub on_close: Option<String>,

    /// Compress the files: nw_0001.csv.zst or .csv.gz, each flush one
    /// whole zstd frame or gzip member, so a killed run still leaves files
    /// that decompress to whole rows. Sizes and limits count compressed
    /// bytes.
    #[arg(long, value_name = "ALGO", value_enum, default_value_t = Compression::None)]
    pub compress: Compression,
    /// Delete files older than this (e.g. 7d, 12h), oldest first: this
    /// run's (never the file being written), and older runs' in the same
    /// machine folder that are provably nwtrace's (docs/output.md, "Retention").
    /// Checked at start, at each rotation and every minute.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Parser)]
pub struct RecordArgs {
    #[command(flatten)]
    pub output: OutputArgs,

    /// Stop after this long, e.g. 30s, 5m, 1h30m. Default: until Ctrl-C.
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    #[command(flatten)]
    pub capture: CaptureArgs,

    /// Capture, but write no rows: what the capture alone costs (for
    /// bench/). The manifest still counts the events.
    #[arg(long, hide = true)]
    pub discard_rows: bool,

    /// Serve health metrics (Prometheus text) on http://ADDR:PORT/metrics:
    /// rows, events lost, bytes, files, operations by direction and
    /// protocol. Off unless given; binds only this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Config folder (holding nwtrace.toml and conf.d/*.toml) or one file,
    /// instead of /etc/nwtrace [env: NWTRACE_CONFIG]. Settings: flags >
    /// NWTRACE_* environment > files > defaults (nwtrace config shows them).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write it like 30s, 5m or 1h30m"))?;
    if d.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

/// Parses `123`, `64K`, `100M`, `2G` (also `KiB`/`MiB`/`GiB`), in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write it like 4096, 64K, 100M or 2G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("{text:?} has an unknown unit; use K, M or G")),
    };
    let bytes = value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 {
        return Err("must be larger than 0".into());
    }
    Ok(bytes)
}

fn parse_ring_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if !bytes.is_power_of_two() || !(4096..=(1 << 30)).contains(&bytes) {
        return Err(format!(
            "{text:?}: the ring buffer size must be a power of two from 4K to 1G, like 8M or 16M"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Direction, Protocol};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        for bad in ["", "M", "-1", "1.5M", "10X", "0", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("16M"), Ok(16 << 20));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "abc", "0s", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    /// clap's own checks: no two arguments of a command share a name (top
    /// flattens the capture flags and the filter flags).
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "nwtrace",
            "top",
            "--replay",
            "x",
            "--port",
            "6379",
            "--container",
            "3f4e1c2b9a8d",
            "--exclude-comm",
            "sshd",
        ])
        .unwrap();
        let Command::Top(t) = cli.command else {
            panic!("parsed as top");
        };
        assert_eq!(t.capture.filter.ports, [6379]);
        assert_eq!(t.capture.filter.containers, ["3f4e1c2b9a8d"]);
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "nwtrace",
            "record",
            "-o",
            "/tmp/x",
            "--pid",
            "1",
            "--pid",
            "2",
            "--comm",
            "nginx",
            "--duration",
            "10s",
            "--rotate-size",
            "1M",
        ])
        .unwrap();
        let Command::Record(args) = cli.command else {
            panic!("parsed as record");
        };
        assert_eq!(args.capture.pids, [1, 2]);
        assert_eq!(args.capture.comms, ["nginx"]);
        assert_eq!(args.output.rotate_size, 1 << 20);
        assert_eq!(args.capture.backend, "auto");
        assert!(Cli::try_parse_from(["nwtrace", "record", "--backend", "kprobe"]).is_ok());
        assert!(Cli::try_parse_from(["nwtrace", "record", "--backend", "uprobe"]).is_err());
        assert!(Cli::try_parse_from(["nwtrace", "record", "--pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["nwtrace", "record", "--comm", "0123456789abcdef"]).is_err());
        assert!(Cli::try_parse_from(["nwtrace", "record", "--bogus"]).is_err());
    }

    fn capture_of(args: &[&str]) -> Result<CaptureArgs, String> {
        let argv = ["nwtrace", "record"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Record(r),
                ..
            }) => Ok(r.capture),
            Ok(_) => panic!("parsed as record"),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One parser per flag: every command that takes a filter flag
    /// accepts and refuses the same values, with the same message.
    #[test]
    fn every_command_parses_a_filter_value_the_same_way() {
        let commands = ["record", "watch", "top", "report"];
        let outcome = |cmd: &str, flag: &str, value: &str| -> Result<(), String> {
            Cli::try_parse_from(["nwtrace", cmd, flag, value])
                .map(|_| ())
                .map_err(|e| {
                    let text = e.to_string();
                    // The message names the value; clap's usage lines
                    // after it differ per command.
                    text.lines().next().unwrap_or_default().to_string()
                })
        };
        let cases = [
            ("--pid", "42", true),
            ("--pid", "0", false),
            ("--comm", "nginx", true),
            ("--comm", "0123456789abcdef", false),
            ("--port", "443", true),
            ("--port", "0", false),
            ("--port", "65536", false),
            ("--protocol", "udp", true),
            ("--protocol", "sctp", false),
            ("--ip-version", "6", true),
            ("--ip-version", "5", false),
            ("--direction", "receive", true),
            ("--direction", "both", false),
            ("--cgroup", "system.slice/nginx.service", true),
            ("--cgroup", "a/../b", false),
            ("--container", "3f9c1b2a4d5e", true),
            ("--container", "3f9c1b2a4d5", false),
            ("--exclude-comm", "sshd", true),
            ("--exclude-comm", "0123456789abcdef", false),
        ];
        for (flag, value, good) in cases {
            let first = outcome(commands[0], flag, value);
            assert_eq!(first.is_ok(), good, "record {flag} {value}: {first:?}");
            for cmd in &commands[1..] {
                assert_eq!(outcome(cmd, flag, value), first, "{cmd} {flag} {value}");
            }
        }
    }

    #[test]
    fn filters_and_columns_parse() {
        let c = capture_of(&[
            "--port",
            "6379",
            "--port",
            "443",
            "--protocol",
            "tcp",
            "--ip-version",
            "6",
            "--direction",
            "receive",
            "--container",
            "3F9C1B2A4D5E",
            "--exclude-comm",
            "sshd",
            "--columns",
            "cookie,tid",
        ])
        .unwrap();
        let f = &c.filter;
        assert_eq!(f.ports, [6379, 443]);
        assert_eq!(f.protocol, Some(Protocol::Tcp));
        assert_eq!(f.ip_version, Some(6));
        assert_eq!(f.direction, Some(Direction::Receive));
        assert_eq!(f.containers, ["3f9c1b2a4d5e"]);
        assert_eq!(f.exclude_comms, ["sshd"]);
        assert_eq!(c.columns.unwrap().to_string(), "tid,cookie");
        let none = capture_of(&[]).unwrap();
        assert!(none.columns.is_none() && none.filter.is_empty());
        let o = c.options().unwrap();
        assert_eq!(o.filters.ports, [6379, 443]);
        assert_eq!(o.columns.to_string(), "tid,cookie");

        for bad in [
            &["--port", "0"][..],
            &["--port", "65536"],
            &["--port", "http"],
            &["--protocol", "sctp"],
            &["--ip-version", "5"],
            &["--direction", "both"],
            &["--container", "3f9c1b2a4d5"],
            &["--container", "zzzzzzzzzzzzzz"],
            &["--exclude-comm", "0123456789abcdef"],
            &["--columns", "pid"],
            &["--columns", "tid,tid"],
            &["--cgroup", "../etc"],
        ] {
            assert!(capture_of(bad).is_err(), "{bad:?}");
        }
        // A well-formed cgroup that does not exist: refused when tracing
        // starts, not when parsing (report takes it for old recordings).
        let missing = capture_of(&["--cgroup", "no/such/cgroup/nwtrace-test"]).unwrap();
        let e = missing.options().unwrap_err().to_string();
        assert!(
            e.starts_with("--cgroup \"no/such/cgroup/nwtrace-test\": "),
            "{e}"
        );
    }

    #[test]
    fn cgroup_paths_in_either_form() {
        let root = std::env::temp_dir().join(format!("nwtrace-cli-cg-{}", std::process::id()));
        let scope = root.join("system.slice/foo.service");
        std::fs::create_dir_all(&scope).unwrap();
        for text in [
            "system.slice/foo.service",
            "/system.slice/foo.service",
            scope.to_str().unwrap(),
        ] {
            assert_eq!(cgroup_folder(&root, text), Some(scope.clone()), "{text}");
        }
        assert_eq!(cgroup_folder(&root, "/"), Some(root.clone()));
        // The root as the filter parser normalises it.
        assert_eq!(cgroup_folder(&root, ""), Some(root.clone()));
        assert_eq!(cgroup_folder(&root, "system.slice/bar.service"), None);
        assert_eq!(cgroup_folder(&root, "system.slice/../.."), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
