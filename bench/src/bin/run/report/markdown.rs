//! Writing the report's Markdown: headings, paragraphs, tables, and how figures are printed.

use std::fmt::{Display, Write as _};

use super::verdict;

/// `## {title}` and a blank line.
pub(crate) fn heading(md: &mut String, title: &str) {
    let _ = writeln!(md, "## {title}\n");
}

/// `text` and a blank line.
pub(crate) fn paragraph(md: &mut String, text: &str) {
    let _ = writeln!(md, "{text}\n");
}

/// A Markdown table being written: [`Table::new`] writes its header, each [`Table::row`] a row,
/// and [`Table::end`] the blank line after it.
pub(crate) struct Table<'a> {
    md: &'a mut String,
    columns: usize,
}

impl<'a> Table<'a> {
    /// Starts a table with these column titles.
    pub(crate) fn new(md: &'a mut String, columns: &[&str]) -> Table<'a> {
        line(md, columns);
        md.push('|');
        md.push_str(&"---|".repeat(columns.len()));
        md.push('\n');
        Table {
            md,
            columns: columns.len(),
        }
    }

    /// Writes a row of `cells`, one for each column.
    pub(crate) fn row(&mut self, cells: &[&dyn Display]) {
        self.strings(cells.iter().map(|c| c.to_string()));
    }

    /// Writes a row of `cells` that are already text.
    pub(crate) fn strings(&mut self, cells: impl IntoIterator<Item = String>) {
        let cells: Vec<String> = cells.into_iter().collect();
        debug_assert_eq!(cells.len(), self.columns, "a row of {cells:?}");
        line(self.md, &cells);
    }

    /// Ends the table with a blank line.
    pub(crate) fn end(self) {
        self.md.push('\n');
    }
}

/// `| a | b |` and a newline; an empty cell is `| |`.
fn line(md: &mut String, cells: &[impl AsRef<str>]) {
    md.push('|');
    for cell in cells {
        match cell.as_ref() {
            "" => md.push_str(" |"),
            cell => {
                let _ = write!(md, " {cell} |");
            }
        }
    }
    md.push('\n');
}

/// A figure to two decimals, or `–` where it was not measured.
pub(crate) fn fixed(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}"))
}

/// `ours ÷ peer` as `0.85×`, or `–` where [`verdict::ratio`] has none.
pub(crate) fn times(ours: Option<f64>, peer: Option<f64>) -> String {
    verdict::ratio(ours, peer).map_or("–".into(), |r| format!("{r:.2}×"))
}

/// `0.85×`, a ratio as the targets print it (`NaN×` where not measured).
pub(crate) fn factor(x: Option<f64>) -> String {
    format!("{:.2}×", x.unwrap_or(f64::NAN))
}

/// `+12.3%`, a fraction as a signed percentage (`NaN%` where not measured).
pub(crate) fn percent(x: Option<f64>) -> String {
    format!("{:+.1}%", x.unwrap_or(f64::NAN) * 100.0)
}

/// KiB in MiB.
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Bytes in KiB.
pub(crate) fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_its_header_its_rows_and_a_blank_line() {
        let mut md = String::new();
        let mut t = Table::new(&mut md, &["", "streams", "ratio"]);
        t.row(&[&"held open", &3, &times(Some(1.0), Some(4.0))]);
        t.strings(["x".to_owned(), String::new(), times(Some(1.0), None)]);
        t.end();
        assert_eq!(
            md,
            "| | streams | ratio |\n|---|---|---|\n| held open | 3 | 0.25× |\n| x | | – |\n\n"
        );
    }

    #[test]
    fn a_figure_not_measured_is_a_dash() {
        assert_eq!(fixed(Some(1.0 / 3.0)), "0.33");
        assert_eq!(fixed(None), "–");
        assert_eq!(times(Some(1.0), Some(0.0)), "–");
        assert_eq!(times(Some(f64::NAN), Some(1.0)), "–");
    }
}
