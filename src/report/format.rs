//! The one formatting module, under the name the renderers use: it lives
//! in `crate::units`, a leaf that `watch`'s printer (in `output`) can
//! import too.

pub use crate::units::*;
