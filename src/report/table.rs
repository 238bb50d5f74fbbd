//! A table described once and rendered by every view. A [`TableDesc`]
//! lists the columns a person reads (header, cell, alignment, the exact
//! value to sort by) and the fields of the CSV (exact numbers, machine
//! names); the text, HTML and CSV renderers below draw any table from its
//! description, so a column is added or renamed in one place.

use serde::Serialize;

use super::text::Table;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Words: names, addresses, times.
    Left,
    /// Figures.
    Right,
}

/// A column of the human views (text, HTML).
pub struct Column<R> {
    pub header: &'static str,
    pub align: Align,
    /// What a person reads, formatted by `report::format`.
    pub cell: fn(&R) -> String,
    /// The exact value the HTML sorts by, where the cell rounds it.
    pub sort: Option<fn(&R) -> String>,
    /// The whole value where the cell shortens it (an HTML tooltip).
    pub full: Option<fn(&R) -> Option<String>>,
    /// The HTML's header where it spells the column out (`protocol` for
    /// the text's `proto`).
    pub html_header: Option<&'static str>,
    /// Whether the cell is a warning: red in HTML; in capitals in the
    /// text, which has no colour to spare for it (`NO`).
    pub warn: Option<fn(&R) -> bool>,
}

impl<R> Column<R> {
    pub fn left(header: &'static str, cell: fn(&R) -> String) -> Column<R> {
        Column {
            header,
            align: Align::Left,
            cell,
            sort: None,
            full: None,
            html_header: None,
            warn: None,
        }
    }

    pub fn right(header: &'static str, cell: fn(&R) -> String) -> Column<R> {
        Column {
            align: Align::Right,
            ..Column::left(header, cell)
        }
    }

    /// Sorted in HTML by `value`, not by the rounded cell.
    pub fn sorted_by(mut self, value: fn(&R) -> String) -> Column<R> {
        self.sort = Some(value);
        self
    }

    /// With the whole value as a tooltip in HTML.
    pub fn full(mut self, value: fn(&R) -> Option<String>) -> Column<R> {
        self.full = Some(value);
        self
    }

    /// A warning where `when` holds.
    pub fn warn(mut self, when: fn(&R) -> bool) -> Column<R> {
        self.warn = Some(when);
        self
    }

    /// Headed `header` in HTML, which has the room to spell it out.
    pub fn html_header(mut self, header: &'static str) -> Column<R> {
        self.html_header = Some(header);
        self
    }
}

/// A field of the CSV: its name in the header and its exact value.
pub struct Field<R> {
    pub name: &'static str,
    pub value: fn(&R) -> String,
}

pub fn field<R>(name: &'static str, value: fn(&R) -> String) -> Field<R> {
    Field { name, value }
}

/// One table of the report: what people read and what the CSV holds.
/// The CSV keeps exact numbers in more, finer columns (a latency's count
/// and percentiles, an address and its port apart), so it has its own
/// field list, described here with the columns.
pub struct TableDesc<R> {
    pub columns: Vec<Column<R>>,
    pub fields: Vec<Field<R>>,
}

impl<R> TableDesc<R> {
    /// The aligned text table of the first `top` rows.
    pub fn text<'a>(&self, rows: impl IntoIterator<Item = &'a R>, top: usize, out: &mut String)
    where
        R: 'a,
    {
        let header: Vec<&str> = self.columns.iter().map(|c| c.header).collect();
        let left: Vec<usize> = (0..self.columns.len())
            .filter(|&i| self.columns[i].align == Align::Left)
            .collect();
        let mut tb = Table::new(&header).left(&left);
        for r in rows.into_iter().take(top) {
            tb.row(
                self.columns
                    .iter()
                    .map(|c| {
                        let text = (c.cell)(r);
                        if c.warn.is_some_and(|w| w(r)) {
                            text.to_uppercase()
                        } else {
                            text
                        }
                    })
                    .collect(),
            );
        }
        tb.render(out);
    }

    /// The table for the HTML template, first `top` rows.
    pub fn html<'a>(&self, rows: impl IntoIterator<Item = &'a R>, top: usize) -> HtmlTable
    where
        R: 'a,
    {
        let head = self
            .columns
            .iter()
            .map(|c| HtmlHead {
                text: c.html_header.unwrap_or(c.header),
                left: c.align == Align::Left,
            })
            .collect();
        let rows = rows
            .into_iter()
            .take(top)
            .map(|r| {
                self.columns
                    .iter()
                    .map(|c| HtmlCell {
                        text: (c.cell)(r),
                        left: c.align == Align::Left,
                        v: c.sort.map(|s| s(r)),
                        title: c.full.and_then(|f| f(r)),
                        warn: c.warn.is_some_and(|w| w(r)),
                    })
                    .collect()
            })
            .collect();
        HtmlTable {
            head,
            rows,
            sortable: true,
        }
    }

    /// Every row as CSV records, the header first.
    pub fn csv<'a>(&self, rows: impl IntoIterator<Item = &'a R>) -> Vec<Vec<String>>
    where
        R: 'a,
    {
        let header = self.fields.iter().map(|f| f.name.to_string()).collect();
        std::iter::once(header)
            .chain(
                rows.into_iter()
                    .map(|r| self.fields.iter().map(|f| (f.value)(r)).collect()),
            )
            .collect()
    }
}

#[derive(Serialize)]
pub struct HtmlTable {
    head: Vec<HtmlHead>,
    rows: Vec<Vec<HtmlCell>>,
    /// Clicking a header sorts the rows; off for a table whose order is
    /// its meaning (latency classes in a fixed order).
    sortable: bool,
}

impl HtmlTable {
    /// Not sortable in the browser.
    pub fn fixed(mut self) -> HtmlTable {
        self.sortable = false;
        self
    }
}

#[derive(Serialize)]
struct HtmlHead {
    text: &'static str,
    left: bool,
}

#[derive(Serialize)]
struct HtmlCell {
    text: String,
    left: bool,
    /// The exact value to sort by (`data-v`).
    v: Option<String>,
    title: Option<String>,
    warn: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Run {
        name: &'static str,
        ok: bool,
    }

    fn desc() -> TableDesc<Run> {
        TableDesc {
            columns: vec![
                Column::left("run", |r: &Run| r.name.to_string()).html_header("the run"),
                Column::left("ok", |r: &Run| if r.ok { "yes" } else { "no" }.to_string())
                    .warn(|r| !r.ok),
            ],
            fields: vec![],
        }
    }

    const RUNS: [Run; 2] = [
        Run {
            name: "a",
            ok: true,
        },
        Run {
            name: "b",
            ok: false,
        },
    ];

    #[test]
    fn text_shouts_a_warning_and_keeps_the_short_header() {
        let mut out = String::new();
        desc().text(&RUNS, usize::MAX, &mut out);
        assert_eq!(out, "  run  ok\n  a    yes\n  b    NO\n");
    }

    #[test]
    fn html_marks_a_warning_and_spells_the_header_out() {
        let t = serde_json::to_value(desc().html(&RUNS, usize::MAX)).unwrap();
        assert_eq!(t["head"][0]["text"], "the run");
        assert_eq!(t["rows"][0][1]["warn"], false);
        assert_eq!(t["rows"][1][1]["text"], "no");
        assert_eq!(t["rows"][1][1]["warn"], true);
        assert_eq!(t["sortable"], true);
        let fixed = serde_json::to_value(desc().html(&RUNS, 1).fixed()).unwrap();
        assert_eq!(fixed["sortable"], false);
        assert_eq!(fixed["rows"].as_array().unwrap().len(), 1);
    }
}
