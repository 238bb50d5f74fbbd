//! `nwtrace report`'s rendering: the report as data ([`model`], which is
//! also the JSON), and its text, HTML (with [`svg`] plots) and CSV forms.

pub mod compare;
mod coverage;
pub mod csv_out;
pub mod format;
pub mod html;
pub mod join_svg;
pub mod join_text;
pub mod model;
mod sections;
pub mod svg;
pub mod table;
pub mod tables;
pub mod text;

pub use model::{Report, SortKey};
