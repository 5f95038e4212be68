//! Geometry for the small inline-SVG charts on the overview.
//!
//! The template only places rectangles and labels computed here, so the chart
//! needs no script, no inline style and no chart library.

use chrono::{Duration, NaiveDate};

/// Width and height of the chart's drawing area (SVG user units).
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 180.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub label_x: String,
    /// The day (YYYY-MM-DD), used in the tooltip.
    pub day: String,
    /// A short label under the bar, empty for bars that are not labelled.
    pub label: String,
    pub count: i64,
}

pub struct GridLine {
    pub y: String,
    pub label: String,
}

pub struct DayChart {
    pub bars: Vec<Bar>,
    pub grid: Vec<GridLine>,
    pub total: i64,
    pub days: usize,
}

fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// A "nice" axis maximum at or above `max` (1, 2, 5 × 10^k).
fn nice_max(max: i64) -> i64 {
    if max <= 4 {
        return 4;
    }
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if m * step * 4 >= max {
                return m * step * 4;
            }
        }
        step *= 10;
    }
}

/// One bar per day for the `days` days ending at `today` (inclusive); days
/// missing from `counts` (pairs of `YYYY-MM-DD` and count) are zero.
pub fn days(counts: &[(String, i64)], today: NaiveDate, days: usize) -> DayChart {
    let days = days.max(1);
    let start = today - Duration::days(days as i64 - 1);
    let values: Vec<(NaiveDate, i64)> = (0..days)
        .map(|i| {
            let d = start + Duration::days(i as i64);
            let key = d.format("%Y-%m-%d").to_string();
            let c = counts
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(0, |(_, c)| *c);
            (d, c)
        })
        .collect();
    let max = nice_max(values.iter().map(|(_, c)| *c).max().unwrap_or(0));
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / days as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let label_every = days.div_ceil(10).max(1);
    let bars = values
        .iter()
        .enumerate()
        .map(|(i, (d, c))| {
            let h = plot_h * (*c as f64) / (max as f64);
            let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            Bar {
                x: n(x),
                y: n(TOP + plot_h - h),
                w: n(bar_w),
                h: n(h),
                label_x: n(x + bar_w / 2.0),
                day: d.format("%Y-%m-%d").to_string(),
                label: if (days - 1 - i).is_multiple_of(label_every) {
                    d.format("%b %-d").to_string()
                } else {
                    String::new()
                },
                count: *c,
            }
        })
        .collect();
    let grid = (0..=4)
        .map(|k| GridLine {
            y: n(TOP + plot_h - plot_h * k as f64 / 4.0),
            label: (max * k / 4).to_string(),
        })
        .collect();
    DayChart {
        bars,
        grid,
        total: values.iter().map(|(_, c)| c).sum(),
        days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_missing_days_with_zero_and_scales_to_a_nice_max() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        let counts = vec![("2026-03-08".to_string(), 7), ("2026-03-10".to_string(), 3)];
        let c = days(&counts, today, 3);
        let got: Vec<(String, i64)> = c.bars.iter().map(|b| (b.day.clone(), b.count)).collect();
        assert_eq!(
            got,
            vec![
                ("2026-03-08".to_string(), 7),
                ("2026-03-09".to_string(), 0),
                ("2026-03-10".to_string(), 3)
            ]
        );
        assert_eq!(c.total, 10);
        // 7 rounds up to 8: the top grid line is labelled 8.
        assert_eq!(c.grid.last().unwrap().label, "8");
        assert_eq!(c.bars[1].h, "0.0");
    }

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 4);
        assert_eq!(nice_max(5), 8);
        assert_eq!(nice_max(9), 20);
        assert_eq!(nice_max(41), 80);
        assert_eq!(nice_max(1000), 2000);
    }
}
