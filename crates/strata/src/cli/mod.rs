//! Command-line interface: Thanos' command tree and flags, parsed with clap.
//!
//! One module per component holds its `Args` struct and its `run()`; flag blocks shared by
//! several components live in [`common`]. Flag names, spellings and defaults follow Thanos so
//! that a Thanos manifest runs unchanged; an unknown flag is a startup error.

pub(crate) mod common;
pub(crate) mod compact;
pub(crate) mod query;
pub(crate) mod query_frontend;
pub(crate) mod rule;
pub(crate) mod sidecar;
pub(crate) mod store;
pub(crate) mod tools;

use anyhow::Result;
use clap::{Parser, Subcommand};

use self::common::GlobalArgs;

const AFTER_HELP: &str = "Boolean flags also accept a --no-<flag> form, e.g. --no-wait. \
                          Durations accept Prometheus (30d, 1h30m) and Go (1.5h, 300ms) syntax; \
                          sizes are powers of 1024 (250MB, 2GB, 1GiB).";

/// Strata: long-term storage, high availability and a global query view for Prometheus.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    propagate_version = true,
    about = "A block storage based long-term storage for Prometheus (a Thanos drop-in).",
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The component to run.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sidecar for Prometheus server: Store API, block upload and config reloader.
    Sidecar(Box<sidecar::SidecarArgs>),
    /// Store node giving access to blocks in a bucket provider.
    Store(Box<store::StoreArgs>),
    /// Query node exposing PromQL enabled Query API with data retrieved from multiple store
    /// nodes.
    Query(Box<query::QueryArgs>),
    /// Query frontend command implements a service deployed in front of queriers to improve
    /// query parallelization and caching.
    #[command(name = "query-frontend")]
    QueryFrontend(Box<query_frontend::QueryFrontendArgs>),
    /// Continuously compacts blocks in an object store bucket.
    Compact(Box<compact::CompactArgs>),
    /// Ruler evaluating Prometheus rules against given Query nodes, exposing Store API and
    /// storing old blocks in bucket.
    Rule(Box<rule::RuleArgs>),
    /// Tools utility commands.
    Tools(tools::ToolsArgs),
}

impl Cli {
    /// Runs the selected component.
    pub(crate) async fn run(self) -> Result<()> {
        let global = &self.global;
        if global.enable_auto_gomemlimit() {
            tracing::info!("--enable-auto-gomemlimit has no effect in Strata (Go runtime setting)");
        }
        if (global.auto_gomemlimit_ratio - 0.9).abs() > f64::EPSILON {
            common::accepted_without_effect("--auto-gomemlimit.ratio", "a Go runtime setting");
        }
        if global.log_request_decision.is_some() {
            common::accepted_without_effect(
                "--log.request.decision",
                "Thanos replaced it with --request.logging-config (before v0.31), which takes \
                 effect here",
            );
        }
        match self.command {
            Command::Sidecar(args) => args.run(global).await,
            Command::Store(args) => args.run(global).await,
            Command::Query(args) => args.run(global).await,
            Command::QueryFrontend(args) => args.run(global).await,
            Command::Compact(args) => args.run(global).await,
            Command::Rule(args) => args.run(global).await,
            Command::Tools(args) => args.run(global).await,
        }
    }
}

#[cfg(test)]
mod tests;
