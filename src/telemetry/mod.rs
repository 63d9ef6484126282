//! Logging setup (`tracing`). Metrics come with the admin console.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the stderr log subscriber. `RUST_LOG` overrides the default level (`info`).
///
/// A `RUST_LOG` of targets and levels only (`info`, `debug,sqlparser=warn`) is applied by a
/// static filter: every session runs inside a span that is entered on each poll of its task,
/// and `EnvFilter` takes a lock on each enter and exit to support span-based directives. Only
/// a `RUST_LOG` using those (`[span{field=value}]=debug`) gets `EnvFilter`.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let registry = tracing_subscriber::registry().with(fmt);
    let _ = match static_filter(&spec) {
        Some(targets) => registry.with(targets).try_init(),
        None => {
            let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"));
            registry.with(filter).try_init()
        }
    };
}

/// `spec` as a filter of targets and levels, if that is all it holds.
fn static_filter(spec: &str) -> Option<Targets> {
    if spec.contains(['[', '{', '"']) {
        return None;
    }
    spec.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn targets_and_levels_get_the_static_filter() {
        let t = static_filter("debug,sqlparser=warn").expect("static");
        assert_eq!(t.default_level(), Some(LevelFilter::DEBUG));
        assert!(t.would_enable("sqlparser::parser", &tracing::Level::WARN));
        assert!(!t.would_enable("sqlparser::parser", &tracing::Level::INFO));
        assert!(static_filter("info").is_some());
        assert!(static_filter("[session{user=alice}]=debug").is_none());
    }
}
