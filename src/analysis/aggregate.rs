//! The one aggregate every view reads: totals, per process, per
//! conversation, per remote endpoint and port, latency, errors, flags,
//! sizes, time series and exemplars.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};

use super::attr::Sym;
use super::capped::{Capped, Entry};
use super::hist::{LatencyHist, SparseHist};
use super::series::{Series, heat_bucket};
use super::{Op, Source};
use crate::schema::{Comm, Direction, Endpoint, Protocol, is_retry_errno};

/// Bounds on the tables (keys tracked before the "other" bucket).
#[derive(Clone, Copy, Debug)]
pub struct AggregateConfig {
    pub max_processes: usize,
    pub max_conversations: usize,
    pub max_remotes: usize,
    pub max_ports: usize,
    pub max_errors: usize,
    pub max_flag_combos: usize,
    /// Containers, cgroups and network namespaces, each.
    pub max_groups: usize,
    /// Distinct peers counted exactly per process, up to this many.
    pub max_peers_per_process: usize,
    pub exemplars: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            max_processes: 512,
            max_conversations: 2048,
            max_remotes: 2048,
            max_ports: 2048,
            max_errors: 1024,
            max_flag_combos: 256,
            max_groups: 512,
            max_peers_per_process: 1024,
            exemplars: 10,
        }
    }
}

impl AggregateConfig {
    /// The bounds to merge partials with: each ranked table holds up to
    /// `keys` keys (or its own bound, if larger) before it keeps its
    /// heaviest (and says it is bounded); `usize::MAX / 4`: no bound.
    /// Merging with room for every key makes the final ranking exact.
    pub fn for_merging(self, keys: usize) -> AggregateConfig {
        AggregateConfig {
            max_processes: self.max_processes.max(keys),
            max_conversations: self.max_conversations.max(keys),
            max_remotes: self.max_remotes.max(keys),
            max_ports: self.max_ports.max(keys),
            max_errors: self.max_errors.max(keys),
            max_flag_combos: self.max_flag_combos.max(keys),
            ..self
        }
    }
}

/// How an op's latency is classed; see [`Op::latency_class`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LatClass {
    Send,
    ReceiveBlocking,
    ReceiveNonblocking,
}

impl LatClass {
    pub const ALL: [LatClass; 3] = [
        LatClass::Send,
        LatClass::ReceiveBlocking,
        LatClass::ReceiveNonblocking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LatClass::Send => "send",
            LatClass::ReceiveBlocking => "receive_blocking",
            LatClass::ReceiveNonblocking => "receive_nonblocking",
        }
    }
}

/// Exact totals, never capped.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    pub ops: u64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub retry_errors: u64,
    pub hard_errors: u64,
    /// Successful 0-byte TCP receives (end of stream).
    pub end_of_stream: u64,
    /// Ops whose latency is unknown (start not seen).
    pub latency_unknown: u64,
    /// Ops whose remote endpoint is unknown.
    pub unknown_peer: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

/// What [`Totals::add`] reads of an op: a fifth of its size, for a
/// caller that keeps ops waiting (the summary's per-file figures).
#[derive(Clone, Copy, Debug)]
pub struct TotalsOp {
    pub ts_ns: i64,
    pub size: u64,
    pub errno: Option<i32>,
    pub direction: Direction,
    pub end_of_stream: bool,
    pub latency_unknown: bool,
    pub unknown_peer: bool,
}

impl TotalsOp {
    #[inline]
    pub fn of(op: &Op) -> TotalsOp {
        TotalsOp {
            ts_ns: op.ts_ns,
            size: op.size,
            errno: op.errno,
            direction: op.direction,
            end_of_stream: op.is_end_of_stream(),
            latency_unknown: op.latency_ns.is_none(),
            unknown_peer: op.remote.is_none(),
        }
    }
}

impl Totals {
    #[inline]
    pub fn add(&mut self, op: &Op) {
        self.add_totals_op(&TotalsOp::of(op));
    }

    #[inline]
    pub fn add_totals_op(&mut self, op: &TotalsOp) {
        self.ops += 1;
        match op.direction {
            Direction::Send => {
                self.sends += 1;
                self.bytes_sent += op.size;
            }
            Direction::Receive => {
                self.receives += 1;
                self.bytes_received += op.size;
            }
        }
        if let Some(e) = op.errno {
            self.errors += 1;
            if is_retry_errno(e) {
                self.retry_errors += 1;
            } else {
                self.hard_errors += 1;
            }
        }
        self.end_of_stream += u64::from(op.end_of_stream);
        self.latency_unknown += u64::from(op.latency_unknown);
        self.unknown_peer += u64::from(op.unknown_peer);
        self.first_ns = Some(self.first_ns.map_or(op.ts_ns, |f| f.min(op.ts_ns)));
        self.last_ns = Some(self.last_ns.map_or(op.ts_ns, |l| l.max(op.ts_ns)));
    }

    pub fn merge(&mut self, o: &Totals) {
        self.ops += o.ops;
        self.sends += o.sends;
        self.receives += o.receives;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.errors += o.errors;
        self.retry_errors += o.retry_errors;
        self.hard_errors += o.hard_errors;
        self.end_of_stream += o.end_of_stream;
        self.latency_unknown += o.latency_unknown;
        self.unknown_peer += o.unknown_peer;
        self.first_ns = min_opt(self.first_ns, o.first_ns);
        self.last_ns = max_opt(self.last_ns, o.last_ns);
    }
}

/// The smaller of two optional times; either alone when the other is None.
pub(crate) fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The larger of two optional times; either alone when the other is None.
pub(crate) fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Per-key counters shared by the tables: ops, bytes and errors by
/// direction, first and last seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Indexed by `Direction::index()`: send, receive.
    pub ops: [u64; 2],
    pub bytes: [u64; 2],
    pub retry_errors: u64,
    pub hard_errors: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

impl Counters {
    #[inline]
    fn add(&mut self, op: &Op) {
        let d = op.direction.index();
        self.ops[d] += 1;
        self.bytes[d] += op.size;
        if let Some(e) = op.errno {
            if is_retry_errno(e) {
                self.retry_errors += 1;
            } else {
                self.hard_errors += 1;
            }
        }
        self.first_ns = Some(self.first_ns.map_or(op.ts_ns, |f| f.min(op.ts_ns)));
        self.last_ns = Some(self.last_ns.map_or(op.ts_ns, |l| l.max(op.ts_ns)));
    }

    fn merge(&mut self, o: &Counters) {
        for i in 0..2 {
            self.ops[i] += o.ops[i];
            self.bytes[i] += o.bytes[i];
        }
        self.retry_errors += o.retry_errors;
        self.hard_errors += o.hard_errors;
        self.first_ns = min_opt(self.first_ns, o.first_ns);
        self.last_ns = max_opt(self.last_ns, o.last_ns);
    }

    pub fn total_ops(&self) -> u64 {
        self.ops[0] + self.ops[1]
    }

    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    pub fn errors(&self) -> u64 {
        self.retry_errors + self.hard_errors
    }

    fn weight(&self) -> u128 {
        u128::from(self.total_bytes()) + u128::from(self.total_ops())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcKey {
    /// [`Op::machine`]: a pid is only unique on its machine.
    pub machine: u32,
    pub pid: u32,
    pub comm: Comm,
}

#[derive(Clone, Debug, Default)]
pub struct ProcStats {
    pub c: Counters,
    /// Distinct remote endpoints (unknown peers not counted), up to the
    /// configured bound; `peers_capped` says the count stopped there.
    pub peers: FxHashSet<Endpoint>,
    pub peers_capped: bool,
    /// Indexed like `LatClass::ALL`.
    pub latency: [SparseHist; 3],
}

impl Entry for ProcStats {
    fn weight(&self) -> u128 {
        self.c.weight()
    }
    fn counts(&self) -> (u64, u64) {
        (self.c.total_ops(), self.c.total_bytes())
    }
    fn merge(&mut self, o: &Self) {
        self.c.merge(&o.c);
        self.peers.extend(o.peers.iter().copied());
        self.peers_capped |= o.peers_capped;
        for i in 0..3 {
            self.latency[i].merge(&o.latency[i]);
        }
    }
    fn absorb(&mut self, o: &Self) {
        self.c.merge(&o.c);
    }
}

impl ProcStats {
    /// Counts `op` in a group table: counters, latency and distinct peers
    /// (peers checked per op here, bounded like a process's).
    #[inline]
    fn add_group(&mut self, op: &Op, class: LatClass) {
        self.c.add(op);
        if let Some(lat) = op.latency_ns {
            self.latency[class as usize].record(lat);
        }
        if let Some(r) = op.remote
            && !self.peers_capped
            && !self.peers.contains(&r)
        {
            if self.peers.len() < 1024 {
                self.peers.insert(r);
            } else {
                self.peers_capped = true;
            }
        }
    }

    /// Every receive, blocking or not.
    pub fn receive_latency(&self) -> SparseHist {
        let mut out = self.latency[1].clone();
        out.merge(&self.latency[2]);
        out
    }

    /// Sends and receives.
    pub fn all_latency(&self) -> SparseHist {
        let mut out = self.receive_latency();
        out.merge(&self.latency[0]);
        out
    }
}

/// A conversation: both directions of a socket fall on one key.
///
/// Without socket cookies a socket is known by its process and endpoints:
/// (machine, protocol, pid, comm, local, remote). With the `Socket Cookie`
/// column, one cookie is one socket and one conversation, whatever process
/// or peer used it: a socket shared after fork stays one, and a new socket
/// that reuses the pid, fd and ports of an old one is another. Equality,
/// hashing and order then look at (machine, protocol, cookie) only; the
/// other fields hold what the first op of the socket said (the first in
/// input order), for display, and [`ConvStats::shared`] says when later
/// ops said otherwise.
#[derive(Clone, Copy, Debug)]
pub struct ConvKey {
    pub machine: u32,
    pub protocol: Protocol,
    pub pid: u32,
    pub comm: Comm,
    pub local: Endpoint,
    /// `None`: the peer was unknown (its own bucket, never a guess).
    pub remote: Option<Endpoint>,
    /// The socket cookie, when the recording or capture has it.
    pub cookie: Option<u64>,
}

impl ConvKey {
    pub fn of(op: &Op) -> ConvKey {
        ConvKey {
            machine: op.machine,
            protocol: op.protocol,
            pid: op.pid,
            comm: op.comm,
            local: op.local,
            remote: op.remote,
            cookie: op.attr.cookie,
        }
    }

    /// Is `op` on this conversation?
    pub fn holds(&self, op: &Op) -> bool {
        *self == ConvKey::of(op)
    }

    /// Does `o` show the same process and endpoints (what a cookie key
    /// does not compare)?
    fn same_view(&self, o: &ConvKey) -> bool {
        (self.pid, self.comm, self.local, self.remote) == (o.pid, o.comm, o.local, o.remote)
    }

    #[allow(clippy::type_complexity)]
    fn identity(
        &self,
    ) -> (
        u32,
        Protocol,
        Option<u64>,
        Option<(u32, &Comm, Endpoint, Option<Endpoint>)>,
    ) {
        let rest = match self.cookie {
            Some(_) => None,
            None => Some((self.pid, &self.comm, self.local, self.remote)),
        };
        (self.machine, self.protocol, self.cookie, rest)
    }
}

impl PartialEq for ConvKey {
    fn eq(&self, o: &Self) -> bool {
        self.identity() == o.identity()
    }
}

impl Eq for ConvKey {}

impl std::hash::Hash for ConvKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl Ord for ConvKey {
    /// Cookie-less keys first (in their field order), as before cookies.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        let a = self.identity();
        let b = o.identity();
        (a.0, a.1, a.2.is_some(), a.3, a.2).cmp(&(b.0, b.1, b.2.is_some(), b.3, b.2))
    }
}

impl PartialOrd for ConvKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Clone, Debug, Default)]
pub struct ConvStats {
    pub c: Counters,
    pub end_of_stream: bool,
    /// Indexed by `Direction::index()`.
    pub latency: [SparseHist; 2],
    /// A cookie conversation: the start time and the process and
    /// endpoints of its earliest op (ties: the smallest), whatever order
    /// the ops or partials came in. Show these (see [`ConvStats::shown`]):
    /// the map's key holds whichever op came first to this aggregate.
    pub first_view: Option<(i64, ConvKey)>,
    /// A cookie conversation whose ops came from more than one process,
    /// or (unconnected UDP) went to more than one peer.
    pub shared: bool,
}

impl ConvStats {
    fn note_view(&mut self, ts: i64, k: &ConvKey) {
        match &self.first_view {
            None => self.first_view = Some((ts, *k)),
            Some((t, v)) => {
                self.shared |= !v.same_view(k);
                let view = |k: &ConvKey| (k.pid, k.comm, k.local, k.remote);
                if (ts, view(k)) < (*t, view(v)) {
                    self.first_view = Some((ts, *k));
                }
            }
        }
    }

    /// The key to show for the conversation stored under `key`: for a
    /// cookie conversation, its earliest op's process and endpoints.
    pub fn shown(&self, key: &ConvKey) -> ConvKey {
        self.first_view.map_or(*key, |(_, k)| k)
    }
}

impl Entry for ConvStats {
    fn weight(&self) -> u128 {
        self.c.weight()
    }
    fn counts(&self) -> (u64, u64) {
        (self.c.total_ops(), self.c.total_bytes())
    }
    fn merge(&mut self, o: &Self) {
        self.c.merge(&o.c);
        self.end_of_stream |= o.end_of_stream;
        for i in 0..2 {
            self.latency[i].merge(&o.latency[i]);
        }
        self.shared |= o.shared;
        if let Some((t, v)) = &o.first_view {
            self.note_view(*t, v);
        }
    }
    fn absorb(&mut self, o: &Self) {
        self.c.merge(&o.c);
        self.end_of_stream |= o.end_of_stream;
    }
}

/// A group of ops by one attribution column (container, cgroup, netns),
/// per machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey<T> {
    pub machine: u32,
    pub value: T,
}

#[derive(Clone, Debug, Default)]
pub struct EndpointStats {
    pub c: Counters,
}

impl Entry for EndpointStats {
    fn weight(&self) -> u128 {
        self.c.weight()
    }
    fn counts(&self) -> (u64, u64) {
        (self.c.total_ops(), self.c.total_bytes())
    }
    fn merge(&mut self, o: &Self) {
        self.c.merge(&o.c);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRole {
    Local,
    Remote,
}

impl PortRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PortRole::Local => "local",
            PortRole::Remote => "remote",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub protocol: Protocol,
    pub role: PortRole,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ErrKey {
    pub errno: i32,
    pub direction: Direction,
    pub machine: u32,
    pub pid: u32,
    pub comm: Comm,
}

impl Entry for Counters {
    fn weight(&self) -> u128 {
        Counters::weight(self)
    }
    fn counts(&self) -> (u64, u64) {
        (self.total_ops(), self.total_bytes())
    }
    fn merge(&mut self, o: &Self) {
        Counters::merge(self, o);
    }
}

/// An op kept as an example, with where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exemplar {
    pub op: Op,
    pub source: Source,
}

/// The `n` largest by a value; ties keep the earliest source.
#[derive(Clone, Debug, Default)]
pub struct TopN {
    n: usize,
    items: Vec<(u64, Exemplar)>,
}

impl TopN {
    /// A stored list (best first, at most `n`); `None` if it is not in
    /// the order `offer` keeps.
    pub fn from_items(n: usize, items: Vec<(u64, Exemplar)>) -> Option<Self> {
        let ordered = items
            .windows(2)
            .all(|w| Self::better(&w[0], &w[1]) == std::cmp::Ordering::Less);
        (ordered && items.len() <= n).then_some(TopN { n, items })
    }

    /// Rewrites every exemplar's source (a file numbering of one run to
    /// the reader's) and machine.
    pub fn remap(&mut self, mut f: impl FnMut(&mut Exemplar)) {
        for (_, e) in &mut self.items {
            f(e);
        }
        self.items.sort_by(Self::better);
    }

    fn new(n: usize) -> Self {
        TopN {
            n,
            items: Vec::new(),
        }
    }

    fn better(a: &(u64, Exemplar), b: &(u64, Exemplar)) -> std::cmp::Ordering {
        b.0.cmp(&a.0).then_with(|| a.1.source.cmp(&b.1.source))
    }

    #[inline]
    fn offer(&mut self, value: u64, op: &Op, source: Source) {
        if self.items.len() >= self.n
            && self
                .items
                .last()
                .is_some_and(|l| l.0 > value || (l.0 == value && l.1.source <= source))
        {
            return;
        }
        // Into its place in the sorted list (a sort per offer was a few
        // percent of the summary's cost while a run's slowest ops change).
        let item = (value, Exemplar { op: *op, source });
        let at = self
            .items
            .partition_point(|x| Self::better(x, &item) == std::cmp::Ordering::Less);
        self.items.insert(at, item);
        self.items.truncate(self.n);
    }

    fn merge(&mut self, o: &TopN) {
        self.items.extend(o.items.iter().copied());
        self.items.sort_by(Self::better);
        self.items.truncate(self.n);
    }

    pub fn items(&self) -> &[(u64, Exemplar)] {
        &self.items
    }
}

/// What one row says about who talked to whom: the fields a conversation,
/// its process, its remote endpoint and its ports are keyed by, all
/// compared (a cookie conversation can hold several of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RowView {
    machine: u32,
    protocol: Protocol,
    pid: u32,
    comm: Comm,
    local: Endpoint,
    remote: Option<Endpoint>,
    cookie: Option<u64>,
}

impl RowView {
    #[inline]
    fn of(op: &Op) -> RowView {
        RowView {
            machine: op.machine,
            protocol: op.protocol,
            pid: op.pid,
            comm: op.comm,
            local: op.local,
            remote: op.remote,
            cookie: op.attr.cookie,
        }
    }

    fn conv_key(&self) -> ConvKey {
        ConvKey {
            machine: self.machine,
            protocol: self.protocol,
            pid: self.pid,
            comm: self.comm,
            local: self.local,
            remote: self.remote,
            cookie: self.cookie,
        }
    }
}

/// A row view's ops since the last fold: one hash lookup per op here
/// instead of five (conversation, process, remote, two ports), and one
/// latency record instead of two. [`Aggregate::flush`] folds these into
/// the tables; the fold is what `add` used to do per op, summed, so the
/// tables come out the same.
#[derive(Clone, Debug, Default)]
struct Staged {
    c: Counters,
    end_of_stream: bool,
    /// Indexed like `LatClass::ALL`.
    latency: [SparseHist; 3],
}

/// Row views staged before a fold: bounds the staging memory (a few
/// hundred bytes a view) while a hot conversation stays staged.
const STAGED_VIEWS: usize = 1024;
/// Row views staged in front of the map, found by comparing the view
/// alone (no hash): a host's rows mostly come from a few busy
/// conversations, whose ops then skip the map's hash and probe (the
/// ping-pong's two sockets: issue #20). A view that falls out goes into
/// the map, so the fold sees the same sums.
const HOT_VIEWS: usize = 4;

impl Staged {
    fn merge(&mut self, o: &Staged) {
        self.c.merge(&o.c);
        self.end_of_stream |= o.end_of_stream;
        for (a, b) in self.latency.iter_mut().zip(&o.latency) {
            a.merge(b);
        }
    }
}

/// Counts by direction x protocol x IP version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Overview {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
}

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub config: AggregateConfig,
    pub totals: Totals,
    pub overview: BTreeMap<(Direction, Protocol, u8), Overview>,
    /// 3 significant digits.
    pub latency: BTreeMap<(LatClass, Protocol), LatencyHist>,
    pub processes: Capped<ProcKey, ProcStats>,
    pub conversations: Capped<ConvKey, ConvStats>,
    /// Ops by container (`Container ID` column): the empty id is the host.
    /// Only ops that have the column count here.
    pub containers: Capped<GroupKey<Sym>, ProcStats>,
    /// Ops by cgroup path (`Cgroup` column).
    pub cgroups: Capped<GroupKey<Sym>, ProcStats>,
    /// Ops by network namespace inode (`Netns` column).
    pub netns: Capped<GroupKey<u64>, ProcStats>,
    /// Remote endpoints; `None` is the unknown-peer bucket.
    pub remotes: Capped<(Protocol, Option<Endpoint>), EndpointStats>,
    pub ports: Capped<PortKey, Counters>,
    pub errors: Capped<ErrKey, Counters>,
    /// Flag combinations by direction; only ops that carried flags.
    pub flag_combos: Capped<(Direction, u32), Counters>,
    /// Ops with each single flag bit, by direction.
    pub flag_bits: [[u64; 32]; 2],
    /// Ops that carried no flags (write/read/io_uring, or 0), by direction.
    pub no_flags: [u64; 2],
    /// Size histogram by direction: bucket 0 holds 0 bytes, bucket `i`
    /// holds `[2^(i-1), 2^i)`.
    pub sizes: [[u64; 65]; 2],
    pub series: Series,
    pub slowest: TopN,
    pub largest: TopN,
    /// Ops not yet in the tables above; see [`Aggregate::flush`].
    staged: FxHashMap<RowView, Staged>,
    /// The most recent views' staged ops, before `staged`: see
    /// [`HOT_VIEWS`].
    hot: Vec<(RowView, Staged)>,
    /// The hot entry the next miss replaces (round robin).
    hot_next: usize,
    /// What [`Aggregate::add_unwritten`] counted (already in the totals
    /// and tables).
    pub unwritten: Counters,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate::new(AggregateConfig::default())
    }
}

pub fn size_bucket(size: u64) -> usize {
    (64 - size.leading_zeros()) as usize
}

impl Aggregate {
    pub fn new(config: AggregateConfig) -> Self {
        Aggregate {
            config,
            totals: Totals::default(),
            overview: BTreeMap::new(),
            latency: BTreeMap::new(),
            processes: Capped::new(config.max_processes),
            conversations: Capped::new(config.max_conversations),
            containers: Capped::new(config.max_groups),
            cgroups: Capped::new(config.max_groups),
            netns: Capped::new(config.max_groups),
            remotes: Capped::new(config.max_remotes),
            ports: Capped::new(config.max_ports),
            errors: Capped::new(config.max_errors),
            flag_combos: Capped::new(config.max_flag_combos),
            flag_bits: [[0; 32]; 2],
            no_flags: [0; 2],
            sizes: [[0; 65]; 2],
            series: Series::default(),
            slowest: TopN::new(config.exemplars),
            largest: TopN::new(config.exemplars),
            staged: FxHashMap::default(),
            hot: Vec::with_capacity(HOT_VIEWS),
            hot_next: 0,
            unwritten: Counters::default(),
        }
    }

    /// Adds one op. `source` locates it for the exemplars.
    pub fn add(&mut self, op: &Op, source: Source) {
        self.totals.add(op);
        let d = op.direction.index();
        let o = self
            .overview
            .entry((op.direction, op.protocol, op.ip_version))
            .or_default();
        o.ops += 1;
        o.bytes += op.size;
        o.errors += u64::from(op.errno.is_some());

        let class = op.latency_class();
        if let Some(lat) = op.latency_ns {
            self.latency
                .entry((class, op.protocol))
                .or_insert_with(|| LatencyHist::new(3))
                .record(lat);
        }

        let staged = self.hot_staged(RowView::of(op));
        staged.c.add(op);
        staged.end_of_stream |= op.is_end_of_stream();
        if let Some(lat) = op.latency_ns {
            staged.latency[class as usize].record(lat);
        }

        if let Some(g) = op.attr.container {
            self.containers
                .entry(GroupKey {
                    machine: op.machine,
                    value: g,
                })
                .add_group(op, class);
        }
        if let Some(g) = op.attr.cgroup {
            self.cgroups
                .entry(GroupKey {
                    machine: op.machine,
                    value: g,
                })
                .add_group(op, class);
        }
        if let Some(n) = op.attr.netns {
            self.netns
                .entry(GroupKey {
                    machine: op.machine,
                    value: n,
                })
                .add_group(op, class);
        }

        if let Some(errno) = op.errno {
            self.errors
                .entry(ErrKey {
                    errno,
                    direction: op.direction,
                    machine: op.machine,
                    pid: op.pid,
                    comm: op.comm,
                })
                .add(op);
        }

        match op.msg_flags {
            Some(f) if f != 0 => {
                self.flag_combos.entry((op.direction, f)).add(op);
                let mut bits = f;
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    self.flag_bits[d][b] += 1;
                    bits &= bits - 1;
                }
            }
            _ => self.no_flags[d] += 1,
        }
        self.sizes[d][size_bucket(op.size)] += 1;

        let pt = self.series.point(op.ts_ns);
        pt.ops[d] += 1;
        pt.bytes[d] += op.size;
        if let Some(e) = op.errno {
            if is_retry_errno(e) {
                pt.retry_errors += 1;
            } else {
                pt.hard_errors += 1;
            }
        }
        if let Some(lat) = op.latency_ns {
            if pt.heat.is_empty() {
                pt.heat = vec![0; super::series::HEAT_BUCKETS];
            }
            pt.heat[heat_bucket(lat)] += 1;
            self.slowest.offer(lat, op, source);
        }
        self.largest.offer(op.size, op, source);
    }

    /// Adds `n` ops like `op` (its size aside), `bytes` in all, that the
    /// capture counted but did not write (`--sample`, `--rate-limit`):
    /// into the totals and the per-key tables (processes, conversations,
    /// remotes, ports, errors, overview), so that those stay exact; not
    /// into the distributions (latency, sizes, flags, series, exemplars),
    /// which stay those of the written, sampled ops.
    pub fn add_unwritten(&mut self, op: &Op, n: u64, bytes: u64) {
        if n == 0 {
            return;
        }
        let d = op.direction.index();
        let mut c = Counters::default();
        c.ops[d] = n;
        c.bytes[d] = bytes;
        let mut t = Totals {
            ops: n,
            first_ns: Some(op.ts_ns),
            last_ns: Some(op.ts_ns),
            ..Totals::default()
        };
        match op.direction {
            Direction::Send => (t.sends, t.bytes_sent) = (n, bytes),
            Direction::Receive => (t.receives, t.bytes_received) = (n, bytes),
        }
        if let Some(e) = op.errno {
            t.errors = n;
            if is_retry_errno(e) {
                (t.retry_errors, c.retry_errors) = (n, n);
            } else {
                (t.hard_errors, c.hard_errors) = (n, n);
            }
        }
        t.end_of_stream = if op.is_end_of_stream() { n } else { 0 };
        t.unknown_peer = if op.remote.is_none() { n } else { 0 };
        c.first_ns = t.first_ns;
        c.last_ns = t.last_ns;
        self.totals.merge(&t);
        self.unwritten.merge(&c);
        let o = self
            .overview
            .entry((op.direction, op.protocol, op.ip_version))
            .or_default();
        o.ops += n;
        o.bytes += bytes;
        o.errors += t.errors;
        let conv = self.conversations.entry(ConvKey::of(op));
        let new_conversation = conv.c.total_ops() == 0;
        conv.c.merge(&c);
        conv.end_of_stream |= op.is_end_of_stream();
        let max_peers = self.config.max_peers_per_process;
        let p = self.processes.entry(ProcKey {
            machine: op.machine,
            pid: op.pid,
            comm: op.comm,
        });
        p.c.merge(&c);
        if let (Some(r), true) = (op.remote, new_conversation) {
            if p.peers.len() < max_peers {
                p.peers.insert(r);
            } else if !p.peers.contains(&r) {
                p.peers_capped = true;
            }
        }
        self.remotes.entry((op.protocol, op.remote)).c.merge(&c);
        if let Some(r) = op.remote {
            self.ports
                .entry(PortKey {
                    protocol: op.protocol,
                    role: PortRole::Remote,
                    port: r.port,
                })
                .merge(&c);
        }
        self.ports
            .entry(PortKey {
                protocol: op.protocol,
                role: PortRole::Local,
                port: op.local.port,
            })
            .merge(&c);
        if let Some(errno) = op.errno {
            self.errors
                .entry(ErrKey {
                    errno,
                    direction: op.direction,
                    machine: op.machine,
                    pid: op.pid,
                    comm: op.comm,
                })
                .merge(&c);
        }
    }

    /// Puts the staged ops into the tables. Readers of the tables call
    /// this (or [`Aggregate::finish`]) first; `top` does before each
    /// frame.
    pub fn flush(&mut self) {
        self.fold_staged();
        self.series.flush();
    }

    /// The staged entry of `view`: one of the hot ones, or a new hot one
    /// (the one it replaces goes into the map).
    #[inline]
    fn hot_staged(&mut self, view: RowView) -> &mut Staged {
        if let Some(i) = self.hot.iter().position(|(v, _)| *v == view) {
            return &mut self.hot[i].1;
        }
        let i = if self.hot.len() < HOT_VIEWS {
            self.hot.push((view, Staged::default()));
            self.hot.len() - 1
        } else {
            let i = self.hot_next;
            self.hot_next = (i + 1) % HOT_VIEWS;
            let (old_view, old) = std::mem::replace(&mut self.hot[i], (view, Staged::default()));
            self.stage(old_view, old);
            i
        };
        &mut self.hot[i].1
    }

    /// Puts one view's staged ops into the map, folding the map (not the
    /// hot views) when it is full.
    fn stage(&mut self, view: RowView, s: Staged) {
        self.stage_only(view, s);
        if self.staged.len() >= STAGED_VIEWS {
            self.fold_map();
        }
    }

    fn stage_only(&mut self, view: RowView, s: Staged) {
        match self.staged.entry(view) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&s),
        }
    }

    fn fold_staged(&mut self) {
        let mut hot = std::mem::take(&mut self.hot);
        for (view, s) in hot.drain(..) {
            self.stage_only(view, s);
        }
        // Keep the allocation.
        self.hot = hot;
        self.hot_next = 0;
        self.fold_map();
    }

    fn fold_map(&mut self) {
        let mut staged = std::mem::take(&mut self.staged);
        for (view, s) in staged.drain() {
            self.fold(&view, &s);
        }
        // Keep the allocation for the next ops.
        self.staged = staged;
    }

    /// One row view's staged ops into the conversation, process, remote
    /// and port tables.
    fn fold(&mut self, view: &RowView, s: &Staged) {
        let key = view.conv_key();
        let c = self.conversations.entry(key);
        if key.cookie.is_some()
            && let Some(first) = s.c.first_ns
        {
            // The earliest op of this view is the one that could be the
            // conversation's first; `note_view` keeps the minimum.
            c.note_view(first, &key);
        }
        c.c.merge(&s.c);
        c.end_of_stream |= s.end_of_stream;
        c.latency[0].merge(&s.latency[LatClass::Send as usize]);
        c.latency[1].merge(&s.latency[LatClass::ReceiveBlocking as usize]);
        c.latency[1].merge(&s.latency[LatClass::ReceiveNonblocking as usize]);

        let max_peers = self.config.max_peers_per_process;
        let p = self.processes.entry(ProcKey {
            machine: view.machine,
            pid: view.pid,
            comm: view.comm,
        });
        p.c.merge(&s.c);
        // Every view offers its peer: the set is the process's distinct
        // remotes, whatever order the views fold in.
        if let Some(r) = view.remote {
            if p.peers.len() < max_peers {
                p.peers.insert(r);
            } else if !p.peers.contains(&r) {
                p.peers_capped = true;
            }
        }
        for i in 0..3 {
            p.latency[i].merge(&s.latency[i]);
        }

        self.remotes
            .entry((view.protocol, view.remote))
            .c
            .merge(&s.c);
        if let Some(r) = view.remote {
            self.ports
                .entry(PortKey {
                    protocol: view.protocol,
                    role: PortRole::Remote,
                    port: r.port,
                })
                .merge(&s.c);
        }
        self.ports
            .entry(PortKey {
                protocol: view.protocol,
                role: PortRole::Local,
                port: view.local.port,
            })
            .merge(&s.c);
    }

    /// Adds everything `o` counted. Merging the partials of any split of
    /// the ops gives what one pass over all of them gives (exactly, as
    /// long as no table overflowed its bound).
    pub fn merge(&mut self, o: &Aggregate) {
        self.totals.merge(&o.totals);
        for (k, v) in &o.overview {
            let e = self.overview.entry(*k).or_default();
            e.ops += v.ops;
            e.bytes += v.bytes;
            e.errors += v.errors;
        }
        for (k, v) in &o.latency {
            match self.latency.get_mut(k) {
                Some(h) => h.merge(v),
                None => {
                    self.latency.insert(*k, v.clone());
                }
            }
        }
        self.processes.merge(&o.processes);
        self.conversations.merge(&o.conversations);
        self.containers.merge(&o.containers);
        self.cgroups.merge(&o.cgroups);
        self.netns.merge(&o.netns);
        self.remotes.merge(&o.remotes);
        self.ports.merge(&o.ports);
        self.errors.merge(&o.errors);
        self.flag_combos.merge(&o.flag_combos);
        for (view, s) in o.staged.iter().chain(o.hot.iter().map(|(v, s)| (v, s))) {
            self.fold(view, s);
        }
        self.unwritten.merge(&o.unwritten);
        for d in 0..2 {
            for b in 0..32 {
                self.flag_bits[d][b] += o.flag_bits[d][b];
            }
            self.no_flags[d] += o.no_flags[d];
            for b in 0..65 {
                self.sizes[d][b] += o.sizes[d][b];
            }
        }
        self.series.merge(&o.series);
        self.slowest.merge(&o.slowest);
        self.largest.merge(&o.largest);
    }

    /// Changes the tables' bounds (from the next prune on); see
    /// [`Capped::set_cap`].
    pub fn set_caps(&mut self, config: AggregateConfig) {
        self.config = config;
        self.processes.set_cap(config.max_processes);
        self.conversations.set_cap(config.max_conversations);
        self.remotes.set_cap(config.max_remotes);
        self.ports.set_cap(config.max_ports);
        self.errors.set_cap(config.max_errors);
        self.flag_combos.set_cap(config.max_flag_combos);
    }

    /// Why this aggregate is not exact (a table evicted a key, or a
    /// process's peer set stopped at its bound), or `None`: merging it
    /// with others then gives exactly what one pass over all their ops
    /// gives.
    /// Whether a table evicted keys, so that its per-key figures are lower
    /// bounds (a process's capped peer set leaves its counts exact).
    pub fn evicted_keys(&self) -> bool {
        self.processes.evictions()
            + self.conversations.evictions()
            + self.remotes.evictions()
            + self.ports.evictions()
            + self.errors.evictions()
            + self.flag_combos.evictions()
            > 0
    }

    pub fn inexact(&self) -> Option<String> {
        let tables = [
            ("processes", self.processes.evictions()),
            ("conversations", self.conversations.evictions()),
            ("remote endpoints", self.remotes.evictions()),
            ("ports", self.ports.evictions()),
            ("errors", self.errors.evictions()),
            ("flag combinations", self.flag_combos.evictions()),
        ];
        for (name, n) in tables {
            if n > 0 {
                return Some(format!("its {name} table overflowed ({n} keys evicted)"));
            }
        }
        if self.processes.iter().any(|(_, p)| p.peers_capped) {
            return Some(format!(
                "a process had more than {} peers",
                self.config.max_peers_per_process
            ));
        }
        None
    }

    /// The tables that evicted keys (their listed keys are the heaviest,
    /// with error bounds), and "process peers" when a process's peer set
    /// stopped at its bound.
    pub fn bounded_tables(&self) -> Vec<String> {
        let tables = [
            ("processes", self.processes.evictions()),
            ("conversations", self.conversations.evictions()),
            ("remote endpoints", self.remotes.evictions()),
            ("ports", self.ports.evictions()),
            ("errors", self.errors.evictions()),
            ("flag combinations", self.flag_combos.evictions()),
        ];
        let mut out: Vec<String> = tables
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, _)| name.to_string())
            .collect();
        if self.processes.iter().any(|(_, p)| p.peers_capped) {
            out.push("process peers".into());
        }
        out
    }

    /// Brings every table within its bound and flushes the series; call
    /// before reading.
    pub fn finish(&mut self) {
        self.fold_staged();
        self.processes.finish();
        self.conversations.finish();
        self.containers.finish();
        self.cgroups.finish();
        self.netns.finish();
        self.remotes.finish();
        self.ports.finish();
        self.errors.finish();
        self.flag_combos.finish();
        self.series.flush();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fmt::Write;
    use std::net::{IpAddr, Ipv4Addr};

    pub struct Rng(pub u64);
    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    pub fn random_op(rng: &mut Rng) -> Op {
        let pid = 100 + rng.below(5) as u32;
        let comm = Comm::from_text(format!("p{}", rng.below(3)).as_bytes());
        let remote = (rng.below(10) != 0).then(|| Endpoint {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, rng.below(4) as u8)),
            port: 8000 + rng.below(3) as u16,
        });
        let errno = match rng.below(20) {
            0 => Some(11),
            1 => Some(104),
            2 => Some(512),
            _ => None,
        };
        Op {
            machine: 0,
            ts_ns: 1_700_000_000_000_000_000 + rng.below(600_000_000_000) as i64,
            pid,
            comm,
            protocol: if rng.below(2) == 0 {
                Protocol::Tcp
            } else {
                Protocol::Udp
            },
            ip_version: 4,
            local: Endpoint {
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 40000 + rng.below(4) as u16,
            },
            remote,
            size: if errno.is_some() {
                0
            } else {
                rng.below(70_000)
            },
            direction: if rng.below(2) == 0 {
                Direction::Send
            } else {
                Direction::Receive
            },
            latency_ns: (rng.below(8) != 0).then(|| {
                let bits = rng.below(34) + 1;
                rng.below(1 << bits)
            }),
            errno,
            msg_flags: match rng.below(4) {
                0 => None,
                1 => Some(0x40),
                2 => Some(0x4000 | 0x8000),
                _ => Some(0x2),
            },
            attr: Default::default(),
        }
    }

    /// Everything an aggregate says, in a canonical order.
    pub fn fingerprint(a: &Aggregate) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{:?}", a.totals);
        let _ = writeln!(s, "{:?}", a.overview);
        for (k, h) in &a.latency {
            let _ = writeln!(s, "{k:?} {:?}", h.summary());
        }
        let sum = |h: &SparseHist| h.summary();
        let mut procs: Vec<_> = a.processes.iter().collect();
        procs.sort_by_key(|(k, _)| **k);
        for (k, v) in procs {
            let mut peers: Vec<_> = v.peers.iter().collect();
            peers.sort();
            let lats: Vec<_> = v.latency.iter().map(sum).collect();
            let _ = writeln!(s, "{k:?} {:?} {peers:?} {lats:?}", v.c);
        }
        let mut convs: Vec<_> = a.conversations.iter().collect();
        convs.sort_by_key(|(k, _)| **k);
        for (k, v) in convs {
            let lats: Vec<_> = v.latency.iter().map(sum).collect();
            let _ = writeln!(
                s,
                "{:?} {:?} {} {lats:?} {} {:?}",
                v.shown(k),
                v.c,
                v.end_of_stream,
                v.shared,
                v.first_view
            );
        }
        let group = |v: &ProcStats| {
            let mut peers: Vec<_> = v.peers.iter().collect();
            peers.sort();
            let lats: Vec<_> = v.latency.iter().map(|h| h.summary()).collect();
            format!("{:?} {peers:?} {lats:?}", v.c)
        };
        let mut g: Vec<_> = a.containers.iter().map(|(k, v)| (*k, group(v))).collect();
        g.sort();
        let _ = writeln!(s, "{g:?}");
        let mut g: Vec<_> = a.cgroups.iter().map(|(k, v)| (*k, group(v))).collect();
        g.sort();
        let _ = writeln!(s, "{g:?}");
        let mut g: Vec<_> = a.netns.iter().map(|(k, v)| (*k, group(v))).collect();
        g.sort();
        let _ = writeln!(s, "{g:?}");
        let mut r: Vec<_> = a.remotes.iter().map(|(k, v)| (*k, v.c.clone())).collect();
        r.sort_by_key(|x| x.0);
        let _ = writeln!(s, "{r:?}");
        let mut p: Vec<_> = a.ports.iter().map(|(k, v)| (*k, v.clone())).collect();
        p.sort_by_key(|x| x.0);
        let _ = writeln!(s, "{p:?}");
        let mut e: Vec<_> = a.errors.iter().map(|(k, v)| (*k, v.clone())).collect();
        e.sort_by_key(|x| x.0);
        let _ = writeln!(s, "{e:?}");
        let mut f: Vec<_> = a.flag_combos.iter().map(|(k, v)| (*k, v.clone())).collect();
        f.sort_by_key(|x| x.0);
        let _ = writeln!(s, "{f:?} {:?} {:?} {:?}", a.flag_bits, a.no_flags, a.sizes);
        let pts: Vec<_> = a.series.points().map(|(t, p)| (t, p.clone())).collect();
        let _ = writeln!(s, "{} {pts:?}", a.series.width_s());
        let _ = writeln!(s, "{:?} {:?}", a.slowest.items(), a.largest.items());
        s
    }

    #[test]
    fn merging_partials_equals_one_pass() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let ops: Vec<(Op, Source)> = (0..20_000u64)
            .map(|i| {
                (
                    random_op(&mut rng),
                    Source {
                        file: (i / 5000) as u32,
                        line: i % 5000 + 2,
                    },
                )
            })
            .collect();
        let mut one = Aggregate::default();
        for (op, src) in &ops {
            one.add(op, *src);
        }
        one.finish();

        // Four partials, merged in a scrambled order.
        let mut parts: Vec<Aggregate> = (0..4).map(|_| Aggregate::default()).collect();
        for (op, src) in &ops {
            parts[src.file as usize].add(op, *src);
        }
        let mut merged = Aggregate::default();
        for i in [2, 0, 3, 1] {
            merged.merge(&parts[i]);
        }
        merged.finish();
        assert_eq!(fingerprint(&one), fingerprint(&merged));
        assert_eq!(one.totals.ops, 20_000);
        assert!(one.processes.evictions() == 0 && one.conversations.evictions() == 0);
    }

    /// Random attribution on top of `random_op`: a few containers (and
    /// the host), cgroups, namespaces, and cookies shared by several
    /// processes and peers.
    pub fn with_random_attr(rng: &mut Rng, mut op: Op) -> Op {
        use super::super::Sym;
        let c = rng.below(4);
        op.attr.container = Some(Sym::intern(match c {
            0 => "",
            1 => "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f",
            _ => "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999",
        }));
        op.attr.cgroup = Some(Sym::intern(&format!("system.slice/s{c}.scope")));
        op.attr.netns = Some(4026531840 + rng.below(2));
        op.attr.cookie = (rng.below(5) != 0).then(|| 1 + rng.below(12));
        op
    }

    #[test]
    fn merging_partials_equals_one_pass_with_attribution() {
        let mut rng = Rng(0x51ed_270b_2734_9a6d);
        let ops: Vec<(Op, Source)> = (0..20_000u64)
            .map(|i| {
                let op = random_op(&mut rng);
                (
                    with_random_attr(&mut rng, op),
                    Source {
                        file: (i / 5000) as u32,
                        line: i % 5000 + 2,
                    },
                )
            })
            .collect();
        let mut one = Aggregate::default();
        for (op, src) in &ops {
            one.add(op, *src);
        }
        one.finish();
        // Merged in a scrambled order (report's workers finish in any
        // order): what a cookie conversation shows is its earliest op's,
        // whichever partial holds it.
        let mut parts: Vec<Aggregate> = (0..4).map(|_| Aggregate::default()).collect();
        for (op, src) in &ops {
            parts[src.file as usize].add(op, *src);
        }
        let mut merged = Aggregate::default();
        for i in [3, 1, 0, 2] {
            merged.merge(&parts[i]);
        }
        merged.finish();
        assert_eq!(fingerprint(&one), fingerprint(&merged));
        // 12 cookies x 2 protocols (a cookie's conversation is one socket
        // whatever pid or peer used it), plus the cookie-less ones.
        let with_cookie = one
            .conversations
            .iter()
            .filter(|(k, _)| k.cookie.is_some())
            .count();
        assert_eq!(with_cookie, 24);
        assert!(
            one.conversations
                .iter()
                .all(|(k, v)| k.cookie.is_none() || v.shared)
        );
        assert_eq!(one.containers.len(), 3);
        assert_eq!(one.netns.len(), 2);
        let in_groups: u64 = one.containers.iter().map(|(_, v)| v.c.total_ops()).sum();
        assert_eq!(in_groups, 20_000);
    }

    /// One socket is one conversation: a cookie keeps a forked child's ops
    /// on its parent's socket together, and keeps apart two sockets that
    /// reused the same pid and ports one after the other.
    #[test]
    fn conversations_by_socket_cookie() {
        let mut rng = Rng(11);
        let mut base = random_op(&mut rng);
        base.remote = Some(Endpoint {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
            port: 6379,
        });
        base.protocol = Protocol::Tcp;
        let mut a = Aggregate::default();
        // Socket 7: the parent (pid 100), then a forked child (pid 101).
        let mut op = base;
        op.pid = 100;
        op.attr.cookie = Some(7);
        a.add(&op, Source::default());
        op.pid = 101;
        a.add(&op, Source::default());
        // Socket 8: pid 100 again, same endpoints (fd and port reuse).
        op.pid = 100;
        op.attr.cookie = Some(8);
        a.add(&op, Source::default());
        a.add(&op, Source::default());
        // Without cookies the same four ops are two conversations by pid.
        let mut b = Aggregate::default();
        for pid in [100, 101, 100, 100] {
            let mut op = base;
            op.pid = pid;
            b.add(&op, Source::default());
        }
        a.finish();
        b.finish();
        let mut got: Vec<_> = a
            .conversations
            .iter()
            .map(|(k, v)| (k.cookie, k.pid, v.c.total_ops(), v.shared))
            .collect();
        got.sort();
        assert_eq!(got, [(Some(7), 100, 2, true), (Some(8), 100, 2, false)]);
        let mut got: Vec<_> = b
            .conversations
            .iter()
            .map(|(k, v)| (k.pid, v.c.total_ops()))
            .collect();
        got.sort();
        assert_eq!(got, [(100, 3), (101, 1)]);
        let mut child = base;
        child.pid = 101;
        child.attr.cookie = Some(7);
        let key = a
            .conversations
            .iter()
            .find(|(k, _)| k.cookie == Some(7))
            .unwrap()
            .0;
        assert!(key.holds(&child));
    }

    #[test]
    fn capped_tables_keep_exact_totals() {
        let mut rng = Rng(7);
        let config = AggregateConfig {
            max_conversations: 4,
            max_processes: 2,
            ..AggregateConfig::default()
        };
        let mut a = Aggregate::new(config);
        let mut bytes = 0;
        for i in 0..5000u64 {
            let mut op = random_op(&mut rng);
            op.local.port = (i % 1000) as u16;
            bytes += op.size;
            a.add(&op, Source::default());
        }
        a.finish();
        assert!(a.conversations.len() <= 4);
        assert!(a.conversations.evictions() > 0);
        let tracked: u64 = a.conversations.iter().map(|(_, v)| v.c.total_bytes()).sum();
        assert_eq!(tracked + a.conversations.other().c.total_bytes(), bytes);
        let ops: u64 = a.processes.iter().map(|(_, v)| v.c.total_ops()).sum();
        assert_eq!(ops + a.processes.other().c.total_ops(), 5000);
        assert_eq!(a.totals.bytes_sent + a.totals.bytes_received, bytes);
        assert!(a.conversations.other_keys() > 100);
    }

    /// Unwritten ops (the sampling seam) count exactly in the totals and
    /// the flow's conversation, process and port, and in nothing that
    /// needs a row.
    #[test]
    fn unwritten_ops_count_in_totals_and_tables() {
        let mut rng = Rng(5);
        let op = random_op(&mut rng);
        let mut a = Aggregate::default();
        a.add(&op, Source::default());
        let (mut send, mut receive) = (op, op);
        send.direction = Direction::Send;
        receive.direction = Direction::Receive;
        a.add_unwritten(&send, 3, 300);
        a.add_unwritten(&receive, 4, 400);
        a.finish();
        assert_eq!(a.totals.ops, 8);
        assert_eq!(a.totals.bytes_sent + a.totals.bytes_received, 700 + op.size);
        let (_, conv) = a.conversations.iter().next().unwrap();
        assert_eq!(conv.c.total_ops(), 8);
        let (_, p) = a.processes.iter().next().unwrap();
        assert_eq!(p.c.total_ops(), 8);
        assert_eq!(a.unwritten.total_ops(), 7);
        let sized: u64 = a.sizes.iter().flatten().sum();
        assert_eq!(sized, 1, "sizes count written rows only");
    }

    #[test]
    fn receive_split_rule() {
        let mut rng = Rng(3);
        let mut op = random_op(&mut rng);
        op.direction = Direction::Receive;
        op.errno = None;
        op.msg_flags = None;
        assert_eq!(op.latency_class(), LatClass::ReceiveBlocking);
        op.msg_flags = Some(0x40 | 0x2);
        assert_eq!(op.latency_class(), LatClass::ReceiveNonblocking);
        op.msg_flags = None;
        op.errno = Some(11);
        assert_eq!(op.latency_class(), LatClass::ReceiveNonblocking);
        op.direction = Direction::Send;
        assert_eq!(op.latency_class(), LatClass::Send);
    }
}
