//! Calendar dates for the `current_date` prompt variable, from Unix seconds (UTC).
//!
//! Contract: `docs/gitlab-contract.md#named-prompts` (`inputs.current_date` is auto-added).
//! GitLab's gateway formats it with `strftime`: `"%B %d, %Y"` for `/v1|v2/prompts` (e.g.
//! `March 07, 2025`) and `"%A, %B, %d, %Y"` for the ReAct chat (e.g. `Friday, March, 07, 2025`).
//! The gateway uses the server's local time; this filter uses UTC (time comes from the host).

use crate::civil::civil_from_days;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// A civil date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    /// 0 = Thursday (1970-01-01) .. 6 = Wednesday.
    weekday: usize,
}

impl Date {
    /// The UTC date of a Unix time.
    pub fn from_unix(secs: u64) -> Date {
        let days = (secs / 86_400) as i64;
        let (year, month, day) = civil_from_days(days);
        Date {
            year,
            month: month as u32,
            day: day as u32,
            weekday: (days % 7) as usize,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS
            .get(self.month.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("")
    }

    fn weekday_name(&self) -> &'static str {
        WEEKDAYS.get(self.weekday).copied().unwrap_or("")
    }

    /// `%B %d, %Y`, e.g. `March 07, 2025`.
    pub fn prompt_format(&self) -> String {
        format!("{} {:02}, {}", self.month_name(), self.day, self.year)
    }

    /// `%A, %B, %d, %Y`, e.g. `Friday, March, 07, 2025`.
    pub fn chat_format(&self) -> String {
        format!(
            "{}, {}, {:02}, {}",
            self.weekday_name(),
            self.month_name(),
            self.day,
            self.year
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let d = Date::from_unix(0);
        assert_eq!((d.year, d.month, d.day), (1970, 1, 1));
        assert_eq!(d.chat_format(), "Thursday, January, 01, 1970");
        // 2025-03-07T12:00:00Z, a Friday
        let d = Date::from_unix(1_741_348_800);
        assert_eq!(d.prompt_format(), "March 07, 2025");
        assert_eq!(d.chat_format(), "Friday, March, 07, 2025");
        // 2024-02-29 (leap day), a Thursday
        let d = Date::from_unix(1_709_164_800 + 3_600);
        assert_eq!(d.chat_format(), "Thursday, February, 29, 2024");
        // 2000-12-31T23:59:59Z, a Sunday
        assert_eq!(
            Date::from_unix(978_307_199).chat_format(),
            "Sunday, December, 31, 2000"
        );
        // far future never panics
        let _ = Date::from_unix(u64::MAX).prompt_format();
    }
}
