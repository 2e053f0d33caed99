//! Logging through `tracing`: text or JSON lines on stderr, level from the control file unless
//! `RUST_LOG` is set. The data path logs only at debug level, so at the default level a busy
//! proxy writes nothing per connection.

use tracing_subscriber::EnvFilter;

use crate::config::model::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
