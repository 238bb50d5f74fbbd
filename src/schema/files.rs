//! The data files' names, as the output contract fixes them:
//! `nw_<N>.csv`, compressed as `nw_<N>.csv.zst` or `nw_<N>.csv.gz`. One
//! type for the writer (`record --compress`) and the readers.

/// How a data file is written: plain CSV, or compressed so that every
/// flush is one complete zstd frame or gzip member (docs/output.md,
/// "Compression").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// Plain CSV (`nw_0001.csv`).
    #[default]
    None,
    /// zstd frames (`nw_0001.csv.zst`), level 3.
    Zstd,
    /// gzip members (`nw_0001.csv.gz`), level 6.
    Gzip,
}

impl Compression {
    /// The file name's ending.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "csv",
            Compression::Zstd => "csv.zst",
            Compression::Gzip => "csv.gz",
        }
    }

    /// A data file's compression from its name, `nw_<anything>.csv[.gz|.zst]`;
    /// `None` for any other file.
    pub fn of_data_file(name: &str) -> Option<Compression> {
        if !name.starts_with("nw_") {
            return None;
        }
        [Compression::None, Compression::Gzip, Compression::Zstd]
            .into_iter()
            .find(|c| name.ends_with(&format!(".{}", c.extension())))
    }
}

#[cfg(test)]
mod tests {
    use super::Compression;

    #[test]
    fn names_and_kinds_round_trip() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let name = format!("nw_0012.{}", c.extension());
            assert_eq!(Compression::of_data_file(&name), Some(c));
        }
        assert_eq!(Compression::of_data_file("nw_0001.csv.xz"), None);
        assert_eq!(Compression::of_data_file("summary.json"), None);
        assert_eq!(Compression::of_data_file("x_0001.csv"), None);
    }
}
