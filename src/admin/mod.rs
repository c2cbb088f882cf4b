//! The admin API, served on the control thread (never on a worker).

mod server;

pub use server::{AdminState, serve_admin};
