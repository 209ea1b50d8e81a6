//! Small text renderers shared by the commands: the canary weight bar and aligned tables.

/// A bar of `width` cells showing `weight` percent, e.g. `[#####---------------]  25%`. Unicode blocks when
/// `fancy` (a terminal), plain ASCII otherwise so logs and pipes stay readable.
pub fn weight_bar(weight: i32, width: usize, fancy: bool) -> String {
    let clamped = usize::try_from(weight.clamp(0, 100)).unwrap_or(0);
    let filled = (clamped * width + 50) / 100;
    let (full, empty) = if fancy { ("█", "░") } else { ("#", "-") };
    format!("[{}{}] {weight:>3}%", full.repeat(filled), empty.repeat(width - filled))
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let all = std::iter::once(header.iter().map(|h| h.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned());
    for row in all {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(columns) {
            if i + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_bar_fills_in_proportion_and_clamps() {
        assert_eq!(weight_bar(25, 20, false), "[#####---------------]  25%");
        assert_eq!(weight_bar(0, 10, false), "[----------]   0%");
        assert_eq!(weight_bar(100, 10, false), "[##########] 100%");
        assert_eq!(weight_bar(140, 10, false), "[##########] 140%");
        assert_eq!(weight_bar(50, 4, true), "[██░░]  50%");
    }

    #[test]
    fn table_aligns_columns_to_the_widest_cell() {
        let text = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(text, "A     BB\nlong  x\n");
    }
}
