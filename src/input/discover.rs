//! Finding the data: every `nw_*.csv` (and the compressed `nw_*.csv.gz` /
//! `nw_*.csv.zst`) below the given paths, grouped into runs with their
//! manifests. A path may be a `nw/` folder, a run folder, a machine
//! folder, the root of a `<MACHINE_ID>/<TIMESTAMP>/nw/` tree, or one file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::manifest::Manifest;

pub use crate::schema::Compression;

/// One data file.
#[derive(Clone, Debug)]
pub struct DataFile {
    pub path: PathBuf,
    /// File name, e.g. `nw_0001.csv`.
    pub name: String,
    pub compression: Compression,
    pub machine_id: String,
    /// Index into [`Discovery::machines`].
    pub machine: u32,
    /// The run folder's name (its TIMESTAMP).
    pub run_dir: String,
    /// Index into [`Discovery::runs`].
    pub run: usize,
}

/// One run: a manifest and the files it lists, or the files of a `nw/`
/// folder that no manifest claims.
#[derive(Clone, Debug)]
pub struct Run {
    pub machine_id: String,
    pub run_dir: String,
    pub nw_dir: PathBuf,
    /// The manifest's file name, when there is one.
    pub manifest_name: Option<String>,
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read.
    pub manifest_error: Option<String>,
    /// How many files the manifest says retention deleted.
    pub deleted_count: u64,
    /// Their names, as far as the manifest names them (a version 2
    /// manifest names the first and the last).
    pub deleted_files: Vec<String>,
    /// Listed, not deleted, yet not on disk.
    pub missing_files: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Discovery {
    pub files: Vec<DataFile>,
    pub runs: Vec<Run>,
    /// Every MACHINE_ID, sorted.
    pub machines: Vec<String>,
}

fn is_manifest(name: &str) -> bool {
    name.starts_with("manifest") && name.ends_with(".json")
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Walks `paths`. An unreadable folder deep in a tree is skipped; a given
/// path that does not exist is an error.
pub fn discover(paths: &[PathBuf]) -> Result<Discovery, String> {
    // nw folder -> data file names in it
    let mut dirs: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_file() {
            let name = name_of(p);
            if Compression::of_data_file(&name).is_none() {
                return Err(format!(
                    "{}: not an nwtrace data file (nw_*.csv)",
                    p.display()
                ));
            }
            let dir = p.parent().unwrap_or(Path::new(".")).to_path_buf();
            dirs.entry(dir).or_default().insert(name);
        } else {
            walk(p, &mut dirs, 0);
        }
    }
    // The same folder reached through two paths (`tree` and `./tree/m1`)
    // is read once, under the first name it was found by.
    let mut seen: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut unique: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for (dir, names) in dirs {
        let abs = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let shown = seen.entry(abs).or_insert(dir).clone();
        unique.entry(shown).or_default().extend(names);
    }
    let mut d = Discovery::default();
    for (dir, names) in unique {
        let abs = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let run_path = abs.parent();
        let run_dir = run_path.map(name_of).unwrap_or_default();
        let machine_id = run_path
            .and_then(Path::parent)
            .map(name_of)
            .unwrap_or_default();
        // Manifests in this folder, in name order.
        let mut manifests: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| is_manifest(n))
                    .collect()
            })
            .unwrap_or_default();
        manifests.sort();
        let mut owner: BTreeMap<String, usize> = BTreeMap::new();
        for m in manifests {
            let (manifest, error) = match std::fs::read(dir.join(&m)) {
                Ok(bytes) => match Manifest::parse(&bytes) {
                    Ok(man) => (Some(man), None),
                    Err(e) => (None, Some(e)),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            let idx = d.runs.len();
            let mut run = Run {
                machine_id: machine_id.clone(),
                run_dir: run_dir.clone(),
                nw_dir: dir.clone(),
                manifest_name: Some(m),
                manifest,
                manifest_error: error,
                deleted_count: 0,
                deleted_files: vec![],
                missing_files: vec![],
            };
            if let Some(man) = &run.manifest {
                (run.deleted_count, run.deleted_files) = man.deleted();
                for f in &man.files {
                    owner.entry(f.name.clone()).or_insert(idx);
                    if !f.deleted && !names.contains(&f.name) {
                        run.missing_files.push(f.name.clone());
                    }
                }
            }
            d.runs.push(run);
        }
        let mut orphan_run: Option<usize> = None;
        for name in names {
            let run = match owner.get(&name) {
                Some(&i) => i,
                None => *orphan_run.get_or_insert_with(|| {
                    d.runs.push(Run {
                        machine_id: machine_id.clone(),
                        run_dir: run_dir.clone(),
                        nw_dir: dir.clone(),
                        manifest_name: None,
                        manifest: None,
                        manifest_error: None,
                        deleted_count: 0,
                        deleted_files: vec![],
                        missing_files: vec![],
                    });
                    d.runs.len() - 1
                }),
            };
            d.files.push(DataFile {
                path: dir.join(&name),
                compression: Compression::of_data_file(&name).expect("filtered"),
                name,
                machine_id: machine_id.clone(),
                machine: 0,
                run_dir: run_dir.clone(),
                run,
            });
        }
    }
    let mut machines: Vec<String> = d.runs.iter().map(|r| r.machine_id.clone()).collect();
    machines.sort();
    machines.dedup();
    for f in &mut d.files {
        f.machine = machines.binary_search(&f.machine_id).unwrap_or(0) as u32;
    }
    d.machines = machines;
    Ok(d)
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, BTreeSet<String>>, depth: usize) {
    // Deep enough for any layout we write; stops symlink loops cold.
    if depth > 16 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            walk(&e.path(), out, depth + 1);
        } else if ft.is_file() && Compression::of_data_file(&name).is_some() {
            out.entry(dir.to_path_buf()).or_default().insert(name);
        } else if ft.is_file() && is_manifest(&name) {
            // A run whose files were all deleted still has coverage.
            out.entry(dir.to_path_buf()).or_default();
        }
    }
}
