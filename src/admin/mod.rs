//! The admin API, served on the control thread (never on a worker).

mod pools;
mod server;

pub use pools::{pools_json, state_name};
pub use server::{AdminState, serve_admin};
