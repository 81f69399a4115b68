//! ISO 8601 / RFC 3339 date-times for EXT-X-PROGRAM-DATE-TIME, without a date library.

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (proleptic
/// Gregorian), using 400-year eras of 146 097 days.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-27T06:01:15.123Z` for milliseconds since the Unix epoch (UTC).
pub fn format_pdt(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_pdt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_pdt(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_pdt(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(format_pdt(1_795_759_275_123), "2026-11-27T06:01:15.123Z");
        assert_eq!(format_pdt(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(format_pdt(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn day_by_day_against_a_simple_calendar() {
        // Walk 1970..2101 one day at a time with a naive calendar.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..47_847i64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ][m as usize - 1];
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
}
