//! `token`: prints the control token.

use std::path::PathBuf;

use super::{load_config, Overrides};

/// `token`: prints the control token (generating it on first use), for
/// `Authorization: Bearer` clients and the browser login.
pub fn print_token(config_path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = load_config(&config_path, &overrides)?;
    let auth = crate::http::auth::Auth::load(&config)?;
    match auth.token() {
        Some(token) => {
            println!("{token}");
            eprintln!("(from {})", auth.source);
            Ok(())
        }
        None => anyhow::bail!(
            "control endpoints are off in {} (host.control = \"off\"); set it to \"token\" to use them",
            config_path.display()
        ),
    }
}
