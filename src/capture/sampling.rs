//! Thinning in the kernel (`--sample 1/N`, `--rate-limit N/s`): the
//! options, the flow hash's twin of the BPF side's, and the drain of the
//! unwritten map, whose counts make the run's totals exact although not
//! every operation is written (docs/sampling.md).

use std::collections::HashMap;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};
use serde::{Deserialize, Serialize};

use crate::bpf::NwtraceSkel;
use crate::bpf::types::{nw_bucket, nw_event, nw_flow_counts, nw_flow_key};
use crate::capture::event::{NW_EVENT_SIZE, NetEvent, Protocol};

// SAFETY: #[repr(C)] structs of integers and integer arrays generated from
// the BPF object's BTF; every bit pattern is a valid value.
unsafe impl plain::Plain for nw_flow_key {}
// SAFETY: as above.
unsafe impl plain::Plain for nw_flow_counts {}
// SAFETY: as above.
unsafe impl plain::Plain for nw_bucket {}

/// Mirrored from `src/bpf/nwtrace.h`.
const NW_FLOW_KEY_SIZE: usize = 72;
const NW_OVERFLOW_SLOTS: u32 = 3;
const _: () = assert!(std::mem::size_of::<nw_flow_key>() == NW_FLOW_KEY_SIZE);
const _: () = assert!(std::mem::size_of::<nw_flow_counts>() == 32);

/// What a rate limit is counted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBy {
    #[default]
    Process,
    Cgroup,
}

/// The thinning a capture was asked for. The default is none: every
/// operation is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thinning {
    /// Keep 1 flow in this many; `None` (or 1): every flow.
    pub sample: Option<u32>,
    /// Operations a second, per process or per cgroup.
    pub rate_limit: Option<u64>,
    pub rate_limit_by: RateLimitBy,
}

impl Thinning {
    pub fn is_on(&self) -> bool {
        self.sample.is_some_and(|n| n > 1) || self.rate_limit.is_some()
    }
}

/// `1/N` (or `N`): keep 1 flow in N, N from 1 to 2^31.
pub fn parse_sample(text: &str) -> Result<u32, String> {
    let n = text.strip_prefix("1/").unwrap_or(text);
    match n.trim().parse::<u32>() {
        Ok(n) if (1..=1 << 31).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a sampling rate: write 1/N, N a whole number from 1 (every flow) up"
        )),
    }
}

/// `N/s` (or `N`): at most N operations a second, 1 to 10,000,000.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let n = text.strip_suffix("/s").unwrap_or(text);
    match n.trim().parse::<u64>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a rate: write N/s, N operations a second from 1 to 10000000"
        )),
    }
}

/// The murmur3 finaliser, as `mix64()` in src/bpf/thinning.bpf.h.
fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// One port's hash, as in `flow_sampled()` in src/bpf/thinning.bpf.h.
fn port_hash(port: u16) -> u64 {
    mix64(u64::from(port) ^ 0x9e37_79b9_7f4a_7c15)
}

/// Whether `--sample 1/n` keeps the flow between these two ports (in
/// either order), as the BPF side decides it (`flow_sampled()`): a flow is
/// known by its protocol and two ports, which both ends of a conversation
/// see alike (addresses they may not: a socket bound to the wildcard
/// address has none of its own). An unknown peer is `None`.
pub fn flow_kept(n: u32, protocol: Protocol, local_port: u16, peer_port: Option<u16>) -> bool {
    if n <= 1 {
        return true;
    }
    let a = port_hash(local_port);
    let b = port_hash(peer_port.unwrap_or(0));
    let proto = match protocol {
        Protocol::Tcp => libc::IPPROTO_TCP as u64,
        Protocol::Udp => libc::IPPROTO_UDP as u64,
    };
    let (lo, hi) = (a.min(b), a.max(b));
    mix64(lo ^ mix64(hi ^ proto)).is_multiple_of(u64::from(n))
}

/// Operations of one row identity that were not written: `event` stands
/// for all of them (its `ret` is an errno, 0, or 1 for "some bytes"; its
/// end time the latest's), `ops` of them with `bytes` in all, `limited` of
/// them left out by the rate limit and the rest by sampling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnwrittenFlow {
    pub event: NetEvent,
    pub ops: u64,
    pub bytes: u64,
    pub limited: u64,
}

/// What thinning and the filters left out, by reason: the manifest's
/// `loss_by_reason` beside the ring's own loss.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Operations of flows that `--sample` did not keep.
    pub sampled_out: u64,
    /// Operations over `--rate-limit`.
    pub rate_limited: u64,
    /// Rows the row filters (`--port`, `--protocol`, `--direction`,
    /// `--ip-version`) left out.
    pub filtered: u64,
    /// Operations left out that found the unwritten map full: in
    /// `sampled_out`/`rate_limited`, but in no process or conversation
    /// (those figures are then lower bounds).
    pub unwritten_overflow_ops: u64,
    pub unwritten_overflow_bytes: u64,
    /// Operations over the limit per process (or cgroup), largest first,
    /// at most [`MAX_SUPPRESSED_LISTED`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Suppressed>,
    /// Suppressed operations of the keys not listed.
    #[serde(default)]
    pub suppressed_other: u64,
}

/// The manifest's `loss_by_reason`: every reason an operation seen was
/// not written, and the thinning asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossByReason {
    /// Events lost because the ring buffer was full (`events_lost`).
    pub ring_full: u64,
    #[serde(flatten)]
    pub left_out: LeftOut,
    /// `--sample 1/N`'s N; absent: every flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    /// `--rate-limit`, operations a second, and what it limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_by: Option<RateLimitBy>,
}

impl LossByReason {
    pub fn new(ring_full: u64, left_out: &LeftOut, thinning: &Thinning) -> Self {
        LossByReason {
            ring_full,
            left_out: left_out.clone(),
            sample: thinning.sample,
            rate_limit: thinning.rate_limit,
            rate_limit_by: thinning.rate_limit.map(|_| thinning.rate_limit_by),
        }
    }
}

/// The manifest lists this many keys at most (it must stay small).
pub const MAX_SUPPRESSED_LISTED: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    /// `process` (id: tgid) or `cgroup` (id: cgroup v2 id).
    pub by: RateLimitBy,
    pub id: u64,
    pub operations: u64,
}

/// The BPF side's map that is written now (0: unwritten_a).
fn side(skel: &NwtraceSkel<'_>) -> u32 {
    skel.maps
        .bss_data
        .as_deref()
        .map_or(0, |b| b.unwritten_side)
}

/// Drains the map the BPF side does not write now and hands that role
/// to it: so the map drained next has been left alone for a whole drain
/// interval. With `all` (the programs are detached), drains both.
pub fn drain(skel: &mut NwtraceSkel<'_>, all: bool) -> Result<Vec<UnwrittenFlow>> {
    let active = side(skel);
    let mut out = Vec::new();
    let idle_is_b = active == 0;
    if all {
        drain_map(&skel.maps.unwritten_a, &mut out)?;
        drain_map(&skel.maps.unwritten_b, &mut out)?;
        return Ok(out);
    }
    if idle_is_b {
        drain_map(&skel.maps.unwritten_b, &mut out)?;
    } else {
        drain_map(&skel.maps.unwritten_a, &mut out)?;
    }
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        bss.unwritten_side = u32::from(idle_is_b);
    }
    Ok(out)
}

/// Entries read and deleted per syscall.
const DRAIN_BATCH: u32 = 4096;

fn drain_map(map: &impl MapCore, out: &mut Vec<UnwrittenFlow>) -> Result<()> {
    // One syscall per DRAIN_BATCH entries (BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    // hash maps since 5.6, commit 057996380a42): three per entry (next key,
    // lookup, delete) cost more than the rows that sampling saves.
    if let Ok(batches) = map.lookup_and_delete_batch(DRAIN_BATCH, MapFlags::ANY, MapFlags::ANY) {
        for (key, value) in batches {
            push_flow(&key, &value, out);
        }
    }
    // Whatever the batch left (or all of it, where batches fail), one by one.
    let keys: Vec<Vec<u8>> = map.keys().collect();
    for key in keys {
        let Some(value) = map
            .lookup(&key, MapFlags::ANY)
            .context("reading the unwritten map")?
        else {
            continue;
        };
        map.delete(&key).context("emptying the unwritten map")?;
        push_flow(&key, &value, out);
    }
    Ok(())
}

fn push_flow(key: &[u8], value: &[u8], out: &mut Vec<UnwrittenFlow>) {
    let mut k = nw_flow_key::default();
    let mut c = nw_flow_counts::default();
    if plain::copy_from_bytes(&mut k, key).is_err()
        || plain::copy_from_bytes(&mut c, value).is_err()
    {
        return;
    }
    if let Some(event) = key_event(&k, c.last_ns) {
        out.push(UnwrittenFlow {
            event,
            ops: c.ops,
            bytes: c.bytes,
            limited: c.limited,
        });
    }
}

/// The event that stands for a key's operations, decoded like a ring
/// record so that it says what their rows would have said.
fn key_event(k: &nw_flow_key, last_ns: u64) -> Option<NetEvent> {
    let raw = nw_event {
        record: crate::capture::event::NW_RECORD_EVENT,
        direction: k.direction,
        protocol: k.protocol,
        info: k.info,
        sk_family: k.sk_family,
        peer_family: k.peer_family,
        local_port: k.local_port,
        peer_port: k.peer_port,
        pid: k.pid,
        ret: if k.err < 0 {
            k.err
        } else {
            i32::from(k.zero == 0)
        },
        msg_flags: 0,
        start_ns: 0,
        end_ns: last_ns,
        local_addr: k.local_addr,
        peer_addr: k.peer_addr,
        comm: k.comm,
    };
    // SAFETY: nw_event is a #[repr(C)] struct of integers without padding
    // holes (its size is asserted against NW_EVENT_SIZE in event.rs);
    // these are its bytes, read for the decoder.
    let bytes = unsafe {
        std::slice::from_raw_parts((&raw as *const nw_event).cast::<u8>(), NW_EVENT_SIZE)
    };
    NetEvent::try_from(bytes).ok()
}

/// The counters of what was left out, after the programs are detached
/// and the unwritten map drained: `sampled_out` and `rate_limited` are the
/// sums of the drained flows' plus the overflow's.
pub fn left_out(
    skel: &NwtraceSkel<'_>,
    drained_ops: u64,
    drained_limited: u64,
    by: RateLimitBy,
) -> Result<LeftOut> {
    let overflow: Vec<u64> = (0..NW_OVERFLOW_SLOTS)
        .map(|slot| percpu_sum(&skel.maps.unwritten_overflow, slot))
        .collect::<Result<_>>()?;
    let ops = drained_ops + overflow[0];
    let limited = drained_limited + overflow[2];
    let mut per_key: HashMap<u64, u64> = HashMap::new();
    for (key, value) in skel.maps.rate_buckets.keys().filter_map(|k| {
        let v = skel.maps.rate_buckets.lookup(&k, MapFlags::ANY).ok()??;
        Some((k, v))
    }) {
        let mut b = nw_bucket::default();
        if plain::copy_from_bytes(&mut b, &value).is_ok() && b.suppressed > 0 {
            let id = key
                .get(..8)
                .map_or(0, |k| u64::from_ne_bytes(k.try_into().expect("8 bytes")));
            *per_key.entry(id).or_default() += b.suppressed;
        }
    }
    let mut list: Vec<Suppressed> = per_key
        .into_iter()
        .map(|(id, operations)| Suppressed { by, id, operations })
        .collect();
    list.sort_by(|a, b| b.operations.cmp(&a.operations).then(a.id.cmp(&b.id)));
    let suppressed_other = list
        .iter()
        .skip(MAX_SUPPRESSED_LISTED)
        .map(|s| s.operations)
        .sum();
    list.truncate(MAX_SUPPRESSED_LISTED);
    Ok(LeftOut {
        sampled_out: ops - limited,
        rate_limited: limited,
        filtered: percpu_sum(&skel.maps.filtered_rows, 0)?,
        unwritten_overflow_ops: overflow[0],
        unwritten_overflow_bytes: overflow[1],
        suppressed: list,
        suppressed_other,
    })
}

/// Rows the row filters left out so far.
pub fn filtered_rows(skel: &NwtraceSkel<'_>) -> Result<u64> {
    percpu_sum(&skel.maps.filtered_rows, 0)
}

fn percpu_sum(map: &impl MapCore, slot: u32) -> Result<u64> {
    let per_cpu = map
        .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading the counters of {}", map.name().to_string_lossy()))?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8))
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed by hand (python3, docs/sampling.md's recipe) once.
    const KEPT_OF_40000_TO_40099: &[u16] = &[40002, 40012, 40015, 40018, 40065, 40083];

    #[test]
    fn rates_parse_and_say_what_is_wrong() {
        assert_eq!(parse_sample("1/10"), Ok(10));
        assert_eq!(parse_sample("1/1"), Ok(1));
        assert!(parse_sample("1/0").is_err());
        assert!(parse_sample("2/10").unwrap_err().contains("1/N"));
        assert_eq!(parse_rate("500/s"), Ok(500));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/m").is_err());
    }

    #[test]
    fn both_ends_decide_the_same() {
        for port in 1000..1400u16 {
            assert_eq!(
                flow_kept(7, Protocol::Udp, 40000, Some(port)),
                flow_kept(7, Protocol::Udp, port, Some(40000))
            );
        }
    }

    #[test]
    fn about_one_flow_in_n_is_kept() {
        let kept = (20_000..40_000u16)
            .filter(|&p| flow_kept(10, Protocol::Tcp, 443, Some(p)))
            .count();
        assert!((1800..2200).contains(&kept), "{kept} of 20000 kept");
    }

    #[test]
    fn fixed_values_pin_the_hash() {
        // Any change here changes which flows every deployed nwtrace
        // keeps: both ends of a conversation must run the same hash.
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0xb456_bcfc_34c2_cb2c);
        let kept: Vec<u16> = (40000..40100)
            .filter(|&p| flow_kept(10, Protocol::Udp, 53, Some(p)))
            .collect();
        assert_eq!(kept, KEPT_OF_40000_TO_40099);
    }
}
