//! The optional columns (`--columns`): their words, their header names
//! and their fixed order after the contract's 14 columns (docs/record.md,
//! "Optional columns"). One type for the writer, the reader and the
//! reports.
//!
//! They come after the 14, always in the order of [`Column::ALL`],
//! whatever order `--columns` named them in.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    Tid,
    Uid,
    Cgroup,
    Container,
    Netns,
    Cookie,
    /// TCP state at the operation (issue 24): empty for UDP.
    Srtt,
    Cwnd,
    Retrans,
    Seq,
}

impl Column {
    /// The file order.
    pub const ALL: [Column; 10] = [
        Column::Tid,
        Column::Uid,
        Column::Cgroup,
        Column::Container,
        Column::Netns,
        Column::Cookie,
        Column::Srtt,
        Column::Cwnd,
        Column::Retrans,
        Column::Seq,
    ];

    /// How many there are (array sizes indexed by `Column as usize`).
    pub const COUNT: usize = Column::ALL.len();

    /// The word `--columns` takes.
    pub fn word(self) -> &'static str {
        match self {
            Column::Tid => "tid",
            Column::Uid => "uid",
            Column::Cgroup => "cgroup",
            Column::Container => "container",
            Column::Netns => "netns",
            Column::Cookie => "cookie",
            Column::Srtt => "srtt",
            Column::Cwnd => "cwnd",
            Column::Retrans => "retrans",
            Column::Seq => "seq",
        }
    }

    /// The header name (also the JSON Lines key, as for the 14 columns).
    pub fn header(self) -> &'static str {
        match self {
            Column::Tid => "TID",
            Column::Uid => "UID",
            Column::Cgroup => "Cgroup",
            Column::Container => "Container ID",
            Column::Netns => "Netns",
            Column::Cookie => "Socket Cookie",
            Column::Srtt => "SRTT us",
            Column::Cwnd => "CWND",
            Column::Retrans => "Retrans",
            Column::Seq => "TCP Seq",
        }
    }

    /// From a header name; `None` for any other text.
    pub fn from_header(name: &[u8]) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|c| c.header().as_bytes() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of optional columns; empty is the default output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Columns(u16);

impl Columns {
    pub fn all() -> Columns {
        Column::ALL.iter().fold(Columns(0), |c, col| c.with(*col))
    }

    pub fn with(self, col: Column) -> Columns {
        Columns(self.0 | col.bit())
    }

    pub fn contains(self, col: Column) -> bool {
        self.0 & col.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The chosen columns, in file order.
    pub fn iter(self) -> impl Iterator<Item = Column> {
        Column::ALL.into_iter().filter(move |c| self.contains(*c))
    }

    /// The header row: the contract's, then these columns' names.
    pub fn header(self) -> String {
        let mut h = super::HEADER.trim_end().to_string();
        for c in self.iter() {
            h.push(',');
            h.push_str(c.header());
        }
        h.push('\n');
        h
    }

    /// Every header name of a row, the 14 first (for the manifest).
    pub fn all_names(self) -> Vec<String> {
        super::COLUMNS
            .iter()
            .copied()
            .chain(self.iter().map(Column::header))
            .map(str::to_string)
            .collect()
    }

    /// Parses `--columns`: comma-separated words, each once.
    pub fn parse(text: &str) -> Result<Columns, String> {
        let mut cols = Columns::default();
        for word in text.split(',') {
            let word = word.trim();
            let col = Column::ALL
                .into_iter()
                .find(|c| c.word() == word)
                .ok_or_else(|| {
                    format!(
                        "{word:?} is not a column; choose from {}",
                        Column::ALL.map(Column::word).join(",")
                    )
                })?;
            if cols.contains(col) {
                return Err(format!("column {word:?} is named twice"));
            }
            cols = cols.with(col);
        }
        Ok(cols)
    }
}

impl fmt::Display for Columns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let words: Vec<_> = self.iter().map(Column::word).collect();
        f.write_str(&words.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_in_any_order_into_file_order() {
        let c = Columns::parse("cookie,tid,container").unwrap();
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [Column::Tid, Column::Container, Column::Cookie]
        );
        assert_eq!(c.to_string(), "tid,container,cookie");
        assert_eq!(
            Columns::parse("tid,uid,cgroup,container,netns,cookie,srtt,cwnd,retrans,seq").unwrap(),
            Columns::all()
        );
        assert_eq!(
            Columns::parse("seq,srtt,tid,retrans,cwnd")
                .unwrap()
                .to_string(),
            "tid,srtt,cwnd,retrans,seq"
        );
        assert_eq!(
            Columns::parse(" uid , netns ").unwrap().to_string(),
            "uid,netns"
        );
        for bad in ["", "pid", "tid,,uid", "TID", "tid,tid", "tid;uid"] {
            assert!(Columns::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_names_follow_the_14_in_fixed_order() {
        assert_eq!(Columns::default().header(), super::super::HEADER);
        let h = Columns::parse("cookie,netns,container,cgroup,uid,tid")
            .unwrap()
            .header();
        assert!(h.ends_with(",MSG Flags,TID,UID,Cgroup,Container ID,Netns,Socket Cookie\n"));
        // The TCP columns (issue 24) come after today's, in this order;
        // these names are agreed with `report`'s join: do not change them.
        let h = Columns::parse("seq,retrans,cwnd,srtt,cookie")
            .unwrap()
            .header();
        assert!(h.ends_with(",MSG Flags,Socket Cookie,SRTT us,CWND,Retrans,TCP Seq\n"));
        assert_eq!(Columns::all().all_names().len(), 24);
    }

    #[test]
    fn header_names() {
        for c in Column::ALL {
            assert_eq!(Column::from_header(c.header().as_bytes()), Some(c));
        }
        assert_eq!(Column::from_header(b"Container"), None);
        assert_eq!(Column::from_header(b"tid"), None);
    }
}
