//! UTC timestamps: the row's `YYYY-MM-DD HH:MM:SS.ffffff`, the run folder's
//! `YYYYMMDDTHHMMSSZ`, and the clock that maps BPF time to wall time.

/// Civil date (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, valid for the proleptic Gregorian
/// calendar over the whole i64 range we can meet).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Broken-down UTC time of whole seconds since the epoch.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

fn civil(epoch_secs: i64) -> Civil {
    let (year, month, day) = civil_from_days(epoch_secs.div_euclid(86_400));
    let secs_of_day = epoch_secs.rem_euclid(86_400) as u32;
    Civil {
        year,
        month,
        day,
        hour: secs_of_day / 3600,
        minute: secs_of_day / 60 % 60,
        second: secs_of_day % 60,
    }
}

/// The run folder name, `YYYYMMDDTHHMMSSZ`.
pub fn run_folder_name(epoch_secs: i64) -> String {
    let c = civil(epoch_secs);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// ISO 8601 in UTC with seconds, for the manifest.
pub fn iso8601(epoch_secs: i64) -> String {
    let c = civil(epoch_secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Formats row timestamps. Rows arrive in bursts within the same second, so
/// the `YYYY-MM-DD HH:MM:SS.` prefix is kept and only the microseconds are
/// formatted per row.
#[derive(Default)]
pub struct RowTimeFormatter {
    cached_secs: Option<i64>,
    prefix: [u8; 20],
}

impl RowTimeFormatter {
    /// Appends `YYYY-MM-DD HH:MM:SS.ffffff` for nanoseconds since the epoch
    /// (UTC), truncated to the microsecond.
    pub fn write(&mut self, out: &mut Vec<u8>, epoch_ns: i64) {
        let secs = epoch_ns.div_euclid(1_000_000_000);
        let micros = (epoch_ns.rem_euclid(1_000_000_000) / 1000) as u32;
        if self.cached_secs != Some(secs) {
            let c = civil(secs);
            let text = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
            // Years past 9999 would not fit the field; clamp the cache
            // rather than panic (the row is then still well-formed).
            let bytes = text.as_bytes();
            let n = bytes.len().min(self.prefix.len());
            self.prefix[..n].copy_from_slice(&bytes[..n]);
            self.cached_secs = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        let mut digits = [b'0'; 6];
        let mut m = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.extend_from_slice(&digits);
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; the clock ids used here
    // always exist on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Maps CLOCK_MONOTONIC (what bpf_ktime_get_ns returns) to UTC wall time.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i64,
}

impl WallClock {
    /// Samples the offset now. Bracketing the realtime read between two
    /// monotonic reads keeps the error to half the bracket; of several
    /// tries the narrowest bracket wins, since a preemption between the
    /// reads (common on a busy 2-vCPU machine) widens one by tens of
    /// microseconds, and two nwtrace processes must map one event to the
    /// same time.
    pub fn sample() -> Self {
        const TRIES: usize = 9;
        let mut best: Option<(i64, i64)> = None; // (bracket, offset)
        for _ in 0..TRIES {
            let mono_before = clock_ns(libc::CLOCK_MONOTONIC);
            let real = clock_ns(libc::CLOCK_REALTIME);
            let mono_after = clock_ns(libc::CLOCK_MONOTONIC);
            let bracket = mono_after - mono_before;
            let offset = real - (mono_before + bracket / 2);
            if best.is_none_or(|(b, _)| bracket < b) {
                best = Some((bracket, offset));
            }
        }
        WallClock {
            offset_ns: best.map_or(0, |(_, offset)| offset),
        }
    }

    /// A fixed offset: for tests and replays.
    pub fn with_offset(offset_ns: i64) -> Self {
        WallClock { offset_ns }
    }

    pub fn to_epoch_ns(self, monotonic_ns: u64) -> i64 {
        monotonic_ns as i64 + self.offset_ns
    }
}

/// Seconds since the epoch, now.
pub fn now_epoch_secs() -> i64 {
    clock_ns(libc::CLOCK_REALTIME).div_euclid(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_time(ns: i64) -> String {
        let mut out = Vec::new();
        RowTimeFormatter::default().write(&mut out, ns);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn row_timestamps() {
        assert_eq!(row_time(0), "1970-01-01 00:00:00.000000");
        // 2026-11-26 05:08:14.123456789 UTC, checked with `date -u -d @1795669694`.
        assert_eq!(
            row_time(1_795_669_694_123_456_789),
            "2026-11-26 05:08:14.123456"
        );
        // Leap day and end of a leap year.
        assert_eq!(
            row_time(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000000"
        );
        assert_eq!(
            row_time(1_735_689_599_999_999_999),
            "2024-12-31 23:59:59.999999"
        );
    }

    #[test]
    fn cached_prefix_follows_the_second() {
        let mut f = RowTimeFormatter::default();
        let mut out = Vec::new();
        f.write(&mut out, 59_999_999_000);
        out.push(b'\n');
        f.write(&mut out, 60_000_001_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01 00:00:59.999999\n1970-01-01 00:01:00.000001"
        );
    }

    #[test]
    fn run_folder_name_is_compact_utc() {
        assert_eq!(run_folder_name(1_795_669_694), "20261126T050814Z");
        assert_eq!(iso8601(1_795_669_694), "2026-11-26T05:08:14Z");
    }

    #[test]
    fn civil_matches_a_day_by_day_walk() {
        // Walk 1970..2100 one day at a time and compare.
        let mut y = 1970i64;
        let mut m = 1u32;
        let mut d = 1u32;
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..47_482 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn wall_clock_maps_monotonic_to_realtime() {
        let clock = WallClock::sample();
        let mono = clock_ns(libc::CLOCK_MONOTONIC) as u64;
        let real = clock_ns(libc::CLOCK_REALTIME);
        assert!((clock.to_epoch_ns(mono) - real).abs() < 50_000_000);
        assert_eq!(WallClock::with_offset(10).to_epoch_ns(5), 15);
    }
}
